"""What the demo does to the fleet: a container that leaks memory, and a burst that fills a pool.

The leaking container is a real busybox container with a real memory limit, so the OOM kill is
the kernel's and the restarts are the engine's (``on-failure``). Its shell pipes zeros into
``tail``, which keeps all of them in memory (no newline ever comes): the working set grows by
1 MiB per step. The first run climbs to about 85% of 64 MiB and holds there until told to go on
(a file the demo creates), so the memory alert has time to fire; then it climbs past the limit.
A marker file survives restarts, so every restart climbs straight past the limit: a crash loop
until the limit is raised. Every engine call is bounded by the client's timeout.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException

from agentwatch.engine import COMPOSE_NUMBER, COMPOSE_PROJECT, COMPOSE_SERVICE
from agentwatch.local.dockerd import IMAGE
from agentwatch.local.pack import DemoProcess

MiB = 1024 * 1024
LEAKY = "demo-agent-1"
STEADY = "demo-agent-2"
LIMIT = 64 * MiB
RETRIES = 5

#: feed N D: write N MiB of zeros, one per D seconds; hold: a byte a second, so the writer notices
#: (SIGPIPE) when ``tail`` is killed and the pipeline ends with tail's status, 137.
LEAK_SCRIPT = r"""
feed() { i=0; while [ $i -lt $1 ]; do head -c 1048576 /dev/zero || exit 0; sleep $2; i=$((i+1)); done; }
hold() { while head -c 1 /dev/zero; do sleep 1; done; }
if [ -e /tmp/ran ]; then
  ( feed 70 0.02; hold ) | tail >/dev/null
else
  : > /tmp/ran
  ( feed 54 0.25; n=0; while [ ! -e /tmp/go ] && [ $n -lt 600 ]; do sleep 0.5; n=$((n+1)); done
    feed 16 0.25; hold ) | tail >/dev/null
fi
"""
STEADY_SCRIPT = "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null; exec sleep 86400"


class IncidentError(Exception):
    """The engine refused a step of the incident; the message says which."""


def _labels(number: int) -> dict[str, str]:
    return {COMPOSE_PROJECT: "demo", COMPOSE_SERVICE: "agent", COMPOSE_NUMBER: str(number)}


def start_containers(client: Any) -> Any:
    """Start the steady neighbour and the leaking container; return the leaking one."""
    try:
        client.containers.run(IMAGE, ["sh", "-c", STEADY_SCRIPT], detach=True, name=STEADY, labels=_labels(2),
                              network_mode="none", mem_limit=LIMIT, memswap_limit=LIMIT)
        return client.containers.run(IMAGE, ["sh", "-c", LEAK_SCRIPT], detach=True, name=LEAKY, labels=_labels(1),
                                     network_mode="none", mem_limit=LIMIT, memswap_limit=LIMIT,
                                     restart_policy={"Name": "on-failure", "MaximumRetryCount": RETRIES})
    except DockerException as exc:
        raise IncidentError(f"cannot start the demo containers: {exc}") from None


@dataclass
class ContainerState:
    status: str
    oom_killed: bool
    exit_code: int
    restarts: int
    memory_limit: int


def inspect(container: Any) -> ContainerState | None:
    """The engine's view of the container, or None if the engine did not answer."""
    try:
        container.reload()
    except DockerException:
        return None
    state = container.attrs.get("State") or {}
    return ContainerState(str(state.get("Status", "")), bool(state.get("OOMKilled")), int(state.get("ExitCode") or 0),
                          int(container.attrs.get("RestartCount") or 0),
                          int((container.attrs.get("HostConfig") or {}).get("Memory") or 0))


def let_it_leak(container: Any) -> None:
    """Tell the first run to climb past its limit."""
    try:
        container.exec_run(["sh", "-c", ": > /tmp/go"])
    except DockerException as exc:
        raise IncidentError(f"cannot tell {LEAKY} to go on: {exc}") from None


def raise_limit(container: Any, limit: int) -> None:
    """What the scaler's resize would do, by hand: stop (ends the restart loop), new limit, start."""
    try:
        with contextlib.suppress(DockerException):
            container.stop(timeout=2)
        container.update(mem_limit=limit, memswap_limit=limit)
        container.start()
    except DockerException as exc:
        raise IncidentError(f"cannot raise the memory limit of {LEAKY}: {exc}") from None


# --- the pool burst ---------------------------------------------------------------------------------

POOL_SIZE = 2
MAX_CONCURRENCY = 6
BURST_TOOLS = ("search", "files", "browser", "github", "tickets")
BURST_SECONDS = 20
#: The agent server's flags for the demo: a small pool that a burst of agents on different tools fills.
AGENT_SERVER_FLAGS = ("--server-name", "demo", "--max-concurrency", str(MAX_CONCURRENCY), "--pool-size",
                      str(POOL_SIZE), "--pool-acquire-timeout", "300")


def start_burst(agents: DemoProcess) -> int:
    """Start one agent per tool (each needs its own pool client); the number the server accepted."""
    started = 0
    for i, tool in enumerate(BURST_TOOLS):
        model = ("haiku", "sonnet", "opus")[i % 3]
        status, _, _ = agents.call("POST", "/api/agents", {"model": model, "seconds": BURST_SECONDS,
                                                           "tool": f"mcp-{tool}"})
        started += status == 202
    return started


def pool_stats(agents: DemoProcess) -> dict[str, int] | None:
    try:
        status, _, body = agents.call("GET", "/api/pools", timeout=5)
    except OSError:
        return None
    pool = body.get("pools", {}).get("mcp") if status == 200 and isinstance(body, dict) else None
    return pool if isinstance(pool, dict) else None


def set_concurrency(agents: DemoProcess, value: int) -> bool:
    try:
        status, _, _ = agents.call("POST", "/api/deploy/concurrency", {"maxConcurrency": value}, timeout=5)
    except OSError:
        return False
    return status == 200

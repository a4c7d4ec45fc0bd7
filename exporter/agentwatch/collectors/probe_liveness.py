"""Is a "running" agent's process or container still there? (Blocking: run it off the event loop.)

After an OOM kill an agent server often keeps listing the agent as running. Its pid is then gone
(or a zombie, or reused by a younger process), or its container is no longer running. An engine or
permission error means "cannot tell", which never counts as stuck.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import psutil

from agentwatch.engine import read_client
from agentwatch.engine_api import EngineClient, NotFound

log = logging.getLogger("agentwatch.probes")

#: A pid whose process started this long after the agent's start time is a reused pid.
PID_REUSE_SLACK_SECONDS = 5.0


def is_loopback_url(url: str) -> bool:
    """True when the server is on this host's loopback (its pids are likely ours to check)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pid_alive(pid: int, started_at: float | None) -> bool:
    """False when the pid is gone, a zombie, or taken by a process younger than the agent."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, OSError):
        return True
    return not (started_at is not None and created > started_at + PID_REUSE_SLACK_SECONDS)


class ContainerChecker:
    """Asks one engine whether containers run; the client connects on first use."""

    def __init__(self, docker_host: str | None, timeout: float) -> None:
        self.docker_host = docker_host
        self.timeout = timeout
        self._client: EngineClient | None = None

    def _api(self) -> EngineClient:
        if self._client is None:
            self._client = read_client(self.docker_host, max(1.0, self.timeout), pool_size=2)
        return self._client

    def gone(self, containers: Iterable[str]) -> set[str]:
        """The containers that do not exist or do not run; engine errors leave a container out."""
        out: set[str] = set()
        for ref in containers:
            try:
                state = self._api().inspect_container(ref).get("State") or {}
            except NotFound:
                out.add(ref)
                continue
            except Exception as exc:  # engine down or slow: cannot tell, so not stuck
                log.debug("container check of %s failed: %s", ref, exc)
                continue
            if not state.get("Running") or state.get("Restarting"):
                out.add(ref)
        return out

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None

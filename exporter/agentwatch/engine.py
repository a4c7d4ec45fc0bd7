"""The one place that builds Docker engine clients and names the engine's labels.

Every part that talks to an engine makes its client here, the same way: an explicit host, else
``DOCKER_HOST`` and the TLS variables the docker CLI reads, else the default socket. The
exporter's collectors (containers, events, the probes' stuck-agent check) only read, through
``read_client`` (``engine_api``, the standard library alone); the scaler's docker and swarm
backends act, through the docker SDK (``make_client``), which is imported only then.
They also share one verdict on a failure: an engine that cannot be reached (socket missing,
connection refused) or does not answer in time (hung, stopped) is a state to report
(``agentwatch_docker_up 0``), anything else is a fault.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING

from agentwatch.engine_api import DEFAULT_POOL, EngineClient

if TYPE_CHECKING:
    import docker

#: Labels docker compose puts on the containers it manages.
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"

_UNREACHABLE_ERRNOS = {errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                       errno.ENETUNREACH, errno.ENOTSOCK, errno.EACCES}


def engine_host(host: str | None) -> str | None:
    """The engine address in force: the configured one, else DOCKER_HOST, else None (default socket)."""
    return host or os.environ.get("DOCKER_HOST") or None


def is_local(host: str | None) -> bool:
    """Whether the engine's containers run on this host (a unix socket), so cgroups can be read."""
    return host is None or host.startswith(("unix://", "/"))


def call_timeout(collector_timeout: float) -> float:
    """A little under the collector's timeout, so a hung call fails inside the collection."""
    return max(0.2, min(collector_timeout * 0.8, collector_timeout - 0.25))


def answer_budget(collector_timeout: float) -> float:
    """How long one collection waits for the engine's answers in all: most of the collector's timeout,
    so an engine that does not answer is reported (``agentwatch_docker_up 0``) by the collector
    itself, before the collection loop would time the whole collector out."""
    return collector_timeout * 0.85


def read_client(host: str | None, timeout: float, pool_size: int = DEFAULT_POOL) -> EngineClient:
    """The exporter's read-only client for ``host`` (None: the environment's engine); it connects on
    first use, so a down engine shows in the first call, not here."""
    return EngineClient(host, timeout, pool_size)


def make_client(host: str | None, timeout: float, pool_size: int = 10) -> docker.DockerClient:
    """A docker SDK client for ``host`` (None: the environment's engine), negotiating the API version
    with the engine (one /version call; raises if it is down)."""
    import docker

    kwargs = {"base_url": host} if host else docker.utils.kwargs_from_env()
    return docker.DockerClient(version="auto", timeout=timeout, max_pool_size=pool_size, **kwargs)


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) means nothing answers at the engine's address.

    A read timeout is not "unreachable": something accepted the connection and hangs; ``is_silent``
    says so, and the collectors report that engine as down too.
    """
    requests, docker = sys.modules.get("requests"), sys.modules.get("docker")  # only if a caller uses them
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TimeoutError) or (requests and isinstance(cur, requests.exceptions.ReadTimeout)):
            return False
        if isinstance(cur, ConnectionError | FileNotFoundError) \
                or (requests and isinstance(cur, requests.exceptions.ConnectionError)):
            return True
        if isinstance(cur, OSError) and cur.errno in _UNREACHABLE_ERRNOS:
            return True
        if docker and isinstance(cur, docker.errors.DockerException) and not isinstance(cur, docker.errors.APIError) \
                and any(s in str(cur) for s in ("Connection aborted", "Connection refused",
                                                "No such file or directory", "Max retries exceeded")):
            return True
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException) and is_unreachable(arg):
                return True
        cur = cur.__cause__ or cur.__context__
    return False


def is_silent(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) means the engine took the request but did not answer in
    time: a hung or stopped daemon (a SIGSTOPped one still accepts connections on its socket)."""
    requests = sys.modules.get("requests")
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TimeoutError) or (requests and isinstance(cur, requests.exceptions.Timeout)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False

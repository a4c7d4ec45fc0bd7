"""Compose services and containers on one Docker engine, through the SDK, off the event loop.

A compose service is scaled the way ``docker compose up --scale`` does it: a new container copies
an existing one's configuration and compose labels with the next ``container-number``; scaling
down removes the highest-numbered containers, stopped ones first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
from docker.errors import DockerException, NotFound

from agentwatch.engine import COMPOSE_NUMBER, COMPOSE_ONEOFF, COMPOSE_PROJECT, COMPOSE_SERVICE, make_client
from agentwatch.scaler.backends import ActionError, desired
from agentwatch.scaler.config import ComposeServiceTarget, ContainerTarget, DockerBackendConfig
from agentwatch.scaler.model import Decision, Observation

logger = logging.getLogger("agentwatch.scaler.docker")
T = TypeVar("T")
#: Blocking code that carries out one action on one target, run in the engine's thread pool.
Handler = Callable[[Any, Decision], str]


def container_number(c: Any) -> int:
    try:
        return int(c.labels.get(COMPOSE_NUMBER, "0"))
    except ValueError:
        return 0


class DockerEngine:
    """One SDK client used from a bounded thread pool; shared by the docker and swarm backends."""

    def __init__(self, config: DockerBackendConfig) -> None:
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="scaler-docker")
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()

    def client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.config.host, self.config.timeout_seconds)
            return self._client

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking SDK code in the pool; engine errors become ActionError."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except NotFound as exc:
            raise ActionError(f"not found: {exc.explanation or exc}") from None
        except DockerException as exc:
            raise ActionError(f"engine: {getattr(exc, 'explanation', None) or exc}") from None

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()


class EngineBackend:
    """What the docker and swarm backends share: one engine, and blocking handlers run in its pool."""

    kind = "engine"

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine

    def _observe(self, target: Any) -> Observation:
        raise NotImplementedError

    def _handlers(self) -> dict[str, Handler]:
        """action -> the blocking code that carries it out."""
        raise NotImplementedError

    async def observe(self, name: str, target: Any) -> Observation:
        return await self.engine.run(self._observe, target)

    async def execute(self, decision: Decision, target: Any) -> str:
        handler = self._handlers().get(decision.action)
        if handler is None:
            raise ActionError(f"the {self.kind} backend cannot {decision.action}")
        return await self.engine.run(handler, target, decision)


class DockerBackend(EngineBackend):
    """compose_service and container targets."""

    kind = "docker"

    # reading ---------------------------------------------------------------------------------
    def _service_containers(self, t: ComposeServiceTarget) -> list[Any]:
        return self.engine.client().containers.list(
            all=True, filters={"label": [f"{COMPOSE_PROJECT}={t.project}", f"{COMPOSE_SERVICE}={t.service}"]})

    def _observe(self, target: Any) -> Observation:
        if isinstance(target, ContainerTarget):
            c = self.engine.client().containers.get(target.container)
            mem = int(c.attrs["HostConfig"].get("Memory") or 0)
            return Observation(memory_bytes=mem, memory_total_bytes=mem)
        containers = self._service_containers(target)
        limits = [int(c.attrs["HostConfig"].get("Memory") or 0) for c in containers]
        return Observation(replicas=len(containers), memory_bytes=max(limits, default=0),
                           memory_total_bytes=sum(limits))

    # acting ----------------------------------------------------------------------------------
    def _handlers(self) -> dict[str, Handler]:
        return {"scale_up": self._scale, "scale_down": self._scale, "resize_memory": self._resize,
                "restart": self._restart}

    def _scale(self, target: ComposeServiceTarget, decision: Decision) -> str:
        wanted = desired(decision)
        containers = self._service_containers(target)
        if not containers:
            raise ActionError(f"no container of {target.project}/{target.service} to copy the configuration from")
        if wanted > len(containers):
            template = max(containers, key=lambda c: (c.status == "running", -container_number(c)))
            used = {container_number(c) for c in containers}
            names = []
            for _ in range(wanted - len(containers)):
                n = max(used) + 1
                used.add(n)
                names.append(self._copy(template, target, n))
            return f"created {', '.join(names)}"
        # Stopped containers first, then the highest numbers (what compose removes).
        victims = sorted(containers, key=lambda c: (c.status == "running", -container_number(c)))
        removed = []
        for c in victims[: len(containers) - wanted]:
            with contextlib.suppress(DockerException):
                c.stop(timeout=self.engine.config.stop_timeout_seconds)
            c.remove(force=True)
            removed.append(c.name)
        return f"removed {', '.join(removed)}"

    def _copy(self, template: Any, target: ComposeServiceTarget, number: int) -> str:
        cfg, host = template.attrs["Config"], template.attrs["HostConfig"]
        labels = dict(cfg.get("Labels") or {})
        labels[COMPOSE_NUMBER] = str(number)
        labels[COMPOSE_ONEOFF] = "False"
        name = f"{target.project}-{target.service}-{number}"
        restart = host.get("RestartPolicy") or {}
        kwargs: dict[str, Any] = {
            "image": cfg["Image"], "command": cfg.get("Cmd"), "entrypoint": cfg.get("Entrypoint"),
            "environment": cfg.get("Env"), "labels": labels, "name": name, "detach": True,
            "working_dir": cfg.get("WorkingDir") or None, "user": cfg.get("User") or None,
            "network_mode": host.get("NetworkMode") or None, "volumes": host.get("Binds") or None,
        }
        if restart.get("Name"):
            kwargs["restart_policy"] = {"Name": restart["Name"],
                                        "MaximumRetryCount": restart.get("MaximumRetryCount", 0)}
        if host.get("Memory"):
            kwargs["mem_limit"] = host["Memory"]
            if host.get("MemorySwap"):
                kwargs["memswap_limit"] = host["MemorySwap"]
        if host.get("NanoCpus"):
            kwargs["nano_cpus"] = host["NanoCpus"]
        created = self.engine.client().containers.run(**kwargs)
        logger.info("created %s as a copy of %s", name, template.name)
        return created.name

    def _resize(self, target: Any, decision: Decision) -> str:
        limit = desired(decision)
        if isinstance(target, ContainerTarget):
            containers = [self.engine.client().containers.get(target.container)]
        else:
            containers = self._service_containers(target)
        for c in containers:
            host = c.attrs["HostConfig"]
            mem, swap = int(host.get("Memory") or 0), int(host.get("MemorySwap") or 0)
            if swap == -1:
                new_swap = -1
            elif mem and swap >= mem:
                new_swap = limit + (swap - mem)  # keep the same amount of swap on top
            else:
                new_swap = limit * 2  # the engine's default when only a memory limit is set
            c.update(mem_limit=limit, memswap_limit=new_swap)
        return f"memory limit {limit} bytes on {', '.join(c.name for c in containers)}"

    def _restart(self, target: Any, decision: Decision) -> str:
        if isinstance(target, ContainerTarget):
            containers = [self.engine.client().containers.get(target.container)]
        else:  # a service: only the containers that are stuck (not running, or killed by OOM)
            containers = [c for c in self._service_containers(target)
                          if c.status != "running" or c.attrs["State"].get("OOMKilled")]
            if not containers:
                return "no stuck container to restart"
        for c in containers:
            c.restart(timeout=self.engine.config.stop_timeout_seconds)
        return f"restarted {', '.join(c.name for c in containers)}"

    async def close(self) -> None:
        await self.engine.close()

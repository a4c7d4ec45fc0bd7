"""Swarm services: replicas and resource limits through the engine's services API."""

from __future__ import annotations

from typing import Any

from agentwatch.scaler.backends import ActionError
from agentwatch.scaler.backends.docker import DockerEngine
from agentwatch.scaler.config import SwarmServiceTarget
from agentwatch.scaler.policy import Decision, Observation


class SwarmBackend:
    """swarm_service targets; shares the docker backend's client and thread pool."""

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine

    def _service(self, target: SwarmServiceTarget) -> Any:
        return self.engine.client().services.get(target.service)

    def _observe(self, target: SwarmServiceTarget) -> Observation:
        spec = self._service(target).attrs["Spec"]
        replicated = spec.get("Mode", {}).get("Replicated")
        if replicated is None:
            raise ActionError(f"{target.service} is not a replicated service")
        replicas = int(replicated.get("Replicas", 0))
        mem = int(spec.get("TaskTemplate", {}).get("Resources", {}).get("Limits", {}).get("MemoryBytes") or 0)
        return Observation(replicas=replicas, memory_bytes=mem, memory_total_bytes=mem * replicas)

    async def observe(self, name: str, target: SwarmServiceTarget) -> Observation:
        return await self.engine.run(self._observe, target)

    def _scale(self, target: SwarmServiceTarget, desired: int) -> str:
        self._service(target).scale(desired)
        return f"replicas {desired}"

    def _resize(self, target: SwarmServiceTarget, desired: int) -> str:
        service = self._service(target)
        resources = dict(service.attrs["Spec"].get("TaskTemplate", {}).get("Resources") or {})
        resources["Limits"] = {**(resources.get("Limits") or {}), "MemoryBytes": desired}
        # fetch_current_spec keeps everything else (image, command, mode) as it is.
        self.engine.client().api.update_service(service.id, service.version, task_template={"Resources": resources},
                                                fetch_current_spec=True)
        return f"memory limit {desired} bytes"

    async def execute(self, decision: Decision, target: SwarmServiceTarget) -> str:
        if decision.action in ("scale_up", "scale_down"):
            return await self.engine.run(self._scale, target, int(decision.desired or 0))
        if decision.action == "resize_memory":
            return await self.engine.run(self._resize, target, int(decision.desired or 0))
        raise ActionError(f"the swarm backend cannot {decision.action}")

    async def close(self) -> None:
        return None

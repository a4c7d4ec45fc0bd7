"""Swarm services: replicas and resource limits through the engine's services API."""

from __future__ import annotations

from typing import Any

from agentwatch.scaler.backends import ActionError, desired
from agentwatch.scaler.backends.docker import EngineBackend, Handler
from agentwatch.scaler.config import SwarmServiceTarget
from agentwatch.scaler.model import Decision, Observation


class SwarmBackend(EngineBackend):
    """swarm_service targets; shares the docker backend's client and thread pool."""

    kind = "swarm"

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

    def _handlers(self) -> dict[str, Handler]:
        return {"scale_up": self._scale, "scale_down": self._scale, "resize_memory": self._resize}

    def _scale(self, target: SwarmServiceTarget, decision: Decision) -> str:
        replicas = desired(decision)
        self._service(target).scale(replicas)
        return f"replicas {replicas}"

    def _resize(self, target: SwarmServiceTarget, decision: Decision) -> str:
        limit = desired(decision)
        service = self._service(target)
        resources = dict(service.attrs["Spec"].get("TaskTemplate", {}).get("Resources") or {})
        resources["Limits"] = {**(resources.get("Limits") or {}), "MemoryBytes": limit}
        # fetch_current_spec keeps everything else (image, command, mode) as it is.
        self.engine.client().api.update_service(service.id, service.version, task_template={"Resources": resources},
                                                fetch_current_spec=True)
        return f"memory limit {limit} bytes"

    async def close(self) -> None:
        return None

"""Swarm services: replicas and resource limits through the engine's services API (a manager's).

Observing a service also reads the swarm's nodes: each node's reported memory, the memory its
tasks claim (each task's limit or reservation, the larger) and the service's tasks on it, and
whether the service's placement constraints allow it. The policy uses them to never place more
on a node than it holds (``agentwatch.scaler.placement``). Swarm's scheduler places tasks by
their memory *reservation* only, so when the scaler scales or resizes a service with a memory
limit it also sets the reservation to that limit: the scheduler then keeps to the same rule.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentwatch.scaler.backends import ActionError, desired
from agentwatch.scaler.backends.docker import EngineBackend, Handler
from agentwatch.scaler.config import SwarmServiceTarget
from agentwatch.scaler.model import Decision, NodeRoom, Observation


def _memory(resources: dict[str, Any] | None) -> tuple[int, int]:
    """(limit, reservation) in bytes from a Resources object; 0 where unset."""
    resources = resources or {}
    limit = int((resources.get("Limits") or {}).get("MemoryBytes") or 0)
    reservation = int((resources.get("Reservations") or {}).get("MemoryBytes") or 0)
    return limit, reservation


def _node_value(node: dict[str, Any], key: str) -> str | None:
    """What a placement constraint's key names on a node (None: a key this reader does not know)."""
    description, spec = node.get("Description") or {}, node.get("Spec") or {}
    simple = {"node.id": node.get("ID"), "node.hostname": description.get("Hostname"), "node.role": spec.get("Role"),
              "node.platform.os": (description.get("Platform") or {}).get("OS"),
              "node.platform.arch": (description.get("Platform") or {}).get("Architecture")}
    if key in simple:
        return str(simple[key] or "")
    for prefix, labels in (("node.labels.", spec.get("Labels")), ("engine.labels.",
                                                                  (description.get("Engine") or {}).get("Labels"))):
        if key.startswith(prefix):
            return str((labels or {}).get(key[len(prefix):], ""))
    return None


def satisfies(node: dict[str, Any], constraint: str) -> bool:
    """Whether ``node`` meets one placement constraint (``node.role==manager``, ``node.labels.x!=y``).

    A constraint this reader cannot parse counts as unmet, so a node's room is never overstated.
    """
    for op in ("==", "!="):
        key, found, value = constraint.partition(op)
        if found:
            actual = _node_value(node, key.strip())
            if actual is None:
                return False
            labels = key.strip().startswith(("node.labels.", "engine.labels."))
            same = actual == value.strip() if labels else actual.lower() == value.strip().lower()
            return same if op == "==" else not same
    return False


class SwarmBackend(EngineBackend):
    """swarm_service targets; shares the docker backend's client and thread pool."""

    kind = "swarm"

    def _service(self, target: SwarmServiceTarget) -> Any:
        return self.engine.client().services.get(target.service)

    def _observe(self, target: SwarmServiceTarget) -> Observation:
        service = self._service(target)
        spec = service.attrs["Spec"]
        replicated = spec.get("Mode", {}).get("Replicated")
        if replicated is None:
            raise ActionError(f"{target.service} is not a replicated service")
        replicas = int(replicated.get("Replicas", 0))
        limit, reservation = _memory(spec.get("TaskTemplate", {}).get("Resources"))
        return Observation(replicas=replicas, memory_bytes=limit, memory_total_bytes=limit * replicas,
                           nodes=self._nodes(service.id, spec), task_bytes=max(limit, reservation))

    def _nodes(self, service_id: str, spec: dict[str, Any]) -> tuple[NodeRoom, ...]:
        """Every node with its memory, what its tasks claim and this service's tasks on it.

        Tasks not placed yet (a scale-up still rolling out) claim room too: each is charged to the
        node with the most room left, so two decisions in a row cannot both count the same room.
        """
        client = self.engine.client()
        claimed: Counter[str] = Counter()
        mine: Counter[str] = Counter()
        unplaced: list[int] = []
        created: Counter[str] = Counter()
        for task in client.api.tasks(filters={"desired-state": "running"}):
            claim = max(_memory((task.get("Spec") or {}).get("Resources")))
            created[task.get("ServiceID") or ""] += 1
            node_id = task.get("NodeID")
            if not node_id:
                unplaced.append(claim)
                continue
            claimed[node_id] += claim
            if task.get("ServiceID") == service_id:
                mine[node_id] += 1
        for service in client.api.services():  # replicas asked for whose tasks do not exist yet
            replicated = (service.get("Spec", {}).get("Mode") or {}).get("Replicated")
            if replicated is not None:
                missing = int(replicated.get("Replicas") or 0) - created[service["ID"]]
                claim = max(_memory(service["Spec"].get("TaskTemplate", {}).get("Resources")))
                unplaced += [claim] * max(0, min(missing, 10_000))
        nodes = client.api.nodes()
        memory = {n["ID"]: int(((n.get("Description") or {}).get("Resources") or {}).get("MemoryBytes") or 0)
                  for n in nodes}
        for claim in sorted(unplaced, reverse=True):
            if claim and memory:
                roomiest = max(memory, key=lambda node_id: memory[node_id] - claimed[node_id])
                claimed[roomiest] += claim
        placement = spec.get("TaskTemplate", {}).get("Placement") or {}
        constraints = placement.get("Constraints") or []
        max_tasks = int(placement.get("MaxReplicas") or 0) or None
        rooms = []
        for node in nodes:
            node_id = node["ID"]
            ready = (node.get("Status") or {}).get("State") == "ready"
            active = (node.get("Spec") or {}).get("Availability") == "active"
            rooms.append(NodeRoom(
                hostname=str((node.get("Description") or {}).get("Hostname") or node_id[:12]),
                memory_bytes=memory[node_id], claimed_bytes=claimed[node_id], tasks=mine[node_id],
                eligible=ready and active and all(satisfies(node, c) for c in constraints), max_tasks=max_tasks))
        return tuple(rooms)

    def _handlers(self) -> dict[str, Handler]:
        return {"scale_up": self._scale, "scale_down": self._scale, "resize_memory": self._resize}

    def _update(self, target: SwarmServiceTarget, replicas: int | None = None, limit: int | None = None) -> None:
        """One service update: replicas and/or the memory limit, the reservation kept equal to the limit."""
        service = self._service(target)
        spec = service.attrs["Spec"]
        resources = dict(spec.get("TaskTemplate", {}).get("Resources") or {})
        current_limit, reservation = _memory(resources)
        new_limit = limit if limit is not None else current_limit
        kwargs: dict[str, Any] = {}
        if new_limit and (limit is not None or reservation < new_limit):
            resources["Limits"] = {**(resources.get("Limits") or {}), "MemoryBytes": new_limit}
            resources["Reservations"] = {**(resources.get("Reservations") or {}), "MemoryBytes": new_limit}
            kwargs["task_template"] = {"Resources": resources}
        if replicas is not None:
            kwargs["mode"] = {"Replicated": {"Replicas": replicas}}
        # fetch_current_spec keeps everything else (image, command, networks) as it is.
        self.engine.client().api.update_service(service.id, service.version, fetch_current_spec=True, **kwargs)

    def _scale(self, target: SwarmServiceTarget, decision: Decision) -> str:
        replicas = desired(decision)
        self._update(target, replicas=replicas)
        return f"replicas {replicas}"

    def _resize(self, target: SwarmServiceTarget, decision: Decision) -> str:
        limit = desired(decision)
        self._update(target, limit=limit)
        return f"memory limit and reservation {limit} bytes"

    async def close(self) -> None:
        return None

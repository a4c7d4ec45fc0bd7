"""Whether a cluster's nodes can hold what the policy plans: pure arithmetic on observed nodes.

A Swarm backend reports each node's memory, the memory its tasks claim (each task's limit or
reservation, the larger) and the target service's tasks on it. Before a scale_up or a larger
memory limit is planned, ``fit`` checks it against every node: a new task needs a node with room
for its claim (and under the service's per-node cap); a larger limit needs room on every node
that runs the service, for each of its tasks there. What does not fit is capped to what does,
or refused, and the decision says which nodes held how much. ``book`` charges a winning decision
to the nodes, so two decisions of one webhook cannot both count the same room.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentwatch.scaler.model import NodeRoom, Observation

MiB = 1024 * 1024


@dataclass
class Booked:
    """What the decisions already planned in this round put on each node (by hostname)."""

    bytes: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)


def size(n: float) -> str:
    """Bytes for people: 512 MiB, 23.5 GiB."""
    return f"{n / 1024**3:.1f} GiB" if abs(n) >= 1024**3 else f"{n / MiB:.0f} MiB"


def room(node: NodeRoom, booked: Booked) -> int:
    """Memory still unclaimed on ``node`` (negative when it is overcommitted already)."""
    return node.memory_bytes - node.claimed_bytes - booked.bytes.get(node.hostname, 0)


def slots(node: NodeRoom, task_bytes: int, booked: Booked) -> int:
    """How many more tasks of ``task_bytes`` the node holds, within the service's per-node cap."""
    if not node.eligible or task_bytes <= 0:
        return 0
    fits = max(0, room(node, booked) // task_bytes)
    if node.max_tasks is not None:
        fits = min(fits, max(0, node.max_tasks - node.tasks - booked.tasks.get(node.hostname, 0)))
    return fits


def _summary(nodes: tuple[NodeRoom, ...], task_bytes: int, booked: Booked) -> str:
    shown = [f"{n.hostname} {slots(n, task_bytes, booked)} ({size(room(n, booked))} free of {size(n.memory_bytes)}"
             + ("" if n.eligible else ", not eligible") + ")" for n in sorted(nodes, key=lambda n: n.hostname)]
    more = len(shown) - 8
    return ", ".join(shown[:8]) + (f" and {more} more nodes" if more > 0 else "")


def _fit_replicas(current: float, desired: float, obs: Observation, nodes: tuple[NodeRoom, ...],
                  booked: Booked) -> tuple[float, str] | str:
    task_bytes = obs.task_bytes or 0
    if task_bytes <= 0:
        return "the service has no memory limit or reservation, so no node's room for another task can be known"
    capacity = sum(slots(n, task_bytes, booked) for n in nodes)
    held = f"the nodes hold {capacity} more task(s) of {size(task_bytes)}: {_summary(nodes, task_bytes, booked)}"
    if capacity <= 0:
        return f"no node can hold another task; {held}"
    if desired - current > capacity:
        return current + capacity, f"capped at {current + capacity:g} replicas: {held}"
    return desired, ""


def _fit_memory(current: float, desired: float, nodes: tuple[NodeRoom, ...], booked: Booked) -> tuple[float, str] | str:
    holders = [n for n in nodes if n.tasks > 0]
    if not holders:
        return desired, ""
    # The largest limit every node running the service can give each of its tasks there.
    tightest = min(holders, key=lambda n: current + room(n, booked) // n.tasks)
    ceiling = current + room(tightest, booked) // tightest.tasks
    free = f"node {tightest.hostname} has {size(room(tightest, booked))} free for its {tightest.tasks} task(s)"
    if desired <= ceiling:
        return desired, ""
    if ceiling <= current:
        return f"no room for a larger limit: {free}"
    return ceiling, f"capped at {size(ceiling)} per task: {free}"


def fit(action: str, current: float, desired: float, obs: Observation,
        booked: Booked) -> tuple[float, str] | str:
    """(desired, note) where the nodes hold it (capped if need be; note says so), or why nothing fits.

    Only scale_up and a larger memory limit are checked; anything that frees memory always fits.
    Without observed nodes (not a cluster target) the plan is returned unchanged.
    """
    if obs.nodes is None:
        return desired, ""
    if action == "scale_up":
        return _fit_replicas(current, desired, obs, obs.nodes, booked)
    if action == "resize_memory" and desired > current:
        return _fit_memory(current, desired, obs.nodes, booked)
    return desired, ""


def book(action: str, current: float, desired: float, obs: Observation, booked: Booked) -> None:
    """Charge what a winning decision adds to the nodes: new tasks to the roomiest nodes first."""
    if obs.nodes is None or desired <= current:
        return
    if action == "scale_up" and obs.task_bytes:
        task_bytes = obs.task_bytes
        for _ in range(int(desired - current)):  # bounded by max_replicas
            node = max(obs.nodes, key=lambda n: (slots(n, task_bytes, booked), n.hostname))
            if slots(node, task_bytes, booked) <= 0:
                return
            booked.bytes[node.hostname] = booked.bytes.get(node.hostname, 0) + task_bytes
            booked.tasks[node.hostname] = booked.tasks.get(node.hostname, 0) + 1
    elif action == "resize_memory":
        for node in obs.nodes:
            if node.tasks:
                booked.bytes[node.hostname] = booked.bytes.get(node.hostname, 0) + int(node.tasks * (desired - current))

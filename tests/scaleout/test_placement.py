"""The scaler never places more on a Swarm node than it holds, and its decision says so (pure policy).

Before: a swarm_service scale_up or memory increase was bounded only by max_replicas and the
single-host limits, whatever the nodes could hold. The nodes here are what the Swarm backend
observes (tests/scaleout/test_swarm_e2e.py observes real ones).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from agentwatch.scaler import policy
from agentwatch.scaler.backends.swarm import satisfies
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.model import Decision, NodeRoom, Observation
from agentwatch.scaler.state import State
from tests.scaler.helpers import alert

GiB = 1024**3
T0 = 1_700_000_000.0
TARGETS: dict[str, Any] = {
    "agents": {"kind": "swarm_service", "service": "agents", "min_replicas": 1, "max_replicas": 20,
               "min_memory_bytes": "1GiB", "max_memory_bytes": "8GiB"},
    "workers": {"kind": "swarm_service", "service": "workers", "min_replicas": 1, "max_replicas": 20},
}


def cfg(*rules: dict[str, Any]) -> ScalerConfig:
    return ScalerConfig.model_validate({"targets": TARGETS, "rules": list(rules)})


def rule(name: str, action: str, target: str = "agents", **extra: Any) -> dict[str, Any]:
    return {"name": name, "alertname": name, "action": action, "target": target, "cooldown_seconds": 0, **extra}


def decide(config: ScalerConfig, observed: dict[str, Observation | None], *names: str) -> list[Decision]:
    numbers = itertools.count(1)
    decisions = policy.evaluate([alert(n) for n in names], config, State(), T0, lambda: f"d{next(numbers)}")
    policy.plan(decisions, config, State(), observed, T0)
    return decisions


def swarm(replicas: int, task_bytes: int, *nodes: NodeRoom) -> Observation:
    return Observation(replicas=replicas, memory_bytes=task_bytes, memory_total_bytes=replicas * task_bytes,
                       nodes=nodes, task_bytes=task_bytes)


def test_scale_up_is_capped_at_what_the_nodes_hold_and_says_which_hold_what():
    # 4 GiB tasks: node a has 5 GiB free (1 more), node b 12 GiB (3 more): 4 more in all, not 10.
    obs = swarm(2, 4 * GiB, NodeRoom("a", 16 * GiB, 11 * GiB, tasks=1), NodeRoom("b", 16 * GiB, 4 * GiB, tasks=1))
    [d] = decide(cfg(rule("Up", "scale_up", step=10)), {"agents": obs}, "Up")
    assert (d.outcome, d.current, d.desired) == ("act", 2, 6)
    assert d.detail.startswith("capped at 6 replicas: the nodes hold 4 more task(s) of 4.0 GiB")
    assert "a 1 (5.0 GiB free of 16.0 GiB)" in d.detail and "b 3 (12.0 GiB free of 16.0 GiB)" in d.detail


def test_no_room_on_any_node_is_a_host_limit_skip_naming_the_nodes():
    obs = swarm(3, 4 * GiB, NodeRoom("a", 16 * GiB, 13 * GiB, tasks=2), NodeRoom("b", 16 * GiB, 15 * GiB, tasks=1))
    [d] = decide(cfg(rule("Up", "scale_up")), {"agents": obs}, "Up")
    assert (d.outcome, d.reason) == ("skipped", "host_limit")
    assert d.detail.startswith("no node can hold another task")
    assert "a 0 (3.0 GiB free" in d.detail and "b 0 (1.0 GiB free" in d.detail


def test_drained_or_constrained_nodes_and_the_per_node_cap_hold_nothing():
    nodes = (NodeRoom("drained", 64 * GiB, 0, eligible=False),
             NodeRoom("capped", 64 * GiB, 2 * GiB, tasks=2, max_tasks=2),
             NodeRoom("open", 64 * GiB, 60 * GiB, tasks=1, max_tasks=2))
    [d] = decide(cfg(rule("Up", "scale_up", step=5)), {"agents": swarm(3, 2 * GiB, *nodes)}, "Up")
    assert (d.outcome, d.desired) == ("act", 4), "only one more task fits: on 'open', up to its cap of 2"
    assert "drained 0 (64.0 GiB free of 64.0 GiB, not eligible)" in d.detail


def test_a_larger_limit_must_fit_every_node_running_the_service():
    # 2 tasks of 1 GiB on a with 1 GiB free: each can grow by 0.5 GiB there; b has room to spare.
    nodes = (NodeRoom("a", 8 * GiB, 7 * GiB, tasks=2), NodeRoom("b", 8 * GiB, 1 * GiB, tasks=1))
    [d] = decide(cfg(rule("Grow", "resize_memory", factor=2)), {"agents": swarm(3, 1 * GiB, *nodes)}, "Grow")
    assert (d.outcome, d.current, d.desired) == ("act", 1 * GiB, 1.5 * GiB)
    assert d.detail == "capped at 1.5 GiB per task: node a has 1.0 GiB free for its 2 task(s)"
    full = (NodeRoom("a", 8 * GiB, 8 * GiB, tasks=2), *nodes[1:])
    [d] = decide(cfg(rule("Grow", "resize_memory", factor=2)), {"agents": swarm(3, 1 * GiB, *full)}, "Grow")
    assert (d.reason, d.detail) == ("host_limit", "no room for a larger limit: node a has 0 MiB free for its 2 task(s)")


def test_two_services_of_one_webhook_cannot_both_count_the_same_room():
    nodes = (NodeRoom("a", 16 * GiB, 8 * GiB),)  # room for two 4 GiB tasks, no more
    config = cfg(rule("Up", "scale_up", step=2), rule("More", "scale_up", target="workers", step=2))
    observed = {"agents": swarm(1, 4 * GiB, *nodes), "workers": swarm(1, 4 * GiB, *nodes)}
    first, second = decide(config, observed, "Up", "More")
    assert (first.outcome, first.desired) == ("act", 3)
    assert (second.outcome, second.reason) == ("skipped", "host_limit")


def test_a_service_without_memory_limit_or_reservation_is_not_scaled_blind():
    obs = swarm(1, 0, NodeRoom("a", 16 * GiB, 0))
    [d] = decide(cfg(rule("Up", "scale_up", target="workers")), {"workers": obs}, "Up")
    assert (d.reason, d.detail) == ("host_limit", "the service has no memory limit or reservation, so no node's "
                                                  "room for another task can be known")


def test_what_frees_memory_is_never_held_back():
    nodes = (NodeRoom("a", 8 * GiB, 12 * GiB, tasks=3),)  # overcommitted already
    [down] = decide(cfg(rule("Down", "scale_down")), {"agents": swarm(3, 4 * GiB, *nodes)}, "Down")
    [shrink] = decide(cfg(rule("Shrink", "resize_memory", factor=0.5)), {"agents": swarm(3, 4 * GiB, *nodes)}, "Shrink")
    assert (down.outcome, down.desired, down.detail) == ("act", 2, "")
    assert (shrink.outcome, shrink.desired, shrink.detail) == ("act", 2 * GiB, "")


@pytest.mark.parametrize(("constraint", "met"), [
    ("node.role==manager", True), ("node.role == worker", False), ("node.role!=worker", True),
    ("node.hostname==AW-NODE-1", True), ("node.labels.zone==eu", True), ("node.labels.zone==EU", False),
    ("node.labels.gpu!=yes", True), ("engine.labels.tier==fast", True), ("node.platform.os==linux", True),
    ("node.unknown==x", False), ("no operator", False),
])
def test_placement_constraints_are_read_and_an_unknown_one_is_unmet(constraint, met):
    node = {"ID": "n1", "Spec": {"Role": "manager", "Labels": {"zone": "eu"}},
            "Description": {"Hostname": "aw-node-1", "Platform": {"OS": "linux", "Architecture": "x86_64"},
                            "Engine": {"Labels": {"tier": "fast"}}}}
    assert satisfies(node, constraint) is met

"""The decision engine is pure: priorities, bounds, host limits, cooldowns, stabilisation, dedupe."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from agentwatch.scaler import policy
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.model import Decision, Observation
from agentwatch.scaler.state import PendingReverse, State
from tests.scaler.helpers import alert

T0 = 1_700_000_000.0

TARGETS: dict[str, Any] = {
    "agents": {"kind": "compose_service", "project": "p", "service": "agents", "min_replicas": 1,
               "max_replicas": 4, "min_memory_bytes": "1GiB", "max_memory_bytes": "4GiB"},
    "workers": {"kind": "compose_service", "project": "p", "service": "workers", "min_replicas": 0,
                "max_replicas": 10},
    "box": {"kind": "container", "container": "box", "min_memory_bytes": "1GiB", "max_memory_bytes": "4GiB"},
    "srv": {"kind": "agent_server", "url": "http://127.0.0.1:1", "min_concurrency": 2, "max_concurrency": 10},
    "chat": {"kind": "notify", "url_env": "X"},
}


def ids() -> policy.IdFactory:
    """Decision ids d1, d2, ... (the policy takes them from its caller)."""
    numbers = itertools.count(1)
    return lambda: f"d{next(numbers)}"


def cfg(rules: list[dict[str, Any]], **extra: Any) -> ScalerConfig:
    return ScalerConfig.model_validate({"targets": TARGETS, "rules": rules, **extra})


def decide(config: ScalerConfig, state: State, alerts: list, observed: dict[str, Observation | None],
           now: float) -> list[Decision]:
    decisions = policy.evaluate(alerts, config, state, now, ids())
    policy.plan(decisions, config, state, observed, now)
    policy.commit(decisions, config, state, now)
    return decisions


def obs_all(agents: int = 2, workers: int = 1, mem: int = 2 << 30, conc: int = 8) -> dict[str, Observation | None]:
    return {"agents": Observation(replicas=agents, memory_bytes=mem, memory_total_bytes=agents * mem),
            "workers": Observation(replicas=workers, memory_bytes=mem, memory_total_bytes=workers * mem),
            "box": Observation(memory_bytes=mem, memory_total_bytes=mem),
            "srv": Observation(concurrency=conc, draining=False)}


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


SCALE = {"name": "up", "alertname": "Backlog", "action": "scale_up", "target": "agents", "cooldown_seconds": 60}


# matching ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("labels", "hit"), [
    ({"severity": "critical", "host": "node-1"}, True),
    ({"severity": "warning", "host": "node-1"}, False),
    ({"severity": "critical", "host": "node-1x"}, False),  # regexes are anchored
    ({"severity": "critical"}, False),  # a missing label is ""
])
def test_matchers_equality_and_anchored_regex(labels, hit):
    config = cfg([{**SCALE, "match": {"severity": "critical"}, "match_re": {"host": r"node-\d+"}}])
    out = policy.evaluate([alert("Backlog", **labels)], config, State(), T0, ids())
    assert (len(out) == 1) is hit
    assert policy.evaluate([alert("Other", **labels)], config, State(), T0, ids()) == []


# targets: templates and the allowlist -------------------------------------------------------------
def test_templated_target_must_be_in_the_allowlist():
    config = cfg([{**SCALE, "target": "{{ labels.compose_service }}"}])
    state = State()
    ok = only(decide(config, state, [alert("Backlog", compose_service="workers")], obs_all(), T0))
    assert (ok.outcome, ok.target, ok.current, ok.desired) == ("act", "workers", 1, 2)
    evil = only(decide(config, state, [alert("Backlog", compose_service="postgres")], obs_all(), T0))
    assert (evil.outcome, evil.reason) == ("skipped", "target_not_allowed")
    missing = only(decide(config, state, [alert("Backlog")], obs_all(), T0))
    assert missing.reason == "target_unresolved"
    wrong_kind = only(decide(config, state, [alert("Backlog", compose_service="srv")], obs_all(), T0))
    assert wrong_kind.reason == "action_not_supported"


# priorities -------------------------------------------------------------------------------------
def test_highest_priority_action_per_target_wins():
    config = cfg([
        {"name": "lower", "alertname": "Mem", "action": "set_concurrency", "target": "srv", "priority": 10},
        {"name": "drain", "alertname": "Exhausted", "action": "drain", "target": "srv", "priority": 90},
        {"name": "page", "alertname": "Mem", "action": "notify", "target": "chat", "priority": 0},
    ])
    out = decide(config, State(), [alert("Mem"), alert("Exhausted")], obs_all(), T0)
    by_rule = {d.rule: d for d in out}
    assert by_rule["drain"].outcome == "act"
    assert (by_rule["lower"].outcome, by_rule["lower"].reason) == ("skipped", "lower_priority")
    assert by_rule["page"].outcome == "act", "a different target is not in competition"


def test_a_winner_that_hits_its_bound_leaves_the_target_to_the_next_priority():
    config = cfg([
        {**SCALE, "name": "hi", "priority": 90},
        {"name": "lo", "alertname": "Backlog", "action": "restart", "target": "agents", "priority": 1},
    ])
    out = {d.rule: d for d in decide(config, State(), [alert("Backlog")], obs_all(agents=4), T0)}
    assert out["hi"].reason == "bounds"
    assert out["lo"].outcome == "act"


def test_several_alerts_to_one_rule_and_target_act_once():
    config = cfg([{**SCALE, "target": "{{ labels.compose_service }}"}])
    alerts = [alert("Backlog", compose_service="agents", container=f"c{i}") for i in range(5)]
    out = decide(config, State(), alerts, obs_all(), T0)
    assert [d.outcome for d in out].count("act") == 1
    assert {d.reason for d in out if d.outcome == "skipped"} == {"lower_priority"}


# bounds -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("action", "step", "replicas", "expected"), [
    ("scale_up", 1, 2, 3), ("scale_up", 5, 2, 4), ("scale_up", 1, 4, None),
    ("scale_down", 1, 2, 1), ("scale_down", 5, 3, 1), ("scale_down", 1, 1, None),
])
def test_replica_bounds(action, step, replicas, expected):
    config = cfg([{**SCALE, "action": action, "step": step}])
    d = only(decide(config, State(), [alert("Backlog")], obs_all(agents=replicas), T0))
    if expected is None:
        assert (d.outcome, d.reason) == ("skipped", "bounds")
    else:
        assert (d.outcome, d.current, d.desired) == ("act", replicas, expected)


@pytest.mark.parametrize(("params", "mem_gib", "expected_gib"), [
    ({"factor": 1.5}, 2, 3), ({"factor": 1.5}, 3, 4), ({"factor": 0.25}, 2, 1),
    ({"step_bytes": "1GiB"}, 2, 3), ({"step_bytes": "-512MiB"}, 2, 1.5), ({"factor": 2}, 4, None),
])
def test_memory_bounds(params, mem_gib, expected_gib):
    config = cfg([{"name": "mem", "alertname": "Near", "action": "resize_memory", "target": "box", **params}])
    d = only(decide(config, State(), [alert("Near")], obs_all(mem=int(mem_gib * 2**30)), T0))
    if expected_gib is None:
        assert d.reason == "bounds"
    else:
        assert d.desired == int(expected_gib * 2**30)


@pytest.mark.parametrize(("params", "conc", "expected"), [
    ({"step": 2}, 8, 6), ({"factor": 0.5}, 8, 4), ({"factor": 0.1}, 8, 2), ({"step": 1}, 2, None),
])
def test_concurrency_floor(params, conc, expected):
    config = cfg([{"name": "c", "alertname": "Mem", "action": "set_concurrency", "target": "srv", **params}])
    d = only(decide(config, State(), [alert("Mem")], obs_all(conc=conc), T0))
    assert (d.desired if expected else d.reason) == (expected or "bounds")


def test_restore_goes_back_to_the_value_before_lowering_capped_by_max():
    config = cfg([
        {"name": "lower", "alertname": "Mem", "action": "set_concurrency", "target": "srv", "factor": 0.5,
         "cooldown_seconds": 0},
        {"name": "restore", "alertname": "MemOk", "action": "set_concurrency", "mode": "restore", "target": "srv"},
    ])
    state = State()
    assert only(decide(config, state, [alert("Mem")], obs_all(conc=6), T0)).desired == 3
    later = alert("Mem", starts="2024-01-02T00:00:00Z")
    assert only(decide(config, state, [later], obs_all(conc=3), T0 + 1)).desired == 2
    d = only(decide(config, state, [alert("MemOk")], obs_all(conc=2), T0 + 2))
    assert (d.current, d.desired) == (2, 6), "restores the value seen before the first lowering"
    assert "srv|concurrency" not in state.baselines


def test_unreadable_target_is_never_acted_on_blind():
    config = cfg([SCALE])
    d = only(decide(config, State(), [alert("Backlog")], {"agents": None}, T0))
    assert (d.outcome, d.reason) == ("skipped", "observe_failed")


# host limits ------------------------------------------------------------------------------------
def test_host_replica_limit_blocks_scale_up_only():
    config = cfg([
        SCALE,
        {"name": "down", "alertname": "Idle", "action": "scale_down", "target": "workers"},
        {"name": "lower", "alertname": "Mem", "action": "set_concurrency", "target": "srv"},
    ], limits={"max_total_replicas": 5})
    out = {d.rule: d for d in decide(config, State(), [alert("Backlog"), alert("Idle"), alert("Mem")],
                                     obs_all(agents=3, workers=2), T0)}
    assert (out["up"].outcome, out["up"].reason) == ("skipped", "host_limit")
    assert out["down"].outcome == "act"
    assert out["lower"].outcome == "act"
    ok = only(decide(config, State(), [alert("Backlog")], obs_all(agents=2, workers=2), T0))
    assert ok.outcome == "act"


def test_host_memory_limit_counts_the_new_replica_memory():
    config = cfg([SCALE], limits={"max_total_memory_bytes": "8GiB"})
    # agents 2 x 2 GiB + workers 1 x 2 GiB + box 2 GiB = 8 GiB already.
    d = only(decide(config, State(), [alert("Backlog")], obs_all(agents=2, workers=1), T0))
    assert d.reason == "host_limit"
    config = cfg([SCALE], limits={"max_total_memory_bytes": "10GiB"})
    assert only(decide(config, State(), [alert("Backlog")], obs_all(agents=2, workers=1), T0)).outcome == "act"


def test_host_limit_counts_the_targets_it_can_read_and_names_the_others():
    """An unobservable target (a Swarm service on an engine without Swarm) no longer blocks every
    scale-up: the limit is computed over the targets that were read, and the decision says which
    were left out. Before, the decision was skipped: host_limit, "replica count of a target unknown"."""
    config = cfg([SCALE], limits={"max_total_replicas": 3, "max_total_memory_bytes": "8GiB"})
    observed = {**obs_all(agents=2, workers=1), "workers": None}
    d = only(decide(config, State(), [alert("Backlog")], observed, T0))
    assert (d.outcome, d.current, d.desired) == ("act", 2, 3)
    assert d.detail == "host limits counted without workers (could not be observed)"
    # The limit still holds over what was read: agents 2 x 2 GiB + box 2 GiB + one more 2 GiB > 7 GiB.
    tight = cfg([SCALE], limits={"max_total_memory_bytes": "7GiB"})
    d = only(decide(tight, State(), [alert("Backlog", starts="t2")], observed, T0))
    assert d.reason == "host_limit" and "without workers" in d.detail


# cooldowns and rate limit -----------------------------------------------------------------------
def test_cooldown_per_target_and_action():
    config = cfg([SCALE, {"name": "down", "alertname": "Idle", "action": "scale_down", "target": "agents"}])
    state = State()
    assert only(decide(config, state, [alert("Backlog", starts="t1")], obs_all(), T0)).outcome == "act"
    d = only(decide(config, state, [alert("Backlog", starts="t2")], obs_all(), T0 + 30))
    assert (d.reason, d.detail) == ("cooldown", "30s left")
    assert state.cooldown_left("agents", "scale_up", T0 + 30) == 30
    assert only(decide(config, state, [alert("Idle")], obs_all(), T0 + 30)).outcome == "act", "other action"
    assert only(decide(config, state, [alert("Backlog", starts="t2")], obs_all(), T0 + 61)).outcome == "act"


def test_global_rate_limit():
    rules = [{"name": f"r{i}", "alertname": f"A{i}", "action": "notify", "target": "chat", "cooldown_seconds": 0}
             for i in range(5)]
    config = cfg(rules, rate_limit={"max_actions": 2, "per_seconds": 60})
    state = State()
    results = [only(decide(config, state, [alert(f"A{i}")], {}, T0 + i)) for i in range(5)]
    assert [d.outcome for d in results] == ["act", "act", "skipped", "skipped", "skipped"]
    assert results[2].reason == "rate_limit"
    assert only(decide(config, state, [alert("A2")], {}, T0 + 61)).outcome == "act", "window slid"


# dedupe -----------------------------------------------------------------------------------------
def test_repeats_of_one_alert_instance_act_once():
    config = cfg([{**SCALE, "cooldown_seconds": 0}])
    state = State()
    first = only(decide(config, state, [alert("Backlog", fp="f1")], obs_all(), T0))
    repeats = [only(decide(config, state, [alert("Backlog", fp="f1")], obs_all(), T0 + i)) for i in range(1, 20)]
    assert first.outcome == "act"
    assert {d.reason for d in repeats} == {"duplicate"}
    again = only(decide(config, state, [alert("Backlog", fp="f1", starts="2024-02-01T00:00:00Z")], obs_all(), T0 + 30))
    assert again.outcome == "act", "a new startsAt is a new alert instance"


def test_a_skip_that_may_clear_is_not_remembered():
    config = cfg([SCALE])
    state = State()
    assert only(decide(config, state, [alert("Backlog")], obs_all(agents=4), T0)).reason == "bounds"
    assert only(decide(config, state, [alert("Backlog")], obs_all(agents=3), T0 + 1)).outcome == "act"


def test_dedupe_memory_is_bounded_by_ttl_and_count():
    config = cfg([{**SCALE, "cooldown_seconds": 0}], dedupe_ttl_seconds=100, max_dedupe_entries=100,
                 rate_limit={"max_actions": 100000, "per_seconds": 1})
    state = State()
    for i in range(300):
        decide(config, state, [alert("Backlog", fp=f"f{i}")], obs_all(agents=2), T0 + i * 0.001)
    assert len(state.seen) == 100
    assert not state.is_seen(policy.dedupe_key("up", alert("Backlog", fp="f0")), T0 + 1)
    assert state.is_seen(policy.dedupe_key("up", alert("Backlog", fp="f299")), T0 + 1)
    decide(config, state, [], {}, T0 + 200)
    assert state.seen == {}, "expired after the TTL"


# stabilisation and reverses ---------------------------------------------------------------------
def test_resolved_alert_reverses_only_after_the_stabilisation_window():
    config = cfg([{**SCALE, "step": 2, "on_resolved": "reverse", "stabilization_seconds": 300}])
    state = State()
    assert only(decide(config, state, [alert("Backlog")], obs_all(agents=1), T0)).desired == 3
    sched = only(decide(config, state, [alert("Backlog", status="resolved")], obs_all(), T0 + 10))
    assert (sched.outcome, sched.action) == ("scheduled", "scale_down")
    assert policy.due_reverses(config, state, T0 + 309, ids()) == []
    due = policy.due_reverses(config, state, T0 + 311, ids())
    policy.plan(due, config, state, {"agents": Observation(replicas=3, memory_bytes=1)}, T0 + 311)
    policy.commit(due, config, state, T0 + 311)
    d = only(due)
    assert (d.trigger, d.action, d.current, d.desired) == ("reverse", "scale_down", 3, 1)
    assert state.pending == {} and state.applied == {} and state.baselines == {}
    assert policy.due_reverses(config, state, T0 + 1000, ids()) == []


def test_refiring_within_the_window_cancels_the_reverse():
    config = cfg([{**SCALE, "on_resolved": "reverse", "stabilization_seconds": 300, "cooldown_seconds": 600}])
    state = State()
    decide(config, state, [alert("Backlog")], obs_all(), T0)
    decide(config, state, [alert("Backlog", status="resolved")], obs_all(), T0 + 10)
    again = only(decide(config, state, [alert("Backlog", starts="2024-01-01T00:05:00Z")], obs_all(), T0 + 100))
    assert again.reason == "cooldown"
    assert state.pending == {}
    assert policy.due_reverses(config, state, T0 + 1000, ids()) == []


def test_resolved_without_a_prior_action_reverses_nothing():
    config = cfg([{**SCALE, "on_resolved": "reverse", "stabilization_seconds": 0}])
    state = State()
    d = only(decide(config, state, [alert("Backlog", status="resolved")], obs_all(), T0))
    assert (d.outcome, d.reason) == ("skipped", "no_change")
    assert policy.due_reverses(config, state, T0 + 10, ids()) == []


def test_reverse_waits_for_its_cooldown_and_rate_limit():
    config = cfg([{"name": "lower", "alertname": "Mem", "action": "set_concurrency", "target": "srv",
                   "on_resolved": "reverse", "stabilization_seconds": 5, "cooldown_seconds": 0},
                  {"name": "n", "alertname": "N", "action": "notify", "target": "chat", "cooldown_seconds": 0}],
                 rate_limit={"max_actions": 2, "per_seconds": 60})
    state = State()
    decide(config, state, [alert("Mem")], obs_all(conc=8), T0)
    decide(config, state, [alert("Mem", status="resolved")], obs_all(), T0 + 1)
    decide(config, state, [alert("N")], {}, T0 + 2)  # the budget of 2 is used up
    due = policy.due_reverses(config, state, T0 + 10, ids())
    policy.plan(due, config, state, {"srv": Observation(concurrency=7, draining=False)}, T0 + 10)
    policy.commit(due, config, state, T0 + 10)
    assert only(due).reason == "rate_limit"
    assert "lower|srv" in state.pending, "kept for a later try"
    due = policy.due_reverses(config, state, T0 + 100, ids())
    policy.plan(due, config, state, {"srv": Observation(concurrency=7, draining=False)}, T0 + 100)
    assert (only(due).mode, only(due).desired) == ("restore", 8)


def test_state_round_trips_through_json():
    config = cfg([{**SCALE, "on_resolved": "reverse"}])
    state = State()
    decide(config, state, [alert("Backlog")], obs_all(), T0)
    decide(config, state, [alert("Backlog", status="resolved")], obs_all(), T0 + 1)
    back = State.from_json(state.to_json())
    assert back == state
    with pytest.raises(ValueError):
        State.from_json({"version": 1, "cooldowns": {"a": "soon"}})


# purity ------------------------------------------------------------------------------------------
PURE_RULES = [
    {**SCALE, "on_resolved": "reverse", "stabilization_seconds": 5},
    {"name": "lower", "alertname": "Mem", "action": "set_concurrency", "target": "srv", "factor": 0.5,
     "on_resolved": "reverse", "stabilization_seconds": 5},
    {"name": "page", "alertname": "Mem", "action": "notify", "target": "chat", "on_resolved": "reverse",
     "stabilization_seconds": 5},
]


def busy_state(config: ScalerConfig) -> State:
    """A state with every part filled: cooldowns, dedupe, rate window, baselines, applied and pending
    reverses, plus two pending reverses whose rule or target the policy no longer has."""
    state = State()
    decide(config, state, [alert("Backlog"), alert("Mem")], obs_all(), T0)
    decide(config, state, [alert("Backlog", status="resolved"), alert("Mem", status="resolved")], obs_all(), T0 + 1)
    state.pending["gone|agents"] = PendingReverse(due=T0, alertname="Old")
    state.pending["up|retired"] = PendingReverse(due=T0, alertname="Old")
    assert state.cooldowns and state.seen and state.actions and state.baselines and state.applied
    return state


def run_policy(config: ScalerConfig, state: State, now: float) -> list[dict[str, Any]]:
    """Every read-only step once, with a fixed clock and fixed ids."""
    new_id = ids()
    alerts = [alert("Backlog", starts="t2"), alert("Mem", starts="t2"), alert("Backlog", status="resolved"),
              alert("Backlog", compose_service="x")]
    decisions = policy.evaluate(alerts, config, state, now, new_id)
    decisions += policy.due_reverses(config, state, now, new_id)
    policy.plan(decisions, config, state, obs_all(agents=3, conc=4), now)
    return [d.to_json() for d in decisions]


def test_evaluate_plan_and_due_reverses_leave_the_state_untouched():
    config = cfg(PURE_RULES)
    state = busy_state(config)
    before = copy.deepcopy(state)
    decisions = run_policy(config, state, T0 + 100)
    assert any(d["trigger"] == "reverse" for d in decisions), "due reverses were produced"
    assert state == before, "only commit may change the state"


def test_same_clock_and_ids_give_the_same_decisions():
    config = cfg(PURE_RULES)
    state = busy_state(config)
    first = run_policy(config, copy.deepcopy(state), T0 + 100)
    second = run_policy(config, copy.deepcopy(state), T0 + 100)
    assert first == second
    assert [d["id"] for d in first] == [f"d{i}" for i in range(1, len(first) + 1)], "ids come from the caller"


def test_commit_drops_reverses_whose_rule_or_target_left_the_policy():
    config = cfg(PURE_RULES)
    state = busy_state(config)
    kept = {k: v for k, v in state.pending.items() if k not in ("gone|agents", "up|retired")}
    assert kept, "the policy's own reverses are pending"
    assert policy.commit([], config, state, T0 + 2) is True
    assert state.pending == kept
    assert policy.commit([], config, state, T0 + 2) is False, "nothing left to drop"

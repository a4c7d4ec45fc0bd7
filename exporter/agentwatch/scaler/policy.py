"""The decision engine: alerts + state (+ observed values) -> decisions. Pure: no I/O, no clock, no ids.

Three steps, each a plain function so every rule can be tested without starting anything:

1. ``evaluate``: match alerts to rules, resolve and allowlist targets, drop duplicates and
   actions in cooldown, cancel or schedule reverses for resolved alerts.
2. ``plan``: with observed values, compute the new value within bounds and host limits; keep the
   highest-priority action per target; apply the global rate limit.
3. ``commit``: record what was decided in the state (dedupe, cooldowns, rate window, baselines,
   pending reverses). The only function here that changes the state.

``due_reverses`` turns pending reverses whose stabilisation window has passed into decisions.
The caller passes the time (``now``) and the decision ids (``new_id``), so the same inputs always
give the same decisions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

from agentwatch.scaler import placement
from agentwatch.scaler.config import (
    TEMPLATE_RE,
    AgentServerTarget,
    ComposeServiceTarget,
    ContainerTarget,
    KubernetesDeploymentTarget,
    Rule,
    ScalerConfig,
    SwarmServiceTarget,
    target_problem,
)
from agentwatch.scaler.model import Alert, Decision, Observation, SkipReason
from agentwatch.scaler.state import PendingReverse, State

#: Skips that a repeat of the same alert cannot change: the alert instance is marked as seen. A loser
#: on priority stays lost, so a repeat cannot pile a second action onto a target the winner handled.
FINAL_SKIPS: frozenset[str] = frozenset({"target_unresolved", "target_not_allowed", "action_not_supported",
                                         "no_change", "lower_priority"})
#: Which observed quantity each action moves (for baselines and host limits).
QUANTITY = {"scale_up": "replicas", "scale_down": "replicas", "resize_memory": "memory",
            "set_concurrency": "concurrency"}
REVERSE_ACTION = {"scale_up": "scale_down", "scale_down": "scale_up", "resize_memory": "resize_memory",
                  "set_concurrency": "set_concurrency", "drain": "undrain", "notify": "notify"}
REPLICA_KINDS = ("compose_service", "swarm_service", "kubernetes_deployment")
MEMORY_KINDS = ("compose_service", "swarm_service", "kubernetes_deployment", "container")
ReplicaTarget = ComposeServiceTarget | SwarmServiceTarget | KubernetesDeploymentTarget
MemoryTarget = ComposeServiceTarget | SwarmServiceTarget | KubernetesDeploymentTarget | ContainerTarget
#: Makes the id of each new decision (the executor's is random; tests pass a counter).
IdFactory = Callable[[], str]


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def matches(rule: Rule, alert: Alert) -> bool:
    """alertname, equality and (anchored) regex matchers; a missing label is the empty string."""
    if rule.alertname is not None and alert.alertname != rule.alertname:
        return False
    if any(alert.labels.get(k, "") != v for k, v in rule.match.items()):
        return False
    return all(_compiled(p).fullmatch(alert.labels.get(k, "")) for k, p in rule.match_re.items())


def _fill(template: str, alert: Alert) -> tuple[str, bool]:
    """Fill {{ labels.x }} / {{ annotations.x }}; also say whether a referenced value was missing or empty."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        source = alert.labels if m.group(1) == "labels" else alert.annotations
        value = source.get(m.group(2), "")
        missing = missing or not value
        return value

    return TEMPLATE_RE.sub(sub, template), missing


def render(template: str, alert: Alert) -> str | None:
    """The filled template; None when a referenced value is missing or empty."""
    out, missing = _fill(template, alert)
    return None if missing else out


def _message(rule: Rule, alert: Alert, trigger: str) -> str:
    if rule.message:
        text = _fill(rule.message, alert)[0]
    else:
        summary = alert.annotations.get("summary", "")
        text = f"[agentwatch] {alert.alertname} {trigger}" + (f": {summary}" if summary else "")
    return text[:2000]


def dedupe_key(rule: str, alert: Alert) -> str:
    return f"{rule}|{alert.fingerprint}|{alert.starts_at}|{alert.status}"


def _names(config: ScalerConfig, kinds: tuple[str, ...]) -> list[str]:
    return [n for n, t in config.targets.items() if t.kind in kinds]


def evaluate(alerts: list[Alert], config: ScalerConfig, state: State, now: float,
             new_id: IdFactory) -> list[Decision]:
    """Candidate decisions for one webhook, before observation; skips carry a reason."""
    out: list[Decision] = []
    for alert in alerts:
        for rule in config.rules:
            if not matches(rule, alert):
                continue
            if alert.status == "resolved" and rule.on_resolved != "reverse":
                continue
            d = Decision(rule=rule.name, action=rule.action, target=rule.target, priority=rule.priority,
                         alertname=alert.alertname, fingerprint=alert.fingerprint, starts_at=alert.starts_at,
                         trigger=alert.status, dedupe_key=dedupe_key(rule.name, alert),
                         mode=rule.mode if rule.action == "set_concurrency" else "", id=new_id())
            out.append(d)
            target = render(rule.target, alert)
            if target is None:
                d.skip("target_unresolved", "the alert lacks a label the target template needs")
                continue
            d.target = target
            if target not in config.targets:
                d.skip("target_not_allowed", f"{target[:100]!r} is not in the targets allowlist")
                continue
            problem = target_problem(rule, config.targets[target])
            if problem:
                d.skip("action_not_supported", problem)
                continue
            if state.is_seen(d.dedupe_key, now):
                d.skip("duplicate", "this alert instance was already decided")
                continue
            if alert.status == "resolved":
                d.action = REVERSE_ACTION[rule.action]
                if rule.action == "set_concurrency":
                    d.mode = "restore"
                if f"{rule.name}|{target}" not in state.applied:
                    d.skip("no_change", "the rule has not acted on this target, nothing to reverse")
                    continue
                d.outcome = "scheduled"
                d.detail = f"reverse after {rule.stabilization_seconds:g}s of stabilisation"
                continue
            if rule.action == "notify":
                d.message = _message(rule, alert, "firing")
            if d.mode == "restore":
                d.baseline = state.baselines.get(f"{target}|concurrency")
            left = state.cooldown_left(target, rule.action, now)
            if left > 0:
                d.skip("cooldown", f"{left:.0f}s left")
    return out


def _stale_pending(config: ScalerConfig, state: State) -> list[str]:
    """Pending reverses whose rule or target left the policy (``commit`` drops them)."""
    rules = {r.name for r in config.rules}
    return [k for k in state.pending if k.partition("|")[0] not in rules or k.partition("|")[2] not in config.targets]


def due_reverses(config: ScalerConfig, state: State, now: float, new_id: IdFactory) -> list[Decision]:
    """Pending reverses whose window has passed and whose cooldown allows them. Reads the state only."""
    rules = {r.name: r for r in config.rules}
    out = []
    for key in sorted(state.pending):
        pending = state.pending[key]
        if pending.due > now:
            continue
        rule_name, _, target = key.partition("|")
        rule = rules.get(rule_name)
        if rule is None or target not in config.targets:
            continue  # the policy changed; commit drops it
        action = REVERSE_ACTION[rule.action]
        if state.cooldown_left(target, action, now) > 0:
            continue
        d = Decision(rule=rule.name, action=action, target=target, priority=rule.priority,
                     alertname=pending.alertname, fingerprint=pending.fingerprint, starts_at=pending.starts_at,
                     trigger="reverse", dedupe_key="", mode="restore" if rule.action == "set_concurrency" else "",
                     id=new_id())
        quantity = QUANTITY.get(rule.action)
        if quantity:
            d.baseline = state.baselines.get(f"{target}|{quantity}")
            spec = config.targets[target]
            has_ceiling = isinstance(spec, AgentServerTarget) and spec.max_concurrency is not None
            if d.baseline is None and not (action == "set_concurrency" and has_ceiling):
                d.skip("no_change", "no baseline recorded")
        if action == "notify":
            d.message = f"[agentwatch] {d.alertname} resolved"
        out.append(d)
    return out


def targets_to_observe(decisions: list[Decision], config: ScalerConfig) -> set[str]:
    """Targets whose current values ``plan`` needs; every replica/memory target when a host limit applies."""
    need = {d.target for d in decisions
            if d.outcome == "act" and d.action not in ("notify", "restart")}
    limits = config.limits
    if any(d.outcome == "act" and d.action == "scale_up" for d in decisions):
        if limits.max_total_replicas is not None:
            need |= set(_names(config, REPLICA_KINDS))
        if limits.max_total_memory_bytes is not None:
            need |= set(_names(config, MEMORY_KINDS))
    return need


def _rule(config: ScalerConfig, name: str) -> Rule:
    return next(r for r in config.rules if r.name == name)


Bounded = tuple[float, float] | SkipReason


def _replicas(d: Decision, rule: Rule, target: ReplicaTarget, obs: Observation) -> Bounded:
    if obs.replicas is None:
        return "observe_failed"
    cur = obs.replicas
    if d.action == "scale_up":
        goal = d.baseline if d.baseline is not None else cur + rule.step
        desired = min(goal, target.max_replicas)
        return (cur, desired) if desired > cur else "bounds"
    goal = d.baseline if d.baseline is not None else cur - rule.step
    desired = max(goal, target.min_replicas)
    return (cur, desired) if desired < cur else "bounds"


def _memory(d: Decision, rule: Rule, target: MemoryTarget, obs: Observation) -> Bounded:
    low, high = target.min_memory_bytes, target.max_memory_bytes
    if low is None or high is None:
        return "action_not_supported"
    if not obs.memory_bytes:
        return "observe_failed" if obs.memory_bytes is None else "bounds"
    cur = obs.memory_bytes
    if d.baseline is not None:
        goal = d.baseline
    elif rule.factor is not None:
        goal = int(cur * rule.factor)
    else:
        goal = cur + (rule.step_bytes or 0)
    desired = min(max(goal, low), high)
    return (cur, desired) if desired != cur else "bounds"


def _concurrency(d: Decision, rule: Rule, target: AgentServerTarget, obs: Observation) -> Bounded:
    if obs.concurrency is None:
        return "observe_failed"
    cur = obs.concurrency
    if d.mode == "restore":
        ceiling = target.max_concurrency
        goal = d.baseline if d.baseline is not None else ceiling
        if goal is None:
            return "no_change"
        desired = min(goal, ceiling) if ceiling else goal
        return (cur, desired) if desired > cur else "no_change"
    goal = math.floor(cur * rule.factor) if rule.factor is not None else cur - rule.step
    desired = max(goal, target.min_concurrency)
    return (cur, desired) if desired < cur else "bounds"


def _bounded(d: Decision, config: ScalerConfig, obs: Observation) -> Bounded:
    """(current, desired) within the target's bounds, or the reason to skip."""
    rule, target = _rule(config, d.rule), config.targets[d.target]
    if d.action in ("scale_up", "scale_down"):
        return _replicas(d, rule, target, obs) if isinstance(target, ReplicaTarget) else "action_not_supported"
    if d.action == "resize_memory":
        return _memory(d, rule, target, obs) if isinstance(target, MemoryTarget) else "action_not_supported"
    if d.action == "set_concurrency":
        return (_concurrency(d, rule, target, obs) if isinstance(target, AgentServerTarget)
                else "action_not_supported")
    if d.action in ("drain", "undrain"):
        if obs.draining is None:
            return "observe_failed"
        if d.action == "undrain":  # the reverse of a drain: only a server still draining is touched
            return (1, 0) if obs.draining else "no_change"
        return "no_change" if obs.draining else (0, 1)
    return (0, 0)  # restart, notify: nothing to bound


def _total(observed: dict[str, Observation | None], names: list[str],
           read: Callable[[Observation], int | None], unread: set[str]) -> int:
    """The sum of one observed quantity over the ``names`` that could be read; the others go to ``unread``."""
    total = 0
    for name in names:
        obs = observed.get(name)
        value = None if obs is None else read(obs)
        if value is None:
            unread.add(name)
        else:
            total += value
    return total


def _host_limit(extra: float, per_replica: int, config: ScalerConfig, observed: dict[str, Observation | None],
                added: dict[str, float], unread: set[str]) -> str | None:
    """Why adding ``extra`` replicas would break a host limit (given increments already planned), or None.

    The totals count the targets that could be observed; one that cannot (a Swarm service on an
    engine that is not a swarm manager, an engine that is down) is left out and named in ``unread``,
    so it does not block every other target. The target being scaled was observed, or ``plan``
    skipped it already.
    """
    limits = config.limits
    if limits.max_total_replicas is not None:
        total = _total(observed, _names(config, REPLICA_KINDS), lambda o: o.replicas, unread) + added["replicas"]
        if total + extra > limits.max_total_replicas:
            return f"{total:g} + {extra:g} replicas > max_total_replicas {limits.max_total_replicas}"
    if limits.max_total_memory_bytes is not None:
        if not per_replica:
            return "the service has no memory limit, so its cost is unbounded"
        memory = _total(observed, _names(config, MEMORY_KINDS), lambda o: o.memory_total_bytes, unread)
        total = memory + added["memory"]
        if total + extra * per_replica > limits.max_total_memory_bytes:
            return f"{total + extra * per_replica:.0f} bytes > max_total_memory_bytes"
    return None


def _left_out(unread: set[str]) -> str:
    names = sorted(unread)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"host limits counted without {shown} (could not be observed)"


def plan(decisions: list[Decision], config: ScalerConfig, state: State,
         observed: dict[str, Observation | None], now: float) -> None:
    """Fill current/desired, or skip: bounds, host limit, lower priority, rate limit. Mutates decisions only."""
    order = sorted((d for d in decisions if d.outcome == "act"), key=lambda d: -d.priority)
    won: dict[str, str] = {}
    added = {"replicas": 0.0, "memory": 0.0}
    booked = placement.Booked()
    budget = config.rate_limit.max_actions - state.actions_in_window(now, config.rate_limit.per_seconds)
    for d in order:
        if d.target in won:
            d.skip("lower_priority", f"rule {won[d.target]} won for this target")
            continue
        obs = observed.get(d.target, Observation()) if d.action in ("notify", "restart") else observed.get(d.target)
        if obs is None:
            d.skip("observe_failed", "the target's current state could not be read")
            continue
        bounded = _bounded(d, config, obs)
        if isinstance(bounded, str):
            d.skip(bounded, "already at the bound" if bounded == "bounds" else "")
            continue
        current, desired = bounded
        fitted = placement.fit(d.action, current, desired, obs, booked)  # per node, for cluster targets
        if isinstance(fitted, str):
            d.skip("host_limit", fitted)
            continue
        desired, note = fitted
        d.detail = note or d.detail
        d.current, d.desired = current, desired
        extra, per_replica = desired - current, obs.memory_bytes or 0
        if d.action == "scale_up":
            unread: set[str] = set()
            why = _host_limit(extra, per_replica, config, observed, added, unread)
            if why:
                d.skip("host_limit", why + (f"; {_left_out(unread)}" if unread else ""))
                continue
            if unread:
                d.detail = "; ".join(filter(None, (d.detail, _left_out(unread))))
        if budget <= 0:
            d.skip("rate_limit", f"{config.rate_limit.max_actions} actions per {config.rate_limit.per_seconds:g}s")
            continue
        budget -= 1
        won[d.target] = d.rule
        placement.book(d.action, current, desired, obs, booked)
        if d.action == "scale_up":
            added["replicas"] += extra
            added["memory"] += extra * per_replica


def _acted(d: Decision, rule: Rule | None, state: State, now: float) -> None:
    """An act decision starts its cooldown and takes a slot of the rate window."""
    state.start_cooldown(d.target, d.action, now + (rule.cooldown_seconds if rule else 0.0))
    state.actions.append(now)


def _commit_reverse(d: Decision, config: ScalerConfig, state: State, now: float) -> None:
    key = f"{d.rule}|{d.target}"
    if d.outcome == "act" or d.reason in FINAL_SKIPS or d.reason == "bounds":
        state.pending.pop(key, None)
        state.applied.pop(key, None)
        quantity = QUANTITY.get(d.action)
        if d.outcome == "act" and quantity:
            state.baselines.pop(f"{d.target}|{quantity}", None)
    elif key in state.pending:  # rate limit or unreadable target: try again a little later
        state.pending[key] = replace(state.pending[key], due=now + min(30.0, max(config.tick_seconds, 1.0)))


def commit(decisions: list[Decision], config: ScalerConfig, state: State, now: float) -> bool:
    """Record decisions in the state; True if anything that must be persisted changed.

    Also drops pending reverses whose rule or target left the policy (call it with no decisions
    after loading a saved state).
    """
    changed = False
    rules = {r.name: r for r in config.rules}
    for d in decisions:
        rule = rules.get(d.rule)
        key = f"{d.rule}|{d.target}"
        if d.trigger == "reverse":
            _commit_reverse(d, config, state, now)
            if d.outcome == "act":
                _acted(d, rule, state, now)
            changed = True
            continue
        if d.outcome == "scheduled":
            state.pending[key] = PendingReverse(due=now + (rule.stabilization_seconds if rule else 0.0),
                                                alertname=d.alertname, fingerprint=d.fingerprint,
                                                starts_at=d.starts_at)
        elif d.trigger == "firing" and state.pending.pop(key, None) is not None:
            changed = True  # the alert fires again: the reverse waiting for it to stay resolved is off
        if d.outcome in ("act", "scheduled") or d.reason in FINAL_SKIPS:
            state.mark_seen(d.dedupe_key, now, config.dedupe_ttl_seconds, config.max_dedupe_entries)
            changed = True
        if d.outcome == "act":
            _acted(d, rule, state, now)
            quantity = QUANTITY.get(d.action)
            if rule is not None and rule.on_resolved == "reverse":
                state.applied.setdefault(key, now)
                if quantity and d.current is not None:
                    state.baselines.setdefault(f"{d.target}|{quantity}", d.current)
            elif d.action == "set_concurrency" and d.mode == "lower" and d.current is not None:
                state.baselines.setdefault(f"{d.target}|concurrency", d.current)
            elif d.action == "set_concurrency" and d.mode == "restore":
                state.baselines.pop(f"{d.target}|concurrency", None)
    for key in _stale_pending(config, state):
        del state.pending[key]
        changed = True
    state.expire(now, config.rate_limit.per_seconds)
    return changed

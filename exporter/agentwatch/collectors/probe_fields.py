"""Pick the probe fields out of an agent server's JSON with the configured JMESPath expressions.

Pure functions over already-parsed JSON, so every shape (and every bad shape) can be tested without
a server. A body that cannot be used at all yields a *fatal* ``Problem`` (the probe counts as
failed); a bad item inside a usable body (one agent without an id, a pool with a string size) yields
a non-fatal one: the item is skipped and counted, the rest is used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jmespath
from jmespath.parser import ParsedResult
from prometheus_client.utils import floatToGoString

from agentwatch.config import ProbeFields
from agentwatch.vocabulary import health_state, outcome_of

#: Pool numbers, in the order of the pool_* fields.
POOL_KEYS = ("max_size", "size", "in_use", "idle", "waiting", "evictions")
#: A label value read from a body is cut to this length.
MAX_LABEL = 64


@dataclass(frozen=True)
class Problem:
    """Something wrong with a body: a failure reason, a short detail, and whether it spoils the probe."""

    reason: str  # missing_field or bad_type
    detail: str
    fatal: bool = True


@dataclass
class Check:
    name: str
    status: str
    latency_seconds: float | None = None


@dataclass
class Health:
    status: str | None = None
    checks: list[Check] = field(default_factory=list)
    event_loop_lag_seconds: float | None = None
    requests_total: float | None = None
    errors_total: float | None = None
    #: Where the server says it runs (for agentwatch_app_info).
    container: str | None = None
    compose_service: str | None = None


@dataclass
class Agent:
    id: str
    model: str
    started_at: float | None = None
    pid: int | None = None
    container: str | None = None


@dataclass
class Finished:
    id: str
    model: str
    started_at: float | None
    finished_at: float | None
    outcome: str


@dataclass
class Running:
    agents: list[Agent] = field(default_factory=list)
    finished: dict[str, Finished] = field(default_factory=dict)
    dropped: int = 0


@dataclass
class Deploy:
    draining: bool | None = None
    max_concurrency: float | None = None
    queue_depth: float | None = None


@dataclass
class Pool:
    name: str
    values: dict[str, float]


@dataclass
class Counters:
    requests_total: float | None = None
    errors_total: float | None = None


@dataclass(frozen=True)
class Buckets:
    """A histogram a server reports: cumulative counts at ``le`` strings (``+Inf`` last), sum, count."""

    buckets: tuple[tuple[str, float], ...]
    sum: float
    count: float


def _short(value: Any) -> str:
    """A value for an error message: its repr, cut short (bodies can be huge)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def timestamp(value: Any) -> float | None:
    """Unix seconds from a number (seconds or milliseconds) or an ISO 8601 string; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return value / 1000.0 if value > 1e11 else float(value)
    return None


def number(value: Any) -> float | None:
    """A finite number (not a bool); None otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def label(value: Any) -> str | None:
    """A short label value from a string or number; None for anything else or empty."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text[:MAX_LABEL] if text else None
    return None


def _bound(key: Any) -> float | None:
    """A bucket's upper bound from ``"0.5"``, ``0.5``, ``"+Inf"`` or ``"inf"``; None if unusable."""
    if isinstance(key, str):
        try:
            key = float(key.strip())
        except ValueError:
            return None
    if isinstance(key, bool) or not isinstance(key, int | float) or math.isnan(key):
        return None
    return float(key)


def _points(raw: Any) -> list[tuple[float, float]] | None:
    """(bound, cumulative count) pairs from ``{le: count}``, ``[[le, count]]`` or ``[{le, count}]``."""
    if isinstance(raw, dict):
        items: list[Any] = list(raw.items())
    elif isinstance(raw, list):
        items = [(i.get("le"), i.get("count")) if isinstance(i, dict) else i for i in raw]
    else:
        return None
    out = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != 2:
            return None
        bound, count = _bound(item[0]), number(item[1])
        if bound is None or count is None or count < 0:
            return None
        out.append((bound, count))
    out.sort()
    if any(b[1] < a[1] for a, b in itertools.pairwise(out)):
        return None  # not cumulative
    return out


def rebucket(points: Sequence[tuple[float, float]], bounds: Sequence[float], count: float) -> list[tuple[str, float]]:
    """Cumulative counts at ``bounds`` (then ``+Inf``) from a server's own cumulative ``points``.

    A bound the server also uses keeps its count exactly (an instrumented server uses the catalog's
    bounds, so nothing changes); any other bound gets the count of the server's largest bound below
    it, a lower bound: latencies read slower, never faster, than they were.
    """
    out = []
    for bound in bounds:
        below = [c for b, c in points if b <= bound]
        out.append((floatToGoString(bound), min(max(below, default=0.0), count)))
    out.append(("+Inf", count))
    return out


class Fields:
    """The configured expressions, compiled once, and the extractors that use them."""

    def __init__(self, spec: ProbeFields) -> None:
        self._expr: dict[str, ParsedResult] = {
            name: jmespath.compile(expr) for name, expr in spec.model_dump().items()
        }

    def get(self, name: str, data: Any) -> Any:
        try:
            return self._expr[name].search(data)
        except Exception:  # a JMESPath function given the wrong type raises; treat as absent
            return None

    def _collection(self, name: str, value: Any, name_field: str | None,
                    problems: list[Problem]) -> Iterator[tuple[str | None, Any]]:
        """Items of a list (named by ``name_field``) or of an object keyed by name."""
        if isinstance(value, dict):
            for key, item in value.items():
                yield label(key), item
        elif isinstance(value, list):
            for item in value:
                if not isinstance(item, dict):
                    problems.append(Problem("bad_type", f"{name}: expected objects in the list, "
                                                        f"got {type(item).__name__}", fatal=False))
                    continue
                yield (label(self.get(name_field, item)) if name_field else None), item

    def health(self, data: Any, max_checks: int) -> tuple[Health, list[Problem], int]:
        """Overall status, sub-checks (capped), event-loop lag and request counters."""
        problems: list[Problem] = []
        out = Health()
        raw_status = self.get("health_status", data)
        checks_value = self.get("health_checks", data)
        if raw_status is None and checks_value is None:
            problems.append(Problem("missing_field", "health: neither a status nor checks"))
            return out, problems, 0
        if raw_status is not None:
            out.status = health_state(raw_status)
        if checks_value is not None and not isinstance(checks_value, dict | list):
            problems.append(Problem("bad_type", f"health checks: expected an object or a list, "
                                                f"got {type(checks_value).__name__}", fatal=False))
            checks_value = None
        dropped = 0
        seen: set[str] = set()
        for name, item in self._collection("health checks", checks_value, "check_name", problems):
            if name is None:
                problems.append(Problem("missing_field", "health check without a name", fatal=False))
                continue
            if name in seen or name == "overall":
                continue
            if len(out.checks) >= max_checks:
                dropped += 1
                continue
            seen.add(name)
            if isinstance(item, dict):
                check = Check(name, health_state(self.get("check_status", item)))
                seconds = number(self.get("check_latency_seconds", item))
                millis = number(self.get("check_latency_ms", item))
                if seconds is not None and seconds >= 0:
                    check.latency_seconds = seconds
                elif millis is not None and millis >= 0:
                    check.latency_seconds = millis / 1000.0
            else:
                check = Check(name, health_state(item))
            out.checks.append(check)
        if out.status is None:  # no overall word: the worst sub-check decides
            states = {c.status for c in out.checks}
            out.status = next((s for s in ("unhealthy", "degraded", "healthy") if s in states), "unknown")
        lag = number(self.get("event_loop_lag_seconds", data))
        out.event_loop_lag_seconds = lag if lag is not None and lag >= 0 else None
        counters = self.counters(data)
        out.requests_total, out.errors_total = counters.requests_total, counters.errors_total
        out.container = label(self.get("info_container", data))
        out.compose_service = label(self.get("info_compose_service", data))
        return out, problems, dropped

    def running(self, data: Any, max_agents: int) -> tuple[Running, list[Problem]]:
        """The running agents (capped) and, when the server lists them, recently finished ones."""
        problems: list[Problem] = []
        out = Running()
        value = self.get("running_agents", data)
        if value is None or (value is data and isinstance(value, dict)
                             and not all(isinstance(v, dict) for v in value.values())):
            # the whole body is a status object, not agents keyed by id
            problems.append(Problem("missing_field", "running: no list of agents in the body"))
            return out, problems
        if not isinstance(value, list | dict):
            problems.append(Problem("bad_type", f"running: expected a list of agents, got {type(value).__name__}"))
            return out, problems
        seen: set[str] = set()
        for key, item in self._collection("running agents", value, None, problems):
            agent_id = label(self.get("agent_id", item)) or key
            if agent_id is None:
                problems.append(Problem("missing_field", "running agent without an id", fatal=False))
                continue
            if agent_id in seen:
                continue
            if len(out.agents) >= max_agents:
                out.dropped += 1
                continue
            seen.add(agent_id)
            pid = self.get("agent_pid", item)
            pid_num = int(pid) if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
            if pid is not None and pid_num is None:
                problems.append(Problem("bad_type", f"running agent pid: expected a positive integer, "
                                                    f"got {_short(pid)}", fatal=False))
            raw_started = self.get("agent_started_at", item)
            started = timestamp(raw_started)
            if raw_started is not None and started is None:
                problems.append(Problem("bad_type", "running agent start time: expected unix seconds or ISO 8601",
                                        fatal=False))
            out.agents.append(Agent(agent_id, label(self.get("agent_model", item)) or "unknown", started, pid_num,
                                    label(self.get("agent_container", item))))
        finished = self.get("finished_agents", data)
        if isinstance(finished, list | dict):
            for key, item in self._collection("finished agents", finished, None, problems):
                agent_id = label(self.get("agent_id", item)) or key
                if agent_id is None or agent_id in seen or len(out.finished) >= max_agents:
                    continue
                out.finished[agent_id] = Finished(
                    agent_id, label(self.get("agent_model", item)) or "unknown",
                    timestamp(self.get("agent_started_at", item)), timestamp(self.get("agent_finished_at", item)),
                    outcome_of(self.get("agent_outcome", item)))
        return out, problems

    def deploy(self, data: Any) -> tuple[Deploy, list[Problem]]:
        problems: list[Problem] = []
        out = Deploy()
        draining = self.get("draining", data)
        if isinstance(draining, bool):
            out.draining = draining
        elif draining in (0, 1) and not isinstance(draining, float):
            out.draining = bool(draining)
        elif draining is not None:
            problems.append(Problem("bad_type", f"deploy status draining: expected a boolean, got {_short(draining)}"))
        raw_max = self.get("max_concurrency", data)
        out.max_concurrency = number(raw_max)
        if raw_max is not None and out.max_concurrency is None:
            problems.append(Problem("bad_type", f"deploy status maxConcurrency: expected a number, "
                                                f"got {_short(raw_max)}"))
        out.queue_depth, queue_problems = self.queue_depth(data)
        problems += queue_problems
        if draining is None and raw_max is None and out.queue_depth is None:
            problems.append(Problem("missing_field", "deploy status: neither draining, maxConcurrency nor a queue"))
        return out, problems

    def queue_depth(self, data: Any) -> tuple[float | None, list[Problem]]:
        """Work waiting for a slot: a number, or the length of a list of queued items."""
        raw = self.get("queue_depth", data)
        if isinstance(raw, list):
            return float(len(raw)), []
        depth = number(raw)
        if depth is not None and depth >= 0:
            return depth, []
        if raw is None:
            return None, []
        return None, [Problem("bad_type", f"queue depth: expected a number or a list, got {_short(raw)}",
                              fatal=False)]

    def request_duration(self, data: Any, bounds: Sequence[float]) -> tuple[Buckets | None, list[Problem]]:
        """The server's request-latency histogram, on ``bounds`` (see ``rebucket``)."""
        raw = self.get("request_duration", data)
        if raw is None:
            return None, []
        bad = [Problem("bad_type", "request duration: expected {buckets: {le: cumulative count}, sum, count}, "
                                   f"got {_short(raw)}", fatal=False)]
        if not isinstance(raw, dict):
            return None, bad
        points = _points(raw.get("buckets"))
        total, count = number(raw.get("sum")), number(raw.get("count"))
        if points is None or total is None:
            return None, bad
        infinite = [c for b, c in points if b == math.inf]
        count = count if count is not None else (infinite[0] if infinite else None)
        if count is None or count < 0 or any(c > count for _, c in points):
            return None, bad
        return Buckets(tuple(rebucket(points, bounds, count)), total, count), []

    def pools(self, data: Any, max_pools: int) -> tuple[list[Pool], list[Problem], int]:
        problems: list[Problem] = []
        value = self.get("pools", data)
        if not isinstance(value, dict | list):
            problems.append(Problem("missing_field" if value is None else "bad_type", "pools: expected an object "
                                    f"or a list of pools, got {type(value).__name__}"))
            return [], problems, 0
        if value is data and isinstance(value, dict) and value and not any(
                isinstance(v, dict) for v in value.values()):
            problems.append(Problem("missing_field", "pools: no pools in the body"))
            return [], problems, 0
        out: list[Pool] = []
        dropped = 0
        for name, item in self._collection("pools", value, "pool_name", problems):
            if not isinstance(item, dict):
                if value is data:  # a top-level key beside the pools (a timestamp, say)
                    continue
                problems.append(Problem("bad_type", f"pool {name}: expected an object", fatal=False))
                continue
            if name is None:
                problems.append(Problem("missing_field", "pool without a name", fatal=False))
                continue
            values: dict[str, float] = {}
            for key in POOL_KEYS:
                raw = self.get(f"pool_{key}", item)
                num = number(raw)
                if num is not None and num >= 0:
                    values[key] = num
                elif raw is not None:
                    problems.append(Problem("bad_type", f"pool {name} {key}: expected a number, got {_short(raw)}",
                                            fatal=False))
            if "idle" not in values and "size" in values and "in_use" in values:
                values["idle"] = max(0.0, values["size"] - values["in_use"])
            if not values:
                problems.append(Problem("missing_field", f"pool {name}: no size figures", fatal=False))
                continue
            if len(out) >= max_pools:
                dropped += 1
                continue
            out.append(Pool(name, values))
        return out, problems, dropped

    def counters(self, data: Any) -> Counters:
        out = Counters()
        requests = number(self.get("requests_total", data))
        errors = number(self.get("errors_total", data))
        out.requests_total = requests if requests is not None and requests >= 0 else None
        out.errors_total = errors if errors is not None and errors >= 0 else None
        return out

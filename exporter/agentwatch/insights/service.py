"""One turn of the insights: readings in, samples kept, deaths classified and stored, scores out.

Deaths come from two places. The engine's event stream sees every ``die`` (and the ``oom`` before
it), even in a crash loop faster than the sampling; polling sees a container's ``FinishedAt`` move
and its ``OOMKilled`` flag, and is the only source when ``docker.events`` is off. A death is judged
once it has settled: at once when the evidence is complete, else after ``settle_seconds`` (an exit
137 waits for an ``oom`` event or the OOMKilled flag that may come a moment later; a polled death
waits for the event that, with events on, carries it). The same death from both sources (within
``SAME_DEATH_SECONDS``) is recorded once. Deaths before the service first saw a container are not
invented.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentwatch.insights.crashes import (
    CAUSES,
    Context,
    CrashSettings,
    Death,
    Insight,
    budget_pattern,
    classify,
    insight_of,
    recommend,
)
from agentwatch.insights.health import HealthSettings, Score, container_score, host_score
from agentwatch.insights.memory import MemoryMonitor, MemoryView, MonitorSettings
from agentwatch.insights.store import InsightStore
from agentwatch.readings import Batch, ContainerReading, EngineEvent

#: A polled death and an event death of one container this close (seconds) are the same death.
SAME_DEATH_SECONDS = 2.0
#: An ``oom`` event this long before a death (or this long after) makes it an OOM death.
OOM_BEFORE_SECONDS = 10.0
OOM_AFTER_SECONDS = 2.0
#: Deaths remembered per container for de-duplication; oom events likewise.
RECENT_PER_CONTAINER = 32
#: Crash counters of a container not seen for this long are dropped (its series end).
COUNTER_TTL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class InsightSettings:
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    crash: CrashSettings = field(default_factory=CrashSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    settle_seconds: float = 5.0
    max_containers: int = 500
    max_groups: int = 200
    #: docker.label_allowlist: the container labels behind the ``label_*`` values, in order.
    label_allowlist: tuple[str, ...] = ()


@dataclass(slots=True)
class _Pending:
    death: Death
    source: str  # "event" or "poll"
    seen_at: float


@dataclass(frozen=True, slots=True)
class ContainerRow:
    reading: ContainerReading
    view: MemoryView | None
    score: Score
    crashes: int
    last_crash: tuple[float, str, int | None] | None


@dataclass(frozen=True, slots=True)
class GroupRow:
    group: str
    processes: int
    rss: float
    view: MemoryView


@dataclass(frozen=True, slots=True)
class Report:
    """The insights of one turn: what the metrics and /api/health show."""

    at: float
    containers: tuple[ContainerRow, ...]
    groups: tuple[GroupRow, ...]
    host: Score
    host_memory: tuple[float, float] | None
    extra_label_names: tuple[str, ...]
    #: container labels -> crashes by cause (every cause present)
    crash_counts: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]


class InsightService:
    """Holds the monitor, the pending deaths and the counters between turns (one thread at a time)."""

    def __init__(self, settings: InsightSettings, store: InsightStore) -> None:
        self.settings = settings
        self.store = store
        self.containers_mon = MemoryMonitor(settings.monitor, max_series=settings.max_containers * 2)
        self.groups_mon = MemoryMonitor(settings.monitor, max_series=settings.max_groups)
        self.containers: dict[str, ContainerReading] = {}
        self.extra_label_names: tuple[str, ...] = ()
        self.groups: dict[str, tuple[int, float]] = {}
        self.host_memory: tuple[float, float] | None = None
        self._known_finished: dict[str, float] = {}
        #: container id -> when a reading first showed it (deaths before that are not ours to judge)
        self._first_seen: dict[str, float] = {}
        self._oom_events: dict[str, deque[float]] = {}
        self._recorded: dict[str, deque[tuple[float, str]]] = {}
        self._pending: list[_Pending] = []
        self._agents: deque[tuple[float, int]] = deque(maxlen=4096)
        self._counts: OrderedDict[tuple[str, ...], list[int]] = OrderedDict()
        self._counts_seen: dict[tuple[str, ...], float] = {}
        self._budget_done: dict[str, float] = {}
        self.report: Report | None = None

    # -- one turn ------------------------------------------------------------------------------

    def turn(self, batch: Batch, now: float | None = None) -> Report:
        now = time.time() if now is None else now
        if batch.groups is not None:
            self._take_groups(batch, batch.groups_at or now)
        if batch.host_memory is not None:
            self.host_memory = batch.host_memory
        if batch.containers is not None:
            self.extra_label_names = batch.extra_label_names
            self._take_containers(batch.containers, batch.containers_at or now, batch.events_attached)
        for event in batch.events:
            self._take_event(event, now)
        self._settle(now, batch.events_attached)
        self._check_budgets()
        self.report = self._report(now)
        return self.report

    def _take_groups(self, batch: Batch, at: float) -> None:
        assert batch.groups is not None
        seen = []
        for g in batch.groups[: self.settings.max_groups]:
            self.groups_mon.observe(g.group, at, g.rss, 0.0)
            seen.append(g.group)
        self.groups_mon.keep_only(seen)
        self.groups = {g.group: (g.processes, g.rss) for g in batch.groups[: self.settings.max_groups]}
        self._agents.append((at, sum(g.processes for g in batch.groups)))
        horizon = at - self.settings.crash.agents_lookback_seconds - 60
        while self._agents and self._agents[0][0] < horizon:
            self._agents.popleft()

    def _take_containers(self, readings: Sequence[ContainerReading], at: float, events_attached: bool) -> None:
        current: dict[str, ContainerReading] = {}
        for r in readings[: self.settings.max_containers]:
            current[r.id] = r
            self.containers_mon.observe(r.id, at, r.working_set if r.running else None, r.limit, r.started_at)
            self._counter(r.labels, now=at)
            self._first_seen.setdefault(r.id, at)
            known = self._known_finished.get(r.id)
            self._known_finished[r.id] = max(known or 0.0, r.finished_at)
            if known is not None and r.finished_at > known and r.exit_code is not None:
                death = Death(r.id, r.labels, r.finished_at, r.exit_code, r.oom_killed and not r.running)
                self._pending.append(_Pending(death, "poll", at))
        gone = self.containers.keys() - current.keys()
        self.containers = current
        for cid in gone:
            self._known_finished.pop(cid, None)
            self._first_seen.pop(cid, None)
            self._budget_done.pop(cid, None)
        # keep the series of containers with a death still pending: their samples are the evidence
        pending = {p.death.container_id for p in self._pending}
        self.containers_mon.keep_only(current.keys() | pending)
        for cid in [c for c in self._recorded if c not in current and c not in pending]:
            del self._recorded[cid]
        for cid in [c for c in self._oom_events if c not in current and c not in pending]:
            del self._oom_events[cid]

    def _labels_of(self, event: EngineEvent) -> tuple[str, ...]:
        reading = self.containers.get(event.container_id)
        if reading is not None:
            return reading.labels
        extra = dict(event.extra)
        return (event.name, event.image, event.compose_project, event.compose_service,
                *(extra.get(label, "") for label in self.settings.label_allowlist))

    def _take_event(self, event: EngineEvent, now: float) -> None:
        if event.kind == "oom":
            times = self._oom_events.setdefault(event.container_id, deque(maxlen=RECENT_PER_CONTAINER))
            times.append(event.at)
        elif event.kind == "die" and event.exit_code is not None:
            death = Death(event.container_id, self._labels_of(event), event.at, event.exit_code, False)
            self._pending.append(_Pending(death, "event", now))

    # -- deaths --------------------------------------------------------------------------------

    def _oom_evidence(self, death: Death) -> bool:
        if death.oom:
            return True
        for t in self._oom_events.get(death.container_id, ()):
            if death.at - OOM_BEFORE_SECONDS <= t <= death.at + OOM_AFTER_SECONDS:
                return True
        r = self.containers.get(death.container_id)
        return bool(r is not None and r.oom_killed and not r.running
                    and abs(r.finished_at - death.at) <= SAME_DEATH_SECONDS)

    def _duplicate(self, p: _Pending) -> bool:
        for t, source in self._recorded.get(p.death.container_id, ()):
            if source != p.source and abs(t - p.death.at) <= SAME_DEATH_SECONDS:
                return True
            if source == p.source and t == p.death.at:
                return True
        return False

    def _settle(self, now: float, events_attached: bool) -> None:
        ready: list[_Pending] = []
        waiting: list[_Pending] = []
        for p in self._pending:
            waited = now - p.seen_at >= self.settings.settle_seconds
            # a polled death waits for its event; an exit 137 for its oom event or flag
            incomplete = ((p.source == "poll" and events_attached)
                          or (p.death.exit_code == 137 and not self._oom_evidence(p.death)))
            ok = waited or not incomplete
            (ready if ok else waiting).append(p)
        self._pending = waiting
        for p in sorted(ready, key=lambda q: q.death.at):
            if self._duplicate(p):
                continue
            self._record(p)

    def _agents_around(self, at: float) -> tuple[int | None, int | None]:
        if not self._agents:
            return None, None
        lookback = at - self.settings.crash.agents_lookback_seconds
        window = [n for t, n in self._agents if lookback <= t <= at + 1.0]
        if not window:
            return None, None
        return min(window), window[-1]

    def _record(self, p: _Pending) -> None:
        death = p.death
        oom = self._oom_evidence(death)
        if oom != death.oom:
            death = Death(death.container_id, death.labels, death.at, death.exit_code, oom)
        series = self.containers_mon.get(death.container_id)
        run = series.evidence_before(death.at) if series is not None else None
        watermark = series.watermark if series is not None and series.watermark > 0 else None
        reading = self.containers.get(death.container_id)
        cause = classify(death.exit_code, death.oom, run, self.settings.crash, death.at)
        before, at = self._agents_around(death.at)
        window = self.settings.crash.pattern_window_seconds
        ctx = Context(
            restart_policy=reading.restart_policy if reading else "no",
            max_retries=reading.max_retries if reading else 0,
            restart_count=reading.restart_count if reading else 0,
            command=reading.command if reading else "",
            image=death.labels[1] if len(death.labels) > 1 else "",
            host_memory_total=self.host_memory[0] if self.host_memory else None,
            agents_before=before, agents_at=at,
            same_cause_before=self.store.count_cause(death.name, cause, death.at - window))
        running_after = None
        if reading is not None:
            if reading.started_at > death.at:
                running_after = True
            elif not reading.running and abs(reading.finished_at - death.at) <= SAME_DEATH_SECONDS:
                running_after = False
        insight = insight_of(death, run, watermark, ctx, self.settings.crash, running_after)
        self.store.add(insight)
        if running_after is False and any(pt["kind"] == "budget_exhausted" for pt in insight.patterns):
            self._budget_done[death.container_id] = death.at
        self._recorded.setdefault(death.container_id, deque(maxlen=RECENT_PER_CONTAINER)).append(
            (death.at, p.source))
        counts = self._counter(death.labels, now=time.time())
        counts[CAUSES.index(insight.cause)] += 1

    def _check_budgets(self) -> None:
        """Mark the last crash of an on-failure container whose retries are spent (seen once it stays down)."""
        for r in self.containers.values():
            if (r.restart_policy != "on-failure" or r.max_retries <= 0 or r.running or r.state != "exited"
                    or r.restart_count < r.max_retries or not r.exit_code
                    or self._budget_done.get(r.id) == r.finished_at
                    or r.finished_at < self._first_seen.get(r.id, r.finished_at)):
                continue
            if any(p.death.container_id == r.id for p in self._pending):
                continue  # its last death is not judged yet
            latest = self.store.latest_for(r.id)
            if latest is None or latest.id is None or abs(latest.at - r.finished_at) > SAME_DEATH_SECONDS:
                continue
            self._budget_done[r.id] = r.finished_at
            if any(pt.get("kind") == "budget_exhausted" for pt in latest.patterns):
                continue
            latest.patterns.append(budget_pattern(r.max_retries))
            ctx = Context(restart_policy=r.restart_policy, max_retries=r.max_retries, restart_count=r.restart_count,
                          command=r.command, image=r.labels[1])
            death = Death(r.id, r.labels, latest.at, latest.exit_code or 0, latest.oom)
            extra = [rec for rec in recommend(latest.cause, death, None, None, ctx, latest.patterns,
                                              self.settings.crash) if rec["action"] == "fix_then_start"]
            latest.recommendations.extend(extra)
            self.store.replace_patterns(latest.id, latest.patterns, latest.recommendations)

    # -- counters and the report ---------------------------------------------------------------

    def _counter(self, labels: tuple[str, ...], now: float) -> list[int]:
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * len(CAUSES)
        self._counts_seen[labels] = now
        return counts

    def _expire_counters(self, now: float) -> None:
        cap = self.settings.max_containers * 2
        for labels in [k for k, seen in self._counts_seen.items() if now - seen > COUNTER_TTL_SECONDS]:
            self._counts.pop(labels, None)
            self._counts_seen.pop(labels, None)
        while len(self._counts) > cap:
            labels, _ = self._counts.popitem(last=False)
            self._counts_seen.pop(labels, None)

    def _report(self, now: float) -> Report:
        self._expire_counters(now)
        hs = self.settings.health
        recent = self.store.crashes_since(now - hs.pattern_window_seconds)
        rows = []
        for r in self.containers.values():
            series = self.containers_mon.get(r.id)
            view = series.view() if series is not None and r.running else None
            count, last_at, last_cause, last_exit = recent.get(r.name, (0, 0.0, "", None))
            score = container_score(r.state, r.health, r.exit_code, view, count, last_cause or None, hs)
            rows.append(ContainerRow(r, view, score, count, (last_at, last_cause, last_exit) if count else None))
        groups = []
        for name, (processes, rss) in self.groups.items():
            series = self.groups_mon.get(name)
            if series is not None:
                groups.append(GroupRow(name, processes, rss, series.view()))
        leaking = sum(1 for row in rows if row.view is not None and row.view.seconds_to_limit is not None
                      and row.view.seconds_to_limit <= hs.horizon_seconds)
        used = (1 - self.host_memory[1] / self.host_memory[0]) if self.host_memory and self.host_memory[0] else None
        host = host_score(used, [row.score.score for row in rows], sum(c for c, *_ in recent.values()), leaking, hs)
        rows.sort(key=lambda row: (row.score.score, row.reading.name))
        return Report(now, tuple(rows), tuple(groups), host, self.host_memory, self.extra_label_names,
                      tuple((labels, tuple(c)) for labels, c in self._counts.items()))

    def recent(self, limit: int, container: str | None, cause: str | None, since: float | None) -> list[Insight]:
        return self.store.recent(limit, container, cause, since)

"""Probes of the agent servers' own HTTP APIs: health, liveness, running agents, deploy status, pools,
queue depth and request latency; and ``agentwatch_app_info``, which names the container a server runs in.

Each configured server is probed by its own background task on its own interval, through one shared
``aiohttp.ClientSession``; the endpoints of one server are fetched concurrently. ``collect()`` only
turns the latest results into families, so a slow or blocked server delays neither another server's
probes nor the collection cycle. Fields are picked from the JSON by the configured JMESPath
expressions (``probe_fields``); bad bodies are counted by reason and logged once per condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

import aiohttp
import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from agentwatch import catalog
from agentwatch.collectors import probe_http, probe_liveness
from agentwatch.collectors.base import Collector
from agentwatch.collectors.probe_fields import (
    Agent,
    Buckets,
    Check,
    Deploy,
    Fields,
    Pool,
    Problem,
    Running,
)
from agentwatch.config import ExporterConfig, ProbeTarget
from agentwatch.log import OnceLogger, register_secret
from agentwatch.periodic import run_every
from agentwatch.vocabulary import OUTCOMES

log = logging.getLogger("agentwatch.probes")

ENDPOINTS = ("health", "live", "ready", "running", "deploy_status", "pools", "stats")
FAILURE_REASONS = ("timeout", "connect", "auth", "http_status", "not_json", "too_large", "missing_field",
                   "bad_type", "error")
DROP_KINDS = ("model", "pool", "check", "agent")
OTHER = "_other"
#: Bodies above this size are parsed in the collector's thread pool rather than on the event loop.
_PARSE_INLINE_BYTES = 256 * 1024
#: Health answers with these statuses still carry a body worth reading (a failing health check).
_HEALTH_BODY_STATUSES = frozenset({500, 503})
#: The request-latency buckets every path exposes (a server's own buckets are mapped onto them).
_LATENCY_BOUNDS = catalog.spec("agentwatch_app_request_duration_seconds").buckets or ()


class ProbeMetrics:
    """The probe collector's totals kept across probes: prometheus_client objects in its own registry."""

    def __init__(self) -> None:
        self.registry = reg = catalog.PrivateRegistry()
        self.duration = catalog.metric("agentwatch_probe_duration_seconds", reg, prom.Histogram)
        self.responses = catalog.metric("agentwatch_probe_http_responses_total", reg, prom.Counter)
        self.failures = catalog.metric("agentwatch_probe_failures_total", reg, prom.Counter)
        self.dropped = catalog.metric("agentwatch_probe_series_dropped_total", reg, prom.Counter)
        self.run_duration = catalog.metric("agentwatch_agent_run_duration_seconds", reg, prom.Histogram)
        self.runs = catalog.metric("agentwatch_agent_runs_total", reg, prom.Counter)


@dataclass
class _Endpoint:
    path: str
    success: int | None = None


@dataclass
class _Tracked:
    """An agent seen running: what is needed to time its run when it leaves the list."""

    model: str
    started_at: float | None
    first_seen: float
    stuck: bool = False


class ServerProbe:
    """State and probing of one agent server."""

    def __init__(self, target: ProbeTarget, owner: ProbeCollector) -> None:
        self.target = target
        self.name = target.name
        self.owner = owner
        self.base = target.url.rstrip("/")
        self.fields = Fields(target.fields)
        self.endpoints = {ep: _Endpoint(path) for ep in ENDPOINTS
                          if (path := getattr(target.endpoints, ep)) is not None}
        self.metrics = m = owner.metrics
        for ep in self.endpoints:  # these series exist from the start, at 0
            m.duration.labels(self.name, ep)
            for reason in FAILURE_REASONS:
                m.failures.labels(self.name, ep, reason)
        for kind in DROP_KINDS:
            m.dropped.labels(self.name, kind)
        self.check_pids = (probe_liveness.is_loopback_url(target.url) if target.check_pids == "auto"
                           else bool(target.check_pids))
        self.containers = (probe_liveness.ContainerChecker(target.containers.docker_host, target.timeout_seconds)
                           if target.containers.enabled else None)
        self.once = OnceLogger(log)
        # latest results; None means "no usable answer on the last probe"
        self.health_status: str | None = None
        self.checks: OrderedDict[str, Check] = OrderedDict()
        self.lag: float | None = None
        self.live: float | None = None
        self.ready: float | None = None
        self.deploy: Deploy | None = None
        self.pools: list[Pool] | None = None
        self.requests_total: float | None = None
        self.errors_total: float | None = None
        self.request_duration: Buckets | None = None
        self.queue_depth: float | None = None
        #: Where the server says it runs; the config's container and compose_service win.
        self.reported_container: str | None = None
        self.reported_compose_service: str | None = None
        self.agents: list[Agent] | None = None
        self.stuck: Counter[str] = Counter()
        # kept across probes (the totals are in ``metrics``)
        self.models: list[str] = []
        self.models_finished: set[str] = set()
        self.tracked: dict[str, _Tracked] = {}
        self.counted: OrderedDict[str, None] = OrderedDict()
        self.running_seen = False
        self.probes = 0

    # -- probing --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Probe forever on the server's interval (a slow probe delays the next, never overlaps)."""
        await run_every(self.target.interval_seconds, self.probe_once, self._probe_failed)

    def _probe_failed(self, exc: Exception) -> None:  # a bug in handling one body must not end the task
        self.once.problem(f"{self.name}:bug", "probing %s failed unexpectedly: %s", self.name, exc,
                          server=self.name)

    async def probe_once(self) -> None:
        session = self.owner.session
        if session is None:
            return
        # a key file is re-read every probe (rotation works) in the pool: file reads block
        key = await self.owner.run_sync(self.target.api_key) if self.target.api_key_file else self.target.api_key()
        register_secret(key)
        hdrs = probe_http.headers(key)
        names = list(self.endpoints)
        fetched = await asyncio.gather(*(
            probe_http.fetch(session, self.base + self.endpoints[ep].path, hdrs, self.target.timeout_seconds,
                             self.target.max_body_bytes) for ep in names))
        for ep, result in zip(names, fetched, strict=True):
            await self._apply(ep, result)
        self.probes += 1

    async def _json(self, body: bytes) -> Any:
        if len(body) > _PARSE_INLINE_BYTES:
            return await self.owner.run_sync(json.loads, body)
        return json.loads(body)

    async def _apply(self, ep: str, result: probe_http.Fetched) -> None:
        state = self.endpoints[ep]
        self.metrics.duration.labels(self.name, ep).observe(result.duration)
        if result.status is not None:
            self.metrics.responses.labels(self.name, ep, str(result.status)).inc()
        reasons: list[tuple[str, str]] = []
        if result.failure:
            reasons.append((result.failure, result.detail))
        data: Any = None
        needs_body = ep not in ("live", "ready")
        body_usable = result.body is not None and (
            result.ok or (ep == "health" and result.status in _HEALTH_BODY_STATUSES))
        if needs_body and body_usable:
            try:
                data = await self._json(result.body or b"")
            except (ValueError, RecursionError) as exc:
                reasons.append(("not_json", f"body is not JSON: {str(exc)[:100]}"))
                data = None
                body_usable = False
        problems: list[Problem] = []
        if needs_body:
            problems = await self._use(ep, data if body_usable else None)
        reasons += [(p.reason, p.detail) for p in problems]
        fatal = bool(result.failure) or (needs_body and not body_usable) or any(p.fatal for p in problems)
        state.success = 0 if fatal else 1
        if ep == "live":
            self.live = 1.0 if result.ok else 0.0
        elif ep == "ready":
            self.ready = 1.0 if result.ok else 0.0
        for reason in sorted({r for r, _ in reasons}):
            self.metrics.failures.labels(self.name, ep, reason).inc()
        self._log(ep, reasons)

    def _log(self, ep: str, reasons: list[tuple[str, str]]) -> None:
        active = {r for r, _ in reasons}
        for reason, detail in reasons:
            self.once.problem(f"{self.name}:{ep}:{reason}", "probe of %s %s failed (%s): %s", self.name,
                              self.endpoints[ep].path, reason, detail, server=self.name, endpoint=ep,
                              reason=reason)
        for reason in FAILURE_REASONS:
            if reason not in active:
                self.once.cleared(f"{self.name}:{ep}:{reason}", "probe of %s %s recovered from %s", self.name,
                                  self.endpoints[ep].path, reason, server=self.name, endpoint=ep, reason=reason)

    async def _use(self, ep: str, data: Any) -> list[Problem]:
        """Fold one endpoint's body into the state; ``data`` is None when the probe failed."""
        t = self.target
        if ep == "health":
            if data is None:
                self.health_status = "unknown" if self.health_status is not None or self.checks else None
                for check in self.checks.values():
                    check.status, check.latency_seconds = "unknown", None
                self.lag = None
                if "deploy_status" not in self.endpoints:
                    self.queue_depth = None
                return []
            health, problems, dropped = self.fields.health(data, t.max_checks)
            self.reported_container, self.reported_compose_service = health.container, health.compose_service
            self._dropped("check", dropped)
            self.health_status = health.status
            known = {c.name for c in health.checks}
            for name, check in list(self.checks.items()):  # checks that vanished stay, as unknown
                if name not in known:
                    check.status, check.latency_seconds = "unknown", None
            for check in health.checks:
                self.checks[check.name] = check
            while len(self.checks) > t.max_checks:
                self.checks.popitem(last=False)
            self.lag = health.event_loop_lag_seconds
            if "stats" not in self.endpoints:
                self._counters(health.requests_total, health.errors_total)
                problems += self._latency(data)
            if "deploy_status" not in self.endpoints:
                self.queue_depth, queue_problems = self.fields.queue_depth(data)
                problems += queue_problems
            return problems
        if ep == "stats":
            if data is not None:
                counters = self.fields.counters(data)
                self._counters(counters.requests_total, counters.errors_total)
                problems = self._latency(data)
                if (counters.requests_total is None and counters.errors_total is None
                        and self.fields.get("request_duration", data) is None):
                    problems.append(Problem("missing_field", "stats: neither requests, errors nor latencies"))
                return problems
            return []
        if ep == "deploy_status":
            if data is None:
                self.deploy = self.queue_depth = None
                return []
            self.deploy, problems = self.fields.deploy(data)
            self.queue_depth = self.deploy.queue_depth
            return problems
        if ep == "pools":
            if data is None:
                self.pools = None
                return []
            pools, problems, dropped = self.fields.pools(data, t.max_pools)
            self._dropped("pool", dropped)
            self.pools = None if any(p.fatal for p in problems) else pools
            return problems
        if ep == "running":
            if data is None:
                self.agents = None
                self.stuck = Counter()
                return []
            running, problems = self.fields.running(data, t.max_agents)
            self._dropped("agent", running.dropped)
            if any(p.fatal for p in problems):
                self.agents = None
                self.stuck = Counter()
            else:
                await self._track(running)
            return problems
        return []

    def _counters(self, requests: float | None, errors: float | None) -> None:
        self.requests_total, self.errors_total = requests, errors

    def _latency(self, data: Any) -> list[Problem]:
        """Keep the server's latency histogram; a body without one keeps the last (it only grows)."""
        latency, problems = self.fields.request_duration(data, _LATENCY_BOUNDS)
        if latency is not None:
            self.request_duration = latency
        return problems

    def _dropped(self, kind: str, n: int) -> None:
        self.metrics.dropped.labels(self.name, kind).inc(n)

    def model(self, name: str) -> str:
        """The model label, folding models beyond the cap into ``_other``."""
        if name in self.models:
            return name
        if len(self.models) < self.target.max_models:
            self.models.append(name)
            return name
        self._dropped("model", 1)
        return OTHER

    async def _track(self, running: Running) -> None:
        now = time.time()
        agents = running.agents
        current = {a.id for a in agents}
        first = not self.running_seen
        self.running_seen = True
        for agent_id, seen in list(self.tracked.items()):
            if agent_id in current:
                continue
            done = running.finished.get(agent_id)
            outcome = done.outcome if done and done.outcome != "unknown" else ("lost" if seen.stuck else "unknown")
            end = done.finished_at if done and done.finished_at else now
            start = seen.started_at or (done.started_at if done else None) or seen.first_seen
            self._finished(seen.model, outcome, max(0.0, end - start))
            del self.tracked[agent_id]
            self._remember(agent_id)
        for agent_id, done in running.finished.items():  # runs that began and ended between probes
            if agent_id in self.counted or agent_id in self.tracked:
                continue
            self._remember(agent_id)
            if first:
                continue  # history from before the exporter started
            seconds = (done.finished_at - done.started_at) if done.finished_at and done.started_at else None
            self._finished(self.model(done.model), done.outcome, seconds)
        for agent in agents:
            agent.model = self.model(agent.model)
            if agent.id not in self.tracked:
                self.tracked[agent.id] = _Tracked(agent.model, agent.started_at, now)
        self.agents = agents
        gone = await self._gone(agents)
        self.stuck = Counter()
        for agent in agents:
            if agent.id in gone:
                self.tracked[agent.id].stuck = True
                self.stuck[agent.model] += 1

    def _finished(self, model: str, outcome: str, seconds: float | None) -> None:
        runs = self.metrics.runs
        if model not in self.models_finished:  # a model's outcomes all exist from its first run
            self.models_finished.add(model)
            for known in OUTCOMES:
                runs.labels(self.name, model, known)
        runs.labels(self.name, model, outcome).inc()
        if seconds is not None:
            self.metrics.run_duration.labels(self.name, model).observe(max(0.0, seconds))

    def _remember(self, agent_id: str) -> None:
        self.counted[agent_id] = None
        while len(self.counted) > 2 * self.target.max_agents:
            self.counted.popitem(last=False)

    async def _gone(self, agents: list[Agent]) -> set[str]:
        """Ids of agents whose pid or container is gone (blocking checks run off the loop)."""
        with_pid = [(a.id, a.pid, a.started_at) for a in agents if a.pid is not None] if self.check_pids else []
        with_container = [a for a in agents if a.container] if self.containers else []
        if not (with_pid or with_container):
            return set()

        def check() -> set[str]:
            out = {agent_id for agent_id, pid, started in with_pid if not probe_liveness.pid_alive(pid, started)}
            if self.containers is not None and with_container:
                gone = self.containers.gone({a.container for a in with_container if a.container})
                out |= {a.id for a in with_container if a.container in gone}
            return out

        return await self.owner.run_sync(check)

    # -- families -------------------------------------------------------------------------------

    def add_to(self, fams: dict[str, GaugeMetricFamily | CounterMetricFamily], latency: HistogramMetricFamily,
               now: float) -> None:
        """The latest results as values of this collection (the totals are in ``metrics``)."""
        s = self.name
        fams["agentwatch_app_info"].add_metric(
            [s, self.target.container or self.reported_container or "",
             self.target.compose_service or self.reported_compose_service or ""], 1.0)
        if self.queue_depth is not None:
            fams["agentwatch_app_queue_depth"].add_metric([s], self.queue_depth)
        if self.request_duration is not None:
            latency.add_metric([s], list(self.request_duration.buckets), self.request_duration.sum)
        for ep, state in self.endpoints.items():
            if state.success is not None:
                fams["agentwatch_probe_success"].add_metric([s, ep], state.success)
        if self.health_status is not None:
            checks = [Check("overall", self.health_status), *self.checks.values()]
            for check in checks:
                for st in catalog.APP_HEALTH_STATES:
                    fams["agentwatch_app_health_status"].add_metric([s, check.name, st],
                                                                    1.0 if st == check.status else 0.0)
                if check.latency_seconds is not None:
                    fams["agentwatch_app_dependency_latency_seconds"].add_metric([s, check.name],
                                                                                 check.latency_seconds)
        if self.lag is not None:
            fams["agentwatch_app_event_loop_lag_seconds"].add_metric([s], self.lag)
        if self.live is not None:
            fams["agentwatch_app_live"].add_metric([s], self.live)
        if self.ready is not None:
            fams["agentwatch_app_ready"].add_metric([s], self.ready)
        if self.deploy is not None:
            if self.deploy.draining is not None:
                fams["agentwatch_app_draining"].add_metric([s], 1.0 if self.deploy.draining else 0.0)
            if self.deploy.max_concurrency is not None:
                fams["agentwatch_app_max_concurrency"].add_metric([s], self.deploy.max_concurrency)
        if self.agents is not None:
            by_model = Counter(a.model for a in self.agents)
            for model in [*self.models, *([OTHER] if OTHER in by_model else [])]:
                fams["agentwatch_agents_running"].add_metric([s, model], by_model.get(model, 0))
                fams["agentwatch_agents_stuck_running"].add_metric([s, model], self.stuck.get(model, 0))
            starts = [self.tracked[a.id].started_at or self.tracked[a.id].first_seen
                      for a in self.agents if a.id in self.tracked]
            fams["agentwatch_agent_oldest_running_seconds"].add_metric([s], max(0.0, now - min(starts))
                                                                       if starts else 0.0)
        for pool in self.pools or ():
            for key, value in pool.values.items():
                metric = "agentwatch_pool_evictions_total" if key == "evictions" else f"agentwatch_pool_{key}"
                fams[metric].add_metric([s, pool.name], value)
        if self.requests_total is not None:
            fams["agentwatch_app_requests_total"].add_metric([s], self.requests_total)
        if self.errors_total is not None:
            fams["agentwatch_app_request_errors_total"].add_metric([s], self.errors_total)


#: The families this collector fills from the latest results; the totals come from ``ProbeMetrics``,
#: the request-latency histogram is copied from the server, and the pool wait histogram only comes
#: from instrumentation.
_TOTALS = ("agentwatch_probe_duration_seconds", "agentwatch_probe_http_responses_total",
           "agentwatch_probe_failures_total", "agentwatch_probe_series_dropped_total",
           "agentwatch_agent_run_duration_seconds", "agentwatch_agent_runs_total")
_FAMILIES = tuple(spec.name for spec in catalog.PROBES if spec.name not in _TOTALS and spec.kind != "histogram")


def warn_if_keyless(target: ProbeTarget) -> None:
    """One warning at start when a key is configured but none can be read: else the only sign is a
    stream of 401s. It names the variable and the file, never a value."""
    missing = []
    if target.api_key_env:
        missing.append(f"${target.api_key_env} is not set or empty")
    if target.api_key_file:
        try:
            with open(target.api_key_file, "rb") as fh:
                fh.read(1)
            missing.append(f"the first line of {target.api_key_file} is empty")
        except OSError as exc:
            missing.append(f"{target.api_key_file} cannot be read ({exc.strerror or type(exc).__name__})")
    if missing:
        log.warning("probe server %s: no API key (%s); probing without X-API-Key, so expect 401 answers",
                    target.name, "; ".join(missing), extra={"server": target.name})


class ProbeCollector(Collector):
    """Probes every server of ``config.probes``; one background task per server."""

    name = "probes"

    def __init__(self, config: ExporterConfig) -> None:
        super().__init__(timeout=5.0, max_workers=min(8, 2 + len(config.probes)))
        self.config = config
        self.session: aiohttp.ClientSession | None = None
        self.metrics = ProbeMetrics()
        self.servers: list[ServerProbe] = []
        for target in config.probes:  # names are unique: the config rejects repeats
            key = target.api_key()
            register_secret(key)
            if key is None:
                warn_if_keyless(target)
            self.servers.append(ServerProbe(target, self))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max(10, 8 * len(self.servers)), limit_per_host=8),
                # per-request deadlines are set by each probe; this is only a backstop
                timeout=aiohttp.ClientTimeout(total=120), auto_decompress=True)
        for server in self.servers:
            self._tasks.append(asyncio.create_task(server.run(), name=f"agentwatch-probe-{server.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None
        for server in self.servers:
            if server.containers is not None:
                await self.run_sync(server.containers.close)
        await super().stop()

    async def collect(self) -> list[Metric]:
        fams = {name: catalog.scalar(name) for name in _FAMILIES}
        latency = catalog.histogram("agentwatch_app_request_duration_seconds")
        now = time.time()
        for server in self.servers:
            server.add_to(fams, latency, now)
        return [*fams.values(), latency, *self.metrics.registry.collect()]

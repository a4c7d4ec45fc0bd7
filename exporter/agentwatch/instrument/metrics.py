"""``AgentMetrics``: all of one agent server's agentwatch metrics, in a registry the server owns.

Totals (runs by outcome, run durations, requests, errors, request latencies, pool waits) are
prometheus_client objects in a private registry; what is only known at scrape time (agents running
now, pool figures, lag, deploy state, queue depth, the last health evaluation) is read then. Both are served through the
server's registry as one collector.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agentwatch import catalog
from agentwatch.instrument import health, http
from agentwatch.instrument.pool import FIGURE_METRICS, PoolMetrics
from agentwatch.instrument.runs import RUN_OUTCOMES, AgentRun

log = logging.getLogger("agentwatch.instrument")

#: Label value that models beyond ``max_models`` fold into.
OTHER = "_other"


class AgentMetrics(Collector):
    """All of a server's agentwatch metrics, registered in its own registry as one collector.

    ``container`` and ``compose_service`` say where the server runs: they go on
    ``agentwatch_app_info`` (and into the health body, for a probing exporter), so the server's
    alerts can join its container's.
    """

    def __init__(self, server: str, registry: CollectorRegistry | None = None, max_models: int = 20,
                 container: str | None = None, compose_service: str | None = None) -> None:
        self.server = server
        self.max_models = max_models
        self.container = container
        self.compose_service = compose_service
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self._totals = catalog.PrivateRegistry()
        self._run_duration = catalog.metric("agentwatch_agent_run_duration_seconds", self._totals, Histogram)
        self._runs = catalog.metric("agentwatch_agent_runs_total", self._totals, CounterMetric)
        self._requests = catalog.metric("agentwatch_app_requests_total", self._totals, CounterMetric).labels(server)
        self._errors = catalog.metric("agentwatch_app_request_errors_total", self._totals, CounterMetric).labels(server)
        self._latency = catalog.metric("agentwatch_app_request_duration_seconds", self._totals, Histogram)
        self._latency_of_server = self._latency.labels(server)
        self._pool_wait = catalog.metric("agentwatch_pool_wait_seconds", self._totals, Histogram)
        self._lock = threading.Lock()
        self._models: list[str] = []
        self._finished_models: set[str] = set()
        self._running: set[AgentRun] = set()
        self._pools: dict[str, PoolMetrics] = {}
        self._pool_sources: dict[str, Callable[[], Mapping[str, float]]] = {}
        self.event_loop_lag: float | None = None
        self.draining: bool | None = None
        self.max_concurrency: float | None = None
        #: Work waiting for a free slot (queued agents); None: the server has no queue to report.
        self.queue_depth: float | None = None
        self._health: dict[str, tuple[str, float | None]] = {}
        self.registry.register(self)

    # -- the pieces a server uses ---------------------------------------------------------------

    def _model(self, model: str) -> str:
        model = (model or "unknown")[:64]
        with self._lock:
            if model in self._models:
                return model
            if len(self._models) < self.max_models:
                self._models.append(model)
                return model
        return OTHER

    def agent_run(self, model: str) -> AgentRun:
        """``with``/``async with``: running gauge while inside, duration and outcome on exit."""
        return AgentRun(self, self._model(model))

    def run_started(self, run: AgentRun) -> None:
        with self._lock:
            self._running.add(run)

    def run_finished(self, run: AgentRun, seconds: float) -> None:
        with self._lock:
            self._running.discard(run)
            first = run.model not in self._finished_models
            self._finished_models.add(run.model)
        if first:  # a model's outcomes all exist from its first run, at 0
            for outcome in RUN_OUTCOMES:
                self._runs.labels(self.server, run.model, outcome)
        self._runs.labels(self.server, run.model, run.outcome or "unknown").inc()
        self._run_duration.labels(self.server, run.model).observe(max(0.0, seconds))

    def pool(self, name: str, max_size: int) -> PoolMetrics:
        """The figures object of a pool (created on first ask)."""
        with self._lock:
            if name not in self._pools:
                self._pools[name] = PoolMetrics(name, max_size, self._pool_wait.labels(self.server, name))
            return self._pools[name]

    def pool_stats(self, name: str, source: Callable[[], Mapping[str, float]]) -> None:
        """Read an existing pool's own figures at scrape time (keys: max_size, size, in_use, idle,
        waiting, evictions)."""
        with self._lock:
            self._pool_sources[name] = source

    def count_request(self, status: int, seconds: float | None = None) -> None:
        """One request answered with ``status``; ``seconds`` (when known) goes to the latency histogram."""
        self._requests.inc()
        if status >= 500:
            self._errors.inc()
        if seconds is not None:
            self._latency_of_server.observe(max(0.0, seconds))

    def request_duration(self) -> dict[str, Any]:
        """The latency histogram as a health body carries it: ``{buckets: {le: cumulative}, sum, count}``."""
        out: dict[str, Any] = {"buckets": {}, "sum": 0.0, "count": 0.0}
        for fam in self._latency.collect():
            for sample in fam.samples:
                if sample.labels.get("server") != self.server:
                    continue
                if sample.name.endswith("_bucket"):
                    out["buckets"][sample.labels["le"]] = sample.value
                elif sample.name.endswith("_sum"):
                    out["sum"] = sample.value
                elif sample.name.endswith("_count"):
                    out["count"] = sample.value
        return out

    @property
    def requests(self) -> int:
        """Requests counted so far."""
        return self._total("agentwatch_app_requests_total")

    @property
    def errors(self) -> int:
        """Requests that ended in a 5xx so far."""
        return self._total("agentwatch_app_request_errors_total")

    def _total(self, name: str) -> int:
        return int(self._totals.get_sample_value(name, {"server": self.server}) or 0)

    def set_health(self, status: str, checks: Mapping[str, tuple[str, float | None]]) -> None:
        """The last health evaluation: overall status and (status, latency seconds) per check."""
        with self._lock:
            self._health = {"overall": (status, None), **dict(checks)}

    # -- aiohttp and ASGI helpers ---------------------------------------------------------------

    @property
    def aiohttp_middleware(self) -> Callable[..., Awaitable[Any]]:
        """An aiohttp middleware counting and timing requests, and 5xx answers (and unhandled exceptions)."""
        return http.aiohttp_middleware(self.count_request)

    def asgi(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """Wrap an ASGI app so its HTTP requests are counted and timed, and its 5xx answers counted."""
        return http.asgi(app, self.count_request)

    async def metrics_handler(self, request: Any) -> Any:
        """aiohttp handler serving this server's registry: the text format, or OpenMetrics when asked."""
        return http.metrics_response(self.registry, request.headers.get("Accept", ""))

    def health_handler(self, checks: Mapping[str, health.Check] | None = None,
                       lag_threshold: float = 1.0, check_timeout: float = 2.0) -> Callable[..., Awaitable[Any]]:
        """aiohttp handler: runs the checks, adds an event_loop check, answers 503 when unhealthy.

        A check is an async callable returning a status word (or bool), or a dict with ``status`` and
        any extra fields; raising or taking longer than ``check_timeout`` makes it unhealthy. The
        event loop check is unhealthy while the measured lag exceeds ``lag_threshold`` seconds.
        """
        from aiohttp import web

        async def handler(request: web.Request) -> web.Response:
            body = await self.evaluate_health(checks or {}, lag_threshold, check_timeout)
            return web.json_response(body, status=503 if body["status"] == "unhealthy" else 200)

        return handler

    async def evaluate_health(self, checks: Mapping[str, health.Check], lag_threshold: float,
                              check_timeout: float) -> dict[str, Any]:
        """Run the checks concurrently and record the result; returns the health body."""
        lag = self.event_loop_lag or 0.0
        overall, out = await health.evaluate(checks, lag, lag_threshold, check_timeout)
        self.set_health(overall, {n: (c["status"], (c["latency_ms"] / 1000.0) if "latency_ms" in c else None)
                                  for n, c in out.items()})
        body: dict[str, Any] = {"status": overall, "checks": out, "event_loop_lag_seconds": round(lag, 6),
                                "requests_total": self.requests, "errors_total": self.errors,
                                "request_duration_seconds": self.request_duration()}
        if self.queue_depth is not None:
            body["queue_depth"] = self.queue_depth
        if self.container:
            body["container"] = self.container
        if self.compose_service:
            body["compose_service"] = self.compose_service
        return body

    # -- prometheus_client collector protocol ---------------------------------------------------

    def describe(self) -> list[Metric]:
        return []  # names are dynamic per scrape; nothing to check against other collectors

    def collect(self) -> Iterator[Metric]:
        s = self.server
        now = time.time()
        with self._lock:
            models = list(self._models)
            running = list(self._running)
            pools = dict(self._pools)
            sources = dict(self._pool_sources)
            lag, draining, max_conc = self.event_loop_lag, self.draining, self.max_concurrency
            queue = self.queue_depth
            health_now = dict(self._health)

        fam = catalog.gauge("agentwatch_app_info")
        fam.add_metric([s, self.container or "", self.compose_service or ""], 1.0)
        yield fam
        fam = catalog.gauge("agentwatch_agents_running")
        by_model = Counter(r.model for r in running)
        for model in models + ([OTHER] if by_model.get(OTHER) else []):
            fam.add_metric([s, model], by_model.get(model, 0))
        yield fam
        fam = catalog.gauge("agentwatch_agent_oldest_running_seconds")
        fam.add_metric([s], max((now - r.started_at for r in running), default=0.0))
        yield fam
        yield from self._totals.collect()
        yield from self._pool_families(pools, sources)
        for name, value in (("agentwatch_app_event_loop_lag_seconds", lag),
                            ("agentwatch_app_draining", None if draining is None else float(draining)),
                            ("agentwatch_app_max_concurrency", max_conc),
                            ("agentwatch_app_queue_depth", queue)):
            if value is not None:
                fam = catalog.gauge(name)
                fam.add_metric([s], value)
                yield fam
        if health_now:
            status_fam = catalog.gauge("agentwatch_app_health_status")
            latency_fam = catalog.gauge("agentwatch_app_dependency_latency_seconds")
            for check, (status, latency) in health_now.items():
                for state in catalog.APP_HEALTH_STATES:
                    status_fam.add_metric([s, check, state], 1.0 if state == status else 0.0)
                if latency is not None:
                    latency_fam.add_metric([s, check], latency)
            yield status_fam
            yield latency_fam

    def _pool_families(self, pools: Mapping[str, PoolMetrics],
                       sources: Mapping[str, Callable[[], Mapping[str, float]]]) -> Iterator[Metric]:
        figures = {name: pool.figures() for name, pool in pools.items()}
        for name, source in sources.items():
            try:
                figures[name] = {k: float(v) for k, v in dict(source()).items()}
            except Exception as exc:  # a broken stats callback must not break /metrics
                log.warning("pool stats of %s failed: %s", name, exc)
        for key, metric in FIGURE_METRICS.items():
            fam = catalog.scalar(metric)
            for name, values in sorted(figures.items()):
                if key in values:
                    fam.add_metric([self.server, name], values[key])
            yield fam

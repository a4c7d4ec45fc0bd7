"""Instrumentation for Python agent servers: export the probe metrics' names directly.

An aiohttp or ASGI agent server creates one ``AgentMetrics(server="name")`` and gets, in a
``CollectorRegistry`` it owns (never the global one), the same families the exporter's probe
collector builds from probing it: running agents, run durations and outcomes, pool figures,
requests and errors, event-loop lag, health sub-checks. Names, help texts and buckets come from
``agentwatch.catalog``, and every series carries the constant ``server`` label, so alert rules and
dashboards work whichever path a server uses::

    metrics = AgentMetrics(server="agents-1")
    app = web.Application(middlewares=[metrics.aiohttp_middleware])
    pool = metrics.pool("mcp", max_size=20)
    lag = LoopLagMonitor(metrics)                    # start() in a cleanup context
    app.router.add_get("/metrics", metrics.metrics_handler)
    app.router.add_get("/api/health", metrics.health_handler({"db": check_db}, lag_threshold=1.0))

    async with metrics.agent_run("sonnet") as run:   # running gauge, duration, outcome
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from agentwatch import catalog
from agentwatch.histogram import Histogram

log = logging.getLogger("agentwatch.instrument")

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Outcomes the agent-run context manager records (the probe path adds lost and unknown).
RUN_OUTCOMES = ("success", "error", "cancelled")
#: Label value that models beyond ``max_models`` fold into.
OTHER = "_other"


class PoolMetrics:
    """Figures of one client pool; the pool calls these hooks (or ``set``) as it works."""

    def __init__(self, owner: AgentMetrics, name: str, max_size: int) -> None:
        self._owner = owner
        self.name = name
        self.max_size = max_size
        self.size = 0
        self.in_use = 0
        self.waiting = 0
        self.evictions = 0
        self.wait = Histogram(catalog.spec("agentwatch_pool_wait_seconds").buckets or ())
        self._idle: int | None = None
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        return self._idle if self._idle is not None else max(0, self.size - self.in_use)

    def opened(self, n: int = 1) -> None:
        with self._lock:
            self.size += n

    def closed(self, n: int = 1, evicted: bool = False) -> None:
        with self._lock:
            self.size = max(0, self.size - n)
            if evicted:
                self.evictions += n

    def checked_out(self) -> None:
        with self._lock:
            self.in_use += 1

    def checked_in(self) -> None:
        with self._lock:
            self.in_use = max(0, self.in_use - 1)

    @contextlib.contextmanager
    def waiting_for_client(self) -> Iterator[None]:
        """Wrap the wait for a client: counts the waiter and observes the wait time."""
        with self._lock:
            self.waiting += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.waiting -= 1
            self.wait.observe(time.perf_counter() - start)

    def set(self, *, max_size: int | None = None, size: int | None = None, in_use: int | None = None,
            idle: int | None = None, waiting: int | None = None, evictions: int | None = None) -> None:
        """For pools that keep their own figures: copy them in (evictions is a running total)."""
        with self._lock:
            for key, value in (("max_size", max_size), ("size", size), ("in_use", in_use),
                               ("waiting", waiting), ("evictions", evictions)):
                if value is not None:
                    setattr(self, key, value)
            if idle is not None:
                self._idle = idle


class AgentRun:
    """One agent run: counted as running until it exits, then timed and counted by outcome."""

    def __init__(self, owner: AgentMetrics, model: str) -> None:
        self._owner = owner
        self.model = owner._model(model)
        #: None: decided on exit (error on an exception, cancelled on cancellation, else success).
        self.outcome: str | None = None
        self.started_at = 0.0
        self._token = object()

    def fail(self) -> None:
        self.outcome = "error"

    def __enter__(self) -> AgentRun:
        self.started_at = time.time()
        self._owner._run_started(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self.outcome is None:
            if exc_type is None:
                self.outcome = "success"
            elif issubclass(exc_type, asyncio.CancelledError | KeyboardInterrupt):
                self.outcome = "cancelled"
            else:
                self.outcome = "error"
        self._owner._run_finished(self, time.time() - self.started_at)

    async def __aenter__(self) -> AgentRun:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.__exit__(exc_type, *rest)


class AgentMetrics:
    """All of a server's agentwatch metrics, registered in its own registry as one collector."""

    def __init__(self, server: str, registry: CollectorRegistry | None = None, max_models: int = 20) -> None:
        self.server = server
        self.max_models = max_models
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._models: list[str] = []
        self._running: dict[object, AgentRun] = {}
        self._durations: dict[str, Histogram] = {}
        self._runs: Counter[tuple[str, str]] = Counter()
        self._pools: dict[str, PoolMetrics] = {}
        self._pool_sources: dict[str, Callable[[], Mapping[str, float]]] = {}
        self.requests = 0
        self.errors = 0
        self.event_loop_lag: float | None = None
        self.draining: bool | None = None
        self.max_concurrency: float | None = None
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
        return AgentRun(self, model)

    def _run_started(self, run: AgentRun) -> None:
        with self._lock:
            self._running[run._token] = run

    def _run_finished(self, run: AgentRun, seconds: float) -> None:
        with self._lock:
            self._running.pop(run._token, None)
            hist = self._durations.setdefault(run.model, Histogram(catalog.AGENT_RUN_BUCKETS))
            self._runs[(run.model, run.outcome or "unknown")] += 1
        hist.observe(max(0.0, seconds))

    def pool(self, name: str, max_size: int) -> PoolMetrics:
        """The figures object of a pool (created on first ask)."""
        with self._lock:
            if name not in self._pools:
                self._pools[name] = PoolMetrics(self, name, max_size)
            return self._pools[name]

    def pool_stats(self, name: str, source: Callable[[], Mapping[str, float]]) -> None:
        """Read an existing pool's own figures at scrape time (keys: max_size, size, in_use, idle,
        waiting, evictions)."""
        with self._lock:
            self._pool_sources[name] = source

    def count_request(self, status: int) -> None:
        with self._lock:
            self.requests += 1
            if status >= 500:
                self.errors += 1

    def set_health(self, status: str, checks: Mapping[str, tuple[str, float | None]]) -> None:
        """The last health evaluation: overall status and (status, latency seconds) per check."""
        with self._lock:
            self._health = {"overall": (status, None), **dict(checks)}

    # -- aiohttp and ASGI helpers ---------------------------------------------------------------

    @property
    def aiohttp_middleware(self) -> Callable[..., Awaitable[Any]]:
        """An aiohttp middleware counting requests and 5xx answers (and unhandled exceptions)."""
        from aiohttp import web

        @web.middleware
        async def agentwatch_requests(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self.count_request(exc.status)
                raise
            except asyncio.CancelledError:
                self.count_request(499)
                raise
            except Exception:
                self.count_request(500)
                raise
            self.count_request(getattr(response, "status", 200))
            return response

        return agentwatch_requests

    def asgi(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """Wrap an ASGI app so its HTTP requests and 5xx answers are counted."""

        async def wrapped(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
            if scope.get("type") != "http":
                await app(scope, receive, send)
                return
            status = 500

            async def send_wrapper(message: dict[str, Any]) -> None:
                nonlocal status
                if message.get("type") == "http.response.start":
                    status = int(message.get("status", 500))
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            except Exception:
                status = 500
                raise
            finally:
                self.count_request(status)

        return wrapped

    async def metrics_handler(self, request: Any) -> Any:
        """aiohttp handler serving this server's registry in the Prometheus text format."""
        from aiohttp import web

        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": TEXT_CONTENT_TYPE})

    def health_handler(self, checks: Mapping[str, Callable[[], Awaitable[Any]]] | None = None,
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

    async def evaluate_health(self, checks: Mapping[str, Callable[[], Awaitable[Any]]], lag_threshold: float,
                              check_timeout: float) -> dict[str, Any]:
        """Run the checks concurrently and record the result; returns the health body."""
        from agentwatch.collectors.probe_fields import health_state

        async def one(fn: Callable[[], Awaitable[Any]]) -> tuple[dict[str, Any], float]:
            start = time.perf_counter()
            try:
                result = await asyncio.wait_for(fn(), timeout=check_timeout)
            except TimeoutError:
                result = {"status": "unhealthy", "error": f"no answer within {check_timeout:g}s"}
            except Exception as exc:
                result = {"status": "unhealthy", "error": type(exc).__name__}
            latency = time.perf_counter() - start
            item = dict(result) if isinstance(result, dict) else {"status": result}
            item["status"] = health_state(item.get("status"))
            item.setdefault("latency_ms", round(latency * 1000, 3))
            return item, latency

        names = list(checks)
        results = await asyncio.gather(*(one(checks[n]) for n in names))
        out: dict[str, dict[str, Any]] = {n: r[0] for n, r in zip(names, results, strict=True)}
        lag = self.event_loop_lag or 0.0
        out["event_loop"] = {"status": "unhealthy" if lag > lag_threshold else "healthy",
                             "lag_seconds": round(lag, 6), "threshold_seconds": lag_threshold}
        states = {c["status"] for c in out.values()}
        overall = ("unhealthy" if "unhealthy" in states
                   else "degraded" if states & {"degraded", "unknown"} else "healthy")
        self.set_health(overall, {n: (c["status"], (c["latency_ms"] / 1000.0) if "latency_ms" in c else None)
                                  for n, c in out.items()})
        with self._lock:
            requests, errors = self.requests, self.errors
        return {"status": overall, "checks": out, "event_loop_lag_seconds": round(lag, 6),
                "requests_total": requests, "errors_total": errors}

    # -- prometheus_client collector protocol ---------------------------------------------------

    def describe(self) -> list[Metric]:
        return []  # names are dynamic per scrape; nothing to check against other collectors

    def collect(self) -> Iterable[Metric]:
        s = self.server
        now = time.time()
        with self._lock:
            models = list(self._models)
            running = list(self._running.values())
            durations = dict(self._durations)
            runs = Counter(self._runs)
            pools = dict(self._pools)
            sources = dict(self._pool_sources)
            requests, errors, lag = self.requests, self.errors, self.event_loop_lag
            health = dict(self._health)
            draining, max_conc = self.draining, self.max_concurrency

        fam = catalog.family("agentwatch_agents_running")
        by_model = Counter(r.model for r in running)
        for model in models + ([OTHER] if by_model.get(OTHER) else []):
            fam.add_metric([s, model], by_model.get(model, 0))
        yield fam
        fam = catalog.family("agentwatch_agent_oldest_running_seconds")
        fam.add_metric([s], max((now - r.started_at for r in running), default=0.0))
        yield fam
        fam = catalog.family("agentwatch_agent_run_duration_seconds")
        for model, hist in sorted(durations.items()):
            buckets, total = hist.samples()
            fam.add_metric([s, model], buckets, total)
        yield fam
        fam = catalog.family("agentwatch_agent_runs_total")
        for model in sorted({m for m, _ in runs} | set(durations)):
            for outcome in sorted(set(RUN_OUTCOMES) | {o for m, o in runs if m == model}):
                fam.add_metric([s, model, outcome], runs.get((model, outcome), 0))
        yield fam
        yield from self._pool_families(pools, sources)
        fam = catalog.family("agentwatch_app_requests_total")
        fam.add_metric([s], requests)
        yield fam
        fam = catalog.family("agentwatch_app_request_errors_total")
        fam.add_metric([s], errors)
        yield fam
        if lag is not None:
            fam = catalog.family("agentwatch_app_event_loop_lag_seconds")
            fam.add_metric([s], lag)
            yield fam
        if draining is not None:
            fam = catalog.family("agentwatch_app_draining")
            fam.add_metric([s], 1.0 if draining else 0.0)
            yield fam
        if max_conc is not None:
            fam = catalog.family("agentwatch_app_max_concurrency")
            fam.add_metric([s], max_conc)
            yield fam
        if health:
            status_fam = catalog.family("agentwatch_app_health_status")
            latency_fam = catalog.family("agentwatch_app_dependency_latency_seconds")
            for check, (status, latency) in health.items():
                for state in catalog.APP_HEALTH_STATES:
                    status_fam.add_metric([s, check, state], 1.0 if state == status else 0.0)
                if latency is not None:
                    latency_fam.add_metric([s, check], latency)
            yield status_fam
            yield latency_fam

    def _pool_families(self, pools: Mapping[str, PoolMetrics],
                       sources: Mapping[str, Callable[[], Mapping[str, float]]]) -> Iterator[Metric]:
        s = self.server
        figures: dict[str, dict[str, float]] = {}
        for name, pool in pools.items():
            figures[name] = {"max_size": pool.max_size, "size": pool.size, "in_use": pool.in_use,
                             "idle": pool.idle, "waiting": pool.waiting, "evictions": pool.evictions}
        for name, source in sources.items():
            try:
                figures[name] = {k: float(v) for k, v in dict(source()).items()}
            except Exception as exc:  # a broken stats callback must not break /metrics
                log.warning("pool stats of %s failed: %s", name, exc)
        names = {"max_size": "agentwatch_pool_max_size", "size": "agentwatch_pool_size",
                 "in_use": "agentwatch_pool_in_use", "idle": "agentwatch_pool_idle",
                 "waiting": "agentwatch_pool_waiting", "evictions": "agentwatch_pool_evictions_total"}
        for key, metric in names.items():
            fam = catalog.family(metric)
            for name, values in sorted(figures.items()):
                if key in values:
                    fam.add_metric([s, name], values[key])
            yield fam
        fam = catalog.family("agentwatch_pool_wait_seconds")
        for name, pool in sorted(pools.items()):
            buckets, total = pool.wait.samples()
            fam.add_metric([s, name], buckets, total)
        yield fam


class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeping task; reports the worst lag of a window.

    While the loop is blocked nothing can run (this monitor included); the block shows up as lag as
    soon as the loop runs again, and stays the reported value for ``window`` seconds so a health
    probe that arrives after the block still sees it.
    """

    def __init__(self, metrics: AgentMetrics, interval: float = 0.25, window: float = 10.0) -> None:
        self.metrics = metrics
        self.interval = interval
        self.window = window
        self._task: asyncio.Task[None] | None = None
        self._recent: list[tuple[float, float]] = []

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="agentwatch-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def record(self, lag: float) -> None:
        now = time.monotonic()
        self._recent = [(t, v) for t, v in self._recent if now - t <= self.window]
        self._recent.append((now, max(0.0, lag)))
        self.metrics.event_loop_lag = max(v for _, v in self._recent)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.record(loop.time() - before - self.interval)

    async def cleanup_ctx(self, app: Any) -> Any:
        """For ``app.cleanup_ctx.append(monitor.cleanup_ctx)``."""
        self.start()
        yield
        await self.stop()

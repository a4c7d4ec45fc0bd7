"""agentwatch.instrument in a real aiohttp server on loopback: names, labels, help and buckets match the
catalog, and the figures follow what the server does."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import REGISTRY

from agentwatch import catalog
from agentwatch.instrument import AgentMetrics, LoopLagMonitor
from agentwatch.local.scrape import Scrape

SERVER = "inst-1"


def _app(metrics: AgentMetrics, monitor: LoopLagMonitor | None = None, **health: object) -> web.Application:
    app = web.Application(middlewares=[metrics.aiohttp_middleware])

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("handler bug")

    async def unavailable(request: web.Request) -> web.Response:
        raise web.HTTPServiceUnavailable()

    async def db() -> dict[str, object]:
        await asyncio.sleep(0.01)
        return {"status": "ok"}

    async def cache() -> str:
        raise ConnectionError("redis down")

    app.router.add_get("/ok", ok)
    app.router.add_get("/boom", boom)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/metrics", metrics.metrics_handler)
    app.router.add_get("/api/health", metrics.health_handler({"database": db, **health}, lag_threshold=0.3))
    app.router.add_get("/api/health-bad", metrics.health_handler({"database": db, "redis": cache}))
    if monitor is not None:
        app.cleanup_ctx.append(monitor.cleanup_ctx)
    return app


async def _scrape(client) -> Scrape:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Scrape.parse(await resp.text())


def _check_against_catalog(scrape: Scrape) -> set[str]:
    """Every family is in the catalog with its type, help, labels and buckets; returns the names."""
    names = set()
    for name, kind in scrape.types.items():
        full = name if kind != "counter" else f"{name}_total"
        spec = catalog.spec(full)
        names.add(full)
        assert spec.source == "probes", full
        assert kind == spec.kind, (full, kind)
        assert scrape.helps[name] == spec.help, full
        for series_name in spec.exposed_names:
            for labels, _ in scrape.series(series_name):
                expected = set(spec.labels) | ({"le"} if series_name.endswith("_bucket") else set())
                assert set(labels) == expected, (series_name, labels)
                assert labels["server"] == SERVER
        if spec.kind == "histogram":
            bounds = sorted({float(lbl["le"]) for lbl, _ in scrape.series(f"{full}_bucket")} - {float("inf")})
            assert bounds == sorted(float(b) for b in spec.buckets or ()), full
    return names


async def test_families_match_the_catalog_and_follow_the_server(aiohttp_client) -> None:
    metrics = AgentMetrics(server=SERVER)
    client = await aiohttp_client(_app(metrics))
    for path, status in (("/ok", 200), ("/ok", 200), ("/boom", 500), ("/unavailable", 503), ("/nope", 404)):
        assert (await client.get(path)).status == status

    pool = metrics.pool("mcp", max_size=2)
    pool.opened(2)
    pool.checked_out()
    with pool.waiting_for_client():
        mid = await _scrape(client)
        await asyncio.sleep(0.02)
    pool.closed(1, evicted=True)

    with metrics.agent_run("sonnet"):
        async with metrics.agent_run("haiku"):
            running = await _scrape(client)
    try:
        with metrics.agent_run("opus"):
            raise ValueError("agent failed")
    except ValueError:
        pass
    task = asyncio.create_task(_cancelled_run(metrics))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    metrics.draining, metrics.max_concurrency = False, 8

    resp = await client.get("/api/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "healthy" and body["checks"]["database"]["status"] == "healthy"
    assert "event_loop" in body["checks"]

    scrape = await _scrape(client)
    names = _check_against_catalog(scrape)
    assert {"agentwatch_agents_running", "agentwatch_agent_run_duration_seconds", "agentwatch_agent_runs_total",
            "agentwatch_pool_in_use", "agentwatch_pool_wait_seconds", "agentwatch_app_requests_total",
            "agentwatch_app_request_errors_total", "agentwatch_app_health_status", "agentwatch_app_draining",
            "agentwatch_app_max_concurrency", "agentwatch_agent_oldest_running_seconds"} <= names

    assert mid.value("agentwatch_pool_waiting", pool="mcp") == 1
    assert running.value("agentwatch_agents_running", model="sonnet") == 1
    assert running.value("agentwatch_agents_running", model="haiku") == 1
    assert running.value("agentwatch_agent_oldest_running_seconds") >= 0
    assert scrape.value("agentwatch_agents_running", model="sonnet") == 0
    assert scrape.value("agentwatch_agent_runs_total", model="sonnet", outcome="success") == 1
    assert scrape.value("agentwatch_agent_runs_total", model="opus", outcome="error") == 1
    assert scrape.value("agentwatch_agent_runs_total", model="gpt", outcome="cancelled") == 1
    assert scrape.value("agentwatch_agent_run_duration_seconds_count", model="haiku") == 1
    # /ok x2, /boom, /unavailable, /nope, two earlier scrapes, /api/health (a request counts once answered)
    assert scrape.value("agentwatch_app_requests_total") == 8
    assert scrape.value("agentwatch_app_request_errors_total") == 2
    assert scrape.value("agentwatch_pool_max_size", pool="mcp") == 2
    assert scrape.value("agentwatch_pool_size", pool="mcp") == 1
    assert scrape.value("agentwatch_pool_in_use", pool="mcp") == 1
    assert scrape.value("agentwatch_pool_idle", pool="mcp") == 0
    assert scrape.value("agentwatch_pool_evictions_total", pool="mcp") == 1
    assert scrape.value("agentwatch_pool_wait_seconds_count", pool="mcp") == 1
    assert scrape.value("agentwatch_pool_wait_seconds_sum", pool="mcp") >= 0.02
    assert scrape.value("agentwatch_app_health_status", check="overall", status="healthy") == 1
    assert scrape.value("agentwatch_app_health_status", check="database", status="unhealthy") == 0
    assert scrape.value("agentwatch_app_dependency_latency_seconds", check="database") >= 0.01
    assert scrape.value("agentwatch_app_max_concurrency") == 8
    # the server's registry is its own: nothing leaks into the global one
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("agentwatch_")]


async def _cancelled_run(metrics: AgentMetrics) -> None:
    async with metrics.agent_run("gpt"):
        await asyncio.sleep(10)


async def test_failing_check_makes_health_503(aiohttp_client) -> None:
    metrics = AgentMetrics(server=SERVER)
    client = await aiohttp_client(_app(metrics))
    resp = await client.get("/api/health-bad")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"]["redis"] == {"status": "unhealthy", "error": "ConnectionError",
                                       "latency_ms": body["checks"]["redis"]["latency_ms"]}
    scrape = await _scrape(client)
    assert scrape.value("agentwatch_app_health_status", check="redis", status="unhealthy") == 1
    assert scrape.value("agentwatch_app_health_status", check="overall", status="unhealthy") == 1


async def test_event_loop_lag_is_measured_and_fails_health(aiohttp_client) -> None:
    metrics = AgentMetrics(server=SERVER)
    monitor = LoopLagMonitor(metrics, interval=0.05, window=5.0)
    client = await aiohttp_client(_app(metrics, monitor))
    await asyncio.sleep(0.2)
    assert (await client.get("/api/health")).status == 200
    time.sleep(0.6)  # noqa: ASYNC251 - block this event loop on purpose, as a CPU-bound handler would
    deadline = time.monotonic() + 5
    while (metrics.event_loop_lag or 0) < 0.5 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    resp = await client.get("/api/health")
    body = await resp.json()
    assert resp.status == 503 and body["checks"]["event_loop"]["status"] == "unhealthy", body
    scrape = await _scrape(client)
    assert scrape.value("agentwatch_app_event_loop_lag_seconds") >= 0.5
    assert scrape.value("agentwatch_app_health_status", check="event_loop", status="unhealthy") == 1


async def test_model_labels_are_capped() -> None:
    metrics = AgentMetrics(server=SERVER, max_models=2)
    for model in ("a", "b", "c", "d"):
        with metrics.agent_run(model):
            pass
    scrape = Scrape.parse(_render(metrics))
    models = {lbl["model"] for lbl, _ in scrape.series("agentwatch_agent_runs_total")}
    assert models == {"a", "b", "_other"}
    assert scrape.value("agentwatch_agent_runs_total", model="_other", outcome="success") == 2


async def test_pool_stats_callback_and_a_broken_one() -> None:
    metrics = AgentMetrics(server=SERVER)
    metrics.pool_stats("db", lambda: {"max_size": 10, "size": 4, "in_use": 3, "idle": 1, "waiting": 0,
                                      "evictions": 7})
    metrics.pool_stats("broken", lambda: 1 / 0)
    scrape = Scrape.parse(_render(metrics))
    assert scrape.value("agentwatch_pool_in_use", pool="db") == 3
    assert scrape.value("agentwatch_pool_evictions_total", pool="db") == 7
    assert not scrape.series("agentwatch_pool_size", pool="broken")


async def test_asgi_wrapper_counts_requests_and_errors() -> None:
    metrics = AgentMetrics(server=SERVER)

    async def app(scope, receive, send):
        if scope["path"] == "/raise":
            raise RuntimeError("bug")
        await send({"type": "http.response.start", "status": 502 if scope["path"] == "/bad" else 200,
                    "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    wrapped = metrics.asgi(app)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    for path in ("/", "/bad", "/raise"):
        try:
            await wrapped({"type": "http", "path": path}, receive, send)
        except RuntimeError:
            pass
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200, 502]
    assert (metrics.requests, metrics.errors) == (3, 2)


def _render(metrics: AgentMetrics) -> str:
    from prometheus_client.exposition import generate_latest

    return generate_latest(metrics.registry).decode()


async def test_a_registry_passed_in_gets_the_catalog_families_and_no_created_series() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = AgentMetrics(server=SERVER, registry=registry)
    with metrics.agent_run("haiku"):
        pass
    metrics.pool("mcp", max_size=2).wait.observe(0.01)
    metrics.count_request(503)
    text = _render(metrics)
    assert "_created" not in text  # prometheus_client's creation-time series are left out
    scrape = Scrape.parse(text)
    _check_against_catalog(scrape)
    assert scrape.value("agentwatch_agent_runs_total", model="haiku", outcome="cancelled") == 0
    assert scrape.value("agentwatch_pool_wait_seconds_bucket", pool="mcp", le="0.05") == 1
    assert (metrics.requests, metrics.errors) == (1, 1)

"""agentwatch.instrument's request-latency histogram, queue depth and app info: on /metrics with the
catalog's names and buckets, and in the health body, where the probe path reads the same figures."""

from __future__ import annotations

import asyncio

from aiohttp import web

from agentwatch import catalog
from agentwatch.collectors.probe_fields import Fields
from agentwatch.config import ProbeFields
from agentwatch.instrument import AgentMetrics
from agentwatch.local.scrape import Scrape
from tests.instrument.test_instrument import SERVER, _check_against_catalog, _render

LATENCY = "agentwatch_app_request_duration_seconds"
BOUNDS = catalog.spec(LATENCY).buckets or ()


def _app(metrics: AgentMetrics) -> web.Application:
    app = web.Application(middlewares=[metrics.aiohttp_middleware])

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.03)
        return web.json_response({})

    app.router.add_get("/slow", slow)
    app.router.add_get("/metrics", metrics.metrics_handler)
    app.router.add_get("/api/health", metrics.health_handler({}))
    return app


async def test_latency_queue_and_info_on_metrics_and_in_health(aiohttp_client) -> None:
    metrics = AgentMetrics(server=SERVER, container="agentwatch-agent-1", compose_service="agent")
    client = await aiohttp_client(_app(metrics))
    metrics.queue_depth = 3
    with metrics.agent_run("haiku"):  # so every histogram has a series to check against the catalog
        metrics.pool("mcp", max_size=2).wait.observe(0.001)
    for _ in range(2):
        assert (await client.get("/slow")).status == 200
    resp = await client.get("/metrics")
    scrape = Scrape.parse(await resp.text())
    names = _check_against_catalog(scrape)  # names, help, labels and buckets are the catalog's
    assert {LATENCY, "agentwatch_app_queue_depth", "agentwatch_app_info"} <= names
    assert scrape.value("agentwatch_app_info", container="agentwatch-agent-1", compose_service="agent") == 1
    assert scrape.value("agentwatch_app_queue_depth") == 3
    # a request is timed when it is answered: the two /slow ones so far, each at least 30 ms
    assert scrape.value(f"{LATENCY}_count") == 2
    assert scrape.value(f"{LATENCY}_bucket", le="0.025") == 0
    assert scrape.value(f"{LATENCY}_sum") >= 0.06

    now = Scrape.parse(_render(metrics))  # what the health answer below sees (it is timed after it answers)
    body = await (await client.get("/api/health")).json()
    assert body["queue_depth"] == 3
    assert (body["container"], body["compose_service"]) == ("agentwatch-agent-1", "agent")
    # the probe path, reading this health body, gets the very buckets /metrics shows
    latency, problems = Fields(ProbeFields()).request_duration(body, BOUNDS)
    assert not problems and latency is not None
    assert dict(latency.buckets) == {lbl["le"]: v for lbl, v in now.series(f"{LATENCY}_bucket")}
    assert latency.count == now.value(f"{LATENCY}_count") and latency.sum == now.value(f"{LATENCY}_sum")


async def test_no_queue_no_series_and_unknown_place_is_empty() -> None:
    metrics = AgentMetrics(server=SERVER)
    scrape = Scrape.parse(_render(metrics))
    assert not scrape.series("agentwatch_app_queue_depth")
    assert scrape.value("agentwatch_app_info", container="", compose_service="") == 1
    body = await metrics.evaluate_health({}, lag_threshold=1.0, check_timeout=1.0)
    assert "queue_depth" not in body and "container" not in body
    assert body["request_duration_seconds"]["count"] == 0


async def test_asgi_requests_are_timed() -> None:
    metrics = AgentMetrics(server=SERVER)

    async def app(scope, receive, send):
        if scope["path"] == "/raise":
            raise RuntimeError("bug")
        await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    wrapped = metrics.asgi(app)
    for path in ("/", "/", "/raise"):
        try:
            await wrapped({"type": "http", "path": path}, receive, send)
        except RuntimeError:
            pass
    scrape = Scrape.parse(_render(metrics))
    assert scrape.value(f"{LATENCY}_count") == 3 and scrape.value(f"{LATENCY}_sum") >= 0.02
    assert (metrics.requests, metrics.errors) == (3, 1)


def test_count_request_keeps_its_old_signature() -> None:
    metrics = AgentMetrics(server=SERVER)
    metrics.count_request(200)  # no duration: counted, not timed
    metrics.count_request(500, 0.2)
    scrape = Scrape.parse(_render(metrics))
    assert (metrics.requests, metrics.errors) == (2, 1)
    assert scrape.value(f"{LATENCY}_count") == 1 and scrape.value(f"{LATENCY}_bucket", le="0.25") == 1

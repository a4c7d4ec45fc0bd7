"""The exporter's aiohttp app: thin handlers over the collection loop's snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from agentwatch import __version__, exposition
from agentwatch.collectors import build_collectors
from agentwatch.collectors.base import Collector
from agentwatch.collectors.insights import InsightsCollector
from agentwatch.config import ExporterConfig
from agentwatch.insights import api as insights_api
from agentwatch.insights.service import InsightService
from agentwatch.snapshot import CollectionLoop
from agentwatch.views import page as fleet_page

log = logging.getLogger("agentwatch.exporter")

LOOP_KEY = web.AppKey("loop", CollectionLoop)


async def metrics(request: web.Request) -> web.StreamResponse:
    loop = request.app[LOOP_KEY]
    snap = loop.snapshot
    if snap is None:
        return web.Response(status=503, text="no collection has finished yet\n")
    openmetrics = exposition.wants_openmetrics(request.headers.get("Accept", ""))
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    loop.formats.asked(openmetrics)
    headers = {"Content-Type": exposition.content_type(openmetrics), "Vary": "Accept, Accept-Encoding"}
    body = snap.ready(openmetrics)
    if body is None:  # a format nobody asked for lately: rendered now, off the loop, then kept
        body = await asyncio.to_thread(snap.gzipped, openmetrics)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)
    return await _unzipped(request, body, headers)


async def _unzipped(request: web.Request, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
    """A scrape without gzip (curl): the kept body unzipped as it is sent, a piece at a time (off the
    loop), so the whole text (0.9 MB at 100 containers) never sits in memory (issue 14)."""
    response = web.StreamResponse(headers=headers)
    response.content_length = exposition.gunzipped_size(body)
    await response.prepare(request)
    if request.method != "HEAD":
        pieces = exposition.gunzip_pieces(body)
        while (piece := await asyncio.to_thread(next, pieces, b"")):
            await response.write(piece)
    await response.write_eof()
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    if request.app[LOOP_KEY].ready.is_set():
        return web.Response(text="ready\n")
    return web.Response(status=503, text="waiting for the first collection\n")


async def index(request: web.Request) -> web.Response:
    loop = request.app[LOOP_KEY]
    names = ", ".join(html.escape(c.name) for c in loop.collectors) or "none"
    body = (
        "<!doctype html><html><head><title>agentwatch exporter</title></head><body>"
        f"<h1>agentwatch exporter {html.escape(__version__)}</h1>"
        f"<p>Collectors: {names}. Interval: {loop.interval:g}s. Cycles so far: {loop.cycles}.</p>"
        '<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>'
        '<li><a href="readyz">/readyz</a></li><li><a href="fleet">/fleet</a></li></ul></body></html>'
    )
    return web.Response(text=body, content_type="text/html")


def insight_service(app: web.Application) -> InsightService | None:
    """The insights collector's service, when the exporter runs one (and it has started)."""
    return next((c.service for c in app[LOOP_KEY].collectors if isinstance(c, InsightsCollector)), None)


async def api_crashes(request: web.Request) -> web.Response:
    status, body = await asyncio.to_thread(insights_api.crashes_payload, insight_service(request.app), request.query)
    return web.json_response(body, status=status)


async def api_health(request: web.Request) -> web.Response:
    status, body = insights_api.health_payload(insight_service(request.app), request.query)
    return web.json_response(body, status=status)


async def fleet(request: web.Request) -> web.Response:
    """The fleet page: the two insight answers rendered as HTML (agentwatch.views.page)."""
    service = insight_service(request.app)
    levels = service.settings.monitor.thresholds if service else None
    marks = (levels.warning, levels.critical) if levels else None
    crashes = await asyncio.to_thread(insights_api.crashes_payload, service, fleet_page.QUERY)
    health = insights_api.health_payload(service, {})
    status, text = fleet_page.render(health, crashes, request.app[LOOP_KEY].interval, marks)
    return web.Response(status=status, text=text, content_type="text/html", headers=fleet_page.HEADERS)


def create_app(config: ExporterConfig, collectors: Sequence[Collector] | None = None) -> web.Application:
    """Build the app; ``collectors`` overrides the ones the config asks for (tests use this)."""
    app = web.Application()
    chosen = list(collectors) if collectors is not None else build_collectors(config)
    app[LOOP_KEY] = CollectionLoop(chosen, config.interval_seconds)

    async def collection(app: web.Application) -> AsyncIterator[None]:
        loop = app[LOOP_KEY]
        for collector in loop.collectors:
            await collector.start()
        task = asyncio.create_task(loop.run(), name="agentwatch-collection")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for collector in loop.collectors:
            try:
                await collector.stop()
            except Exception:
                log.exception("collector %s failed to stop cleanly", collector.name)

    app.cleanup_ctx.append(collection)
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/crashes", api_crashes)
    app.router.add_get("/api/health", api_health)
    app.router.add_get("/fleet", fleet)
    return app

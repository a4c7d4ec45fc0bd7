"""Run a ProbeCollector in the test's event loop and read its families as a parsed exposition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from prometheus_client.exposition import generate_latest

from agentwatch.collectors.probes import ProbeCollector
from agentwatch.config import ExporterConfig
from agentwatch.local.scrape import Scrape


class _Families:
    def __init__(self, families: list) -> None:
        self._families = families

    def collect(self):
        return iter(self._families)


def config(*targets: dict[str, Any]) -> ExporterConfig:
    return ExporterConfig.model_validate({"docker": {"enabled": False}, "processes": {"enabled": False},
                                          "probes": list(targets)})


@asynccontextmanager
async def running_collector(*targets: dict[str, Any]) -> AsyncIterator[ProbeCollector]:
    collector = ProbeCollector(config(*targets))
    await collector.start()
    try:
        yield collector
    finally:
        await collector.stop()


async def scrape(collector: ProbeCollector) -> Scrape:
    return Scrape.parse(generate_latest(_Families(await collector.collect())).decode())


async def wait_scrape(collector: ProbeCollector, predicate: Callable[[Scrape], Any], timeout: float = 15.0,
                      what: str = "condition") -> Scrape:
    """Collect every 0.1 s until ``predicate`` holds; bounded in time."""
    deadline = time.monotonic() + timeout
    last = await scrape(collector)
    while time.monotonic() < deadline:
        try:
            if predicate(last):
                return last
        except (TypeError, AssertionError):
            pass
        await asyncio.sleep(0.1)
        last = await scrape(collector)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last scrape:\n"
                         + "\n".join(f"{n}{lbl} {v}" for n, lbl, v in last.samples if "bucket" not in n))


@asynccontextmanager
async def stand_in(routes: dict[str, Callable[[web.Request], Any]]) -> AsyncIterator[str]:
    """A small aiohttp server on a loopback port answering GET ``routes``; yields its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def only(**paths: str | None) -> dict[str, str | None]:
    """An endpoints mapping with every endpoint disabled but the given ones."""
    out: dict[str, str | None] = {ep: None for ep in ("health", "live", "ready", "running", "deploy_status",
                                                      "pools", "stats")}
    out.update(paths)
    return out

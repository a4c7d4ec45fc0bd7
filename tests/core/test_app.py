"""The exporter app serves the last snapshot; a failing or hanging collector never takes it down."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from prometheus_client.core import Metric

from agentwatch import catalog
from agentwatch.collectors.base import Collector
from agentwatch.config import ExporterConfig
from agentwatch.local.scrape import Scrape
from agentwatch.server import LOOP_KEY, create_app


class HostMemory(Collector):
    """A real, tiny collector: host memory from psutil, off the event loop."""

    name = "good"

    def __init__(self) -> None:
        super().__init__(timeout=2)
        self.calls = 0

    async def collect(self) -> list[Metric]:
        import psutil

        self.calls += 1
        mem = await self.run_sync(psutil.virtual_memory)
        fam = catalog.gauge("agentwatch_host_memory_total_bytes")
        fam.add_metric([], mem.total)
        return [fam]


class Hangs(Collector):
    name = "hangs"

    async def collect(self) -> list[Metric]:
        await asyncio.sleep(3600)
        return []


class Raises(Collector):
    name = "raises"

    async def collect(self) -> list[Metric]:
        raise RuntimeError("source returned garbage")


@pytest.fixture
async def client(aiohttp_client):
    config = ExporterConfig(interval_seconds=0.2)
    app = create_app(config, collectors=[HostMemory(), Hangs(timeout=0.3), Raises(timeout=1)])
    return await aiohttp_client(app)


async def scrape_after_cycles(client, cycles: int = 2) -> Scrape:
    for _ in range(100):
        resp = await client.get("/metrics")
        if resp.status == 200:
            scrape = Scrape.parse(await resp.text())
            errors = scrape.value("agentwatch_collector_errors_total", collector="hangs") or 0
            if errors >= cycles:
                return scrape
        await asyncio.sleep(0.1)
    raise AssertionError("collection cycles did not complete in 10 s")


async def test_failing_collectors_are_isolated_and_reported(client):
    scrape = await scrape_after_cycles(client)
    assert scrape.value("agentwatch_host_memory_total_bytes") > 0
    assert scrape.value("agentwatch_collector_success", collector="good") == 1
    assert scrape.value("agentwatch_collector_success", collector="hangs") == 0
    assert scrape.value("agentwatch_collector_success", collector="raises") == 0
    assert scrape.value("agentwatch_collector_errors_total", collector="raises") >= 2
    assert scrape.value("agentwatch_collector_errors_total", collector="good") == 0
    assert scrape.value("agentwatch_collector_last_success_timestamp_seconds", collector="good") > 0
    assert scrape.value("agentwatch_collector_last_success_timestamp_seconds", collector="hangs") == 0
    # the hanging collector's duration is observed at its timeout
    count = scrape.value("agentwatch_collector_duration_seconds_count", collector="hangs")
    total = scrape.value("agentwatch_collector_duration_seconds_sum", collector="hangs")
    assert count >= 2 and total >= 0.3 * count * 0.9
    assert scrape.value("agentwatch_build_info", version=__import__("agentwatch").__version__) == 1


async def test_metrics_is_served_from_the_snapshot_without_calling_collectors(client):
    await scrape_after_cycles(client)
    collectors = client.server.app[LOOP_KEY].collectors
    calls_before = collectors[0].calls
    cycles_before = client.server.app[LOOP_KEY].cycles
    for _ in range(20):
        assert (await client.get("/metrics")).status == 200
    # 20 scrapes may overlap at most a couple of background cycles, never one collection per scrape
    assert collectors[0].calls - calls_before <= client.server.app[LOOP_KEY].cycles - cycles_before + 1


async def test_openmetrics_when_asked(client):
    await scrape_after_cycles(client)
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    body = await resp.text()
    assert body.rstrip().endswith("# EOF")
    assert "agentwatch_collector_errors_total{collector=\"raises\"}" in body
    plain = await client.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in await plain.text()


async def test_gzip_when_accepted(client):
    await scrape_after_cycles(client)
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert b"agentwatch_build_info" in gzip.decompress(await resp.read())


async def test_health_ready_and_index(client):
    assert (await client.get("/healthz")).status == 200
    await scrape_after_cycles(client, cycles=1)
    assert (await client.get("/readyz")).status == 200
    index = await (await client.get("/")).text()
    assert "/metrics" in index and "hangs" in index


async def test_not_ready_before_first_collection(aiohttp_client):
    class Slow(Collector):
        name = "slow"

        async def collect(self) -> list[Metric]:
            await asyncio.sleep(5)
            return []

    client = await aiohttp_client(create_app(ExporterConfig(interval_seconds=1), collectors=[Slow(timeout=10)]))
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/metrics")).status == 503
    assert (await client.get("/healthz")).status == 200


class HangsButKnows(Collector):
    """Times out every cycle, but knows something without asking its source (an engine it saw down)."""

    name = "knows"

    async def collect(self) -> list[Metric]:
        await asyncio.sleep(3600)
        return []

    def known(self) -> list[Metric]:
        fam = catalog.gauge("agentwatch_docker_up")
        fam.add_metric([], 0)
        return [fam]


class KnowsNothingUsable(Hangs):
    name = "broken_known"

    def known(self) -> list[Metric]:
        raise RuntimeError("bug in known()")


async def test_a_collector_that_times_out_still_serves_what_it_knows(aiohttp_client):
    app = create_app(ExporterConfig(interval_seconds=0.2),
                     collectors=[HangsButKnows(timeout=0.2), KnowsNothingUsable(timeout=0.2), HostMemory()])
    client = await aiohttp_client(app)
    for _ in range(100):
        resp = await client.get("/metrics")
        if resp.status == 200:
            scrape = Scrape.parse(await resp.text())
            if (scrape.value("agentwatch_collector_errors_total", collector="knows") or 0) >= 2:
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("two timed-out cycles did not complete in 10 s")
    assert scrape.value("agentwatch_collector_success", collector="knows") == 0, "a timeout is still a failure"
    assert scrape.value("agentwatch_docker_up") == 0, "but what it knows is served"
    assert scrape.value("agentwatch_collector_success", collector="broken_known") == 0
    assert scrape.value("agentwatch_host_memory_total_bytes") > 0, "a bug in known() costs only its collector"

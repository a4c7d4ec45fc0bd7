"""What Prometheus sees stays put: the exposition's shape matches the fixture recorded before the move
to prometheus_client metric objects, and every /metrics answers with the same content types."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from agentwatch import exposition
from agentwatch.config import ExporterConfig
from agentwatch.instrument import AgentMetrics
from agentwatch.local.scrape import Scrape
from agentwatch.scaler.app import create_app as create_scaler
from agentwatch.server import create_app as create_exporter
from tests.core.exposition_shape import FIXTURE, compute
from tests.scaler.helpers import TOKEN, config

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ASK_OPENMETRICS = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}


def test_names_types_help_labels_and_buckets_are_unchanged() -> None:
    expected = json.loads(FIXTURE.read_text())
    actual = compute()
    for part, families in expected.items():
        got = actual[part]
        assert sorted(got) == sorted(families), (part, set(got) ^ set(families))
        for name, fam in families.items():
            assert got[name] == fam, (part, name)
    assert actual.keys() == expected.keys()


async def _headers_and_bodies(client, path: str = "/metrics") -> tuple[str, str, str, str]:
    plain = await client.get(path)
    om = await client.get(path, headers=ASK_OPENMETRICS)
    assert plain.status == om.status == 200
    return plain.headers["Content-Type"], await plain.text(), om.headers["Content-Type"], await om.text()


def _check(content_types: tuple[str, str, str, str]) -> None:
    text_type, text, om_type, om = content_types
    assert (text_type, om_type) == (TEXT, OPENMETRICS)
    assert Scrape.parse(text).samples
    assert list(parse_openmetrics(om))  # the strict parser reads it to the end (# EOF included)


async def test_exporter_serves_text_0_0_4_and_openmetrics_when_asked(aiohttp_client) -> None:
    client = await aiohttp_client(create_exporter(ExporterConfig(interval_seconds=0.2), collectors=[]))
    for _ in range(100):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    _check(await _headers_and_bodies(client))


async def test_scaler_serves_the_same_content_types(aiohttp_client, tmp_path) -> None:
    client = await aiohttp_client(create_scaler(config(tmp_path), token=TOKEN))
    _check(await _headers_and_bodies(client))


async def test_instrumented_server_serves_the_same_content_types(aiohttp_client) -> None:
    metrics = AgentMetrics(server="shape")
    with metrics.agent_run("haiku"):
        pass
    app = web.Application(middlewares=[metrics.aiohttp_middleware])
    app.router.add_get("/metrics", metrics.metrics_handler)
    client = await aiohttp_client(app)
    _check(await _headers_and_bodies(client))


def test_accept_negotiation() -> None:
    assert exposition.wants_openmetrics("application/openmetrics-text; version=1.0.0")
    assert exposition.wants_openmetrics("text/plain;q=0.5, application/openmetrics-text")
    assert not exposition.wants_openmetrics("")
    assert not exposition.wants_openmetrics("text/plain; version=0.0.4, */*")
    assert (exposition.TEXT_CONTENT_TYPE, exposition.OPENMETRICS_CONTENT_TYPE) == (TEXT, OPENMETRICS)

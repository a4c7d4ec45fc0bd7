"""agentwatch_app_info, the queue depth and the request-latency histogram on the probe path: field
shapes, a stand-in with its own buckets, and the real demo server with a queue."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp import web

from agentwatch import catalog
from agentwatch.collectors.probe_fields import Fields, rebucket
from agentwatch.config import ProbeFields
from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess
from agentwatch.local.scrape import Scrape
from tests.probes.helpers import only, running_collector, stand_in, wait_scrape

F = Fields(ProbeFields())
LATENCY = catalog.spec("agentwatch_app_request_duration_seconds")
BOUNDS = LATENCY.buckets or ()
#: The le values every path exposes: the catalog's bounds as prometheus_client writes them, then +Inf.
LE = [*(repr(float(b)) for b in BOUNDS), "+Inf"]


def test_a_histogram_on_the_catalog_bounds_is_copied_exactly() -> None:
    body = {"request_duration_seconds": {"buckets": {le: i for i, le in enumerate(LE)}, "sum": 9.5,
                                         "count": len(LE) - 1}}
    latency, problems = F.request_duration(body, BOUNDS)
    assert not problems and latency is not None
    assert list(latency.buckets) == [(le, float(i)) for i, le in enumerate(LE)]
    assert (latency.sum, latency.count) == (9.5, len(LE) - 1)


def test_other_bounds_map_onto_the_catalog_as_a_lower_bound() -> None:
    # a server with coarse buckets of its own: 3 requests <= 0.01 s, 7 <= 0.2 s, 9 <= 2 s, 10 in all
    points = [(0.01, 3.0), (0.2, 7.0), (2.0, 9.0), (float("inf"), 10.0)]
    out = dict(rebucket(points, BOUNDS, 10.0))
    assert out["0.005"] == 0 and out["0.01"] == 3  # below the first known bound: nothing is claimed
    assert out["0.1"] == 3 and out["0.25"] == 7  # 0.1 is not a server bound: the count at 0.01
    assert out["1.0"] == 7 and out["2.5"] == 9 and out["30.0"] == 9 and out["+Inf"] == 10
    counts = list(out.values())
    assert counts == sorted(counts), "cumulative"


@pytest.mark.parametrize("shape", [
    {"buckets": [["0.1", 1], ["+Inf", 2]], "sum": 0.3, "count": 2},
    {"buckets": [{"le": 0.1, "count": 1}, {"le": "inf", "count": 2}], "sum": 0.3},  # count from +Inf
    {"buckets": {"0.1": 1, "+Inf": 2}, "sum": 0.3, "count": 2},
])
def test_histogram_shapes(shape: dict) -> None:
    latency, problems = F.request_duration({"requestDurationSeconds": shape}, BOUNDS)
    assert not problems and latency is not None
    assert dict(latency.buckets)["0.1"] == 1 and latency.count == 2 and latency.sum == 0.3


@pytest.mark.parametrize("shape", [
    "fast", {"buckets": {"0.1": 5, "+Inf": 2}, "sum": 1, "count": 2},  # not cumulative
    {"buckets": {"0.1": -1}, "sum": 1, "count": 2}, {"buckets": {"x": 1}, "sum": 1, "count": 1},
    {"buckets": {"0.1": 1}, "count": 1}, {"buckets": {"0.1": 1}, "sum": 1},  # no sum; no count nor +Inf
    {"buckets": {"0.1": 3}, "sum": 1, "count": 2},  # a bucket above the count
])
def test_bad_histograms_are_a_non_fatal_bad_type(shape: object) -> None:
    latency, problems = F.request_duration({"request_duration_seconds": shape}, BOUNDS)
    assert latency is None
    assert [(p.reason, p.fatal) for p in problems] == [("bad_type", False)]


def test_queue_depth_is_a_number_or_a_list_and_counts_as_deploy_status() -> None:
    assert F.queue_depth({"queued": 3}) == (3.0, [])
    assert F.queue_depth({"queue": {"depth": 0}}) == (0.0, [])
    assert F.queue_depth({"queued": [{"id": "a"}, {"id": "b"}]}) == (2.0, [])
    assert F.queue_depth({}) == (None, [])
    depth, problems = F.queue_depth({"queue_depth": "many"})
    assert depth is None and [(p.reason, p.fatal) for p in problems] == [("bad_type", False)]
    deploy, problems = F.deploy({"queued": 4})  # a queue alone is a usable deploy status
    assert deploy.queue_depth == 4 and not problems


def test_health_body_says_where_the_server_runs() -> None:
    health, _, _ = F.health({"status": "ok", "container": "agentwatch-agent-1", "compose_service": "agent"}, 5)
    assert (health.container, health.compose_service) == ("agentwatch-agent-1", "agent")


def _json(body: object):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)
    return handler


async def test_stand_in_with_its_own_buckets_queue_and_info() -> None:
    routes = {"/health": _json({"status": "ok", "container": "reported-container", "compose_service": "reported"}),
              "/deploy": _json({"maxConcurrency": 4, "queued": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}),
              "/stats": _json({"requests_total": 10, "request_duration_seconds": {
                  "buckets": {"0.01": 3, "0.2": 7, "2": 9, "+Inf": 10}, "sum": 4.2, "count": 10}})}
    async with stand_in(routes) as url:
        endpoints = only(health="/health", deploy_status="/deploy", stats="/stats")
        reported = {"name": "reported", "url": url, "interval_seconds": 0.1, "endpoints": endpoints}
        configured = {**reported, "name": "configured", "container": "agentwatch-agent-7"}
        async with running_collector(reported, configured) as c:
            s = await wait_scrape(c, lambda s: s.value("agentwatch_app_queue_depth", server="configured") == 3
                                  and s.value("agentwatch_app_request_duration_seconds_count", server="reported")
                                  == 10, what="queue and latency of both")
    for server in ("reported", "configured"):
        for endpoint in ("health", "deploy_status", "stats"):
            assert s.value("agentwatch_probe_success", server=server, endpoint=endpoint) == 1
        assert [lbl["le"] for lbl, _ in s.series("agentwatch_app_request_duration_seconds_bucket",
                                                 server=server)] == LE
        assert s.value("agentwatch_app_request_duration_seconds_bucket", server=server, le="0.25") == 7
        assert s.value("agentwatch_app_request_duration_seconds_sum", server=server) == 4.2
    # the config's keys win over what the server reports; what it does not set, the server's word fills
    assert s.value("agentwatch_app_info", server="reported", container="reported-container",
                   compose_service="reported") == 1
    assert s.value("agentwatch_app_info", server="configured", container="agentwatch-agent-7",
                   compose_service="reported") == 1
    assert len(s.series("agentwatch_app_info")) == 2


async def test_info_exists_before_any_answer_and_a_dead_server_keeps_it() -> None:
    target = {"name": "gone", "url": "http://127.0.0.1:9", "interval_seconds": 0.1, "container": "c-1",
              "compose_service": "agent"}
    async with running_collector(target) as c:
        s = await wait_scrape(c, lambda s: s.value("agentwatch_probe_failures_total", endpoint="health",
                                                   reason="connect") >= 1)
    assert s.value("agentwatch_app_info", server="gone", container="c-1", compose_service="agent") == 1
    assert not s.series("agentwatch_app_queue_depth") and not s.series("agentwatch_app_request_duration_seconds_count")


# -- the real demo server, with a queue ----------------------------------------------------------

@pytest.fixture(scope="module")
def demo():
    os.environ[KEY_ENV] = KEY  # the collector reads the key from the same variable
    try:
        with DemoProcess("--max-concurrency", "1", "--max-queue", "2", "--compose-service", "agent") as server:
            yield server
    finally:
        os.environ.pop(KEY_ENV, None)


async def test_demo_queue_latency_and_info_through_the_probe(demo: DemoProcess) -> None:
    target = {"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": 0.2,
              "container": "agentwatch-agent-1"}
    async with running_collector(target) as c:
        await wait_scrape(c, lambda s: s.value("agentwatch_app_queue_depth") == 0, what="an empty queue")
        running = await asyncio.to_thread(demo.start_agent, "haiku", 60)
        queued = [await asyncio.to_thread(demo.start_agent, "haiku", 0.1) for _ in range(2)]
        assert [a["status"] for a in queued] == ["queued", "queued"]
        assert (await asyncio.to_thread(demo.call, "POST", "/api/agents", {"seconds": 1}))[0] == 503  # queue full
        s = await wait_scrape(c, lambda s: s.value("agentwatch_app_queue_depth") == 2, what="two queued")
        assert s.value("agentwatch_agents_running", model="haiku") == 1, "queued agents are not running"
        # the one slot frees: the queue drains in order, and both queued agents run and finish
        assert (await asyncio.to_thread(demo.call, "DELETE", f"/api/agents/{running['id']}"))[0] == 202
        s = await wait_scrape(c, lambda s: s.value("agentwatch_app_queue_depth") == 0 and s.value(
            "agentwatch_agent_runs_total", model="haiku", outcome="success") == 2, what="the queue drained")
        _, _, metrics_text = await asyncio.to_thread(demo.call, "GET", "/metrics", key=None)
    for endpoint in ("health", "running", "deploy_status"):
        assert s.value("agentwatch_probe_failures_total", endpoint=endpoint, reason="missing_field") == 0
        assert s.value("agentwatch_probe_failures_total", endpoint=endpoint, reason="bad_type") == 0
    assert s.value("agentwatch_app_info", container="agentwatch-agent-1", compose_service="agent") == 1
    # the same histogram, with the same buckets, on both paths: probed, and the server's own /metrics
    own = Scrape.parse(metrics_text)
    probed_le = [lbl["le"] for lbl, _ in s.series("agentwatch_app_request_duration_seconds_bucket")]
    own_le = [lbl["le"] for lbl, _ in own.series("agentwatch_app_request_duration_seconds_bucket")]
    assert probed_le == own_le == LE
    assert 0 < s.value("agentwatch_app_request_duration_seconds_count") <= own.value(
        "agentwatch_app_request_duration_seconds_count")
    assert own.value("agentwatch_app_info", container="", compose_service="agent") == 1
    assert own.value("agentwatch_app_queue_depth") == 0

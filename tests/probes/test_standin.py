"""The probe collector against small aiohttp stand-ins on loopback, for answers a real server won't give
on demand: bad bodies, huge bodies, slow answers, errors, many models, and scripted agent lists."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp import web

from agentwatch.local.process import free_port
from tests.probes.helpers import only, running_collector, scrape, stand_in, wait_scrape


def _json(body: object, status: int = 200):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)
    return handler


def _text(body: str, status: int = 200):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, status=status, content_type="application/json")
    return handler


async def _endless(request: web.Request) -> web.StreamResponse:
    """A chunked body with no end in sight and no Content-Length."""
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(10_000):
        await resp.write(b"[" * 65536)
        await asyncio.sleep(0)
    return resp


async def test_bad_answers_are_counted_by_reason_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentwatch.probes")
    routes = {"/health": _text("<html>oops</html>"), "/running": _json({"agents": "lots"}),
              "/deploy": _json({"maxConcurrency": "ten", "draining": False}), "/pools": _endless,
              "/stats": _text("x" * 5000), "/live": _text("", status=500), "/ready": _json({}, status=401)}
    async with stand_in(routes) as url:
        target = {"name": "bad", "url": url, "interval_seconds": 0.1, "timeout_seconds": 5, "max_body_bytes": 4096,
                  "endpoints": {"health": "/health", "running": "/running", "deploy_status": "/deploy",
                                "pools": "/pools", "stats": "/stats", "live": "/live", "ready": "/ready"}}
        async with running_collector(target) as collector:
            s = await wait_scrape(collector, lambda s: s.value(
                "agentwatch_probe_duration_seconds_count", server="bad", endpoint="pools") >= 3)
    fails = {(lbl["endpoint"], lbl["reason"]) for lbl, v in s.series("agentwatch_probe_failures_total") if v > 0}
    assert fails == {("health", "not_json"), ("running", "bad_type"), ("deploy_status", "bad_type"),
                     ("pools", "too_large"), ("stats", "too_large"), ("live", "http_status"), ("ready", "auth")}
    for endpoint in ("health", "running", "deploy_status", "pools", "stats", "live", "ready"):
        assert s.value("agentwatch_probe_success", server="bad", endpoint=endpoint) == 0, endpoint
    assert s.value("agentwatch_app_live", server="bad") == 0
    assert s.value("agentwatch_app_ready", server="bad") == 0
    assert s.value("agentwatch_probe_http_responses_total", server="bad", endpoint="live", code="500") >= 3
    assert not s.series("agentwatch_agents_running") and not s.series("agentwatch_app_max_concurrency")
    # the usable field of the deploy body is still used; the bad one is left out
    assert s.value("agentwatch_app_draining", server="bad") == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    keys = [(r.endpoint, r.reason) for r in warnings]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 7, keys  # once per condition, not per probe


async def test_timeout_counts_as_unresponsive_even_if_the_answer_would_be_200() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({"status": "ok"})

    async with stand_in({"/h": slow}) as url:
        target = {"name": "slow", "url": url, "interval_seconds": 0.1, "timeout_seconds": 0.3,
                  "endpoints": only(health="/h")}
        async with running_collector(target) as collector:
            s = await wait_scrape(collector, lambda s: s.value(
                "agentwatch_probe_failures_total", server="slow", endpoint="health", reason="timeout") >= 2)
    count = s.value("agentwatch_probe_duration_seconds_count", server="slow", endpoint="health")
    assert s.value("agentwatch_probe_success", server="slow", endpoint="health") == 0
    assert s.value("agentwatch_probe_duration_seconds_sum", server="slow", endpoint="health") == pytest.approx(
        0.3 * count)
    assert not s.series("agentwatch_probe_http_responses_total", server="slow")


async def test_one_slow_server_delays_neither_another_nor_collection() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"status": "ok"})

    async with stand_in({"/hang": hang, "/fast": _json({"status": "ok"})}) as url:
        slow = {"name": "slow", "url": url, "interval_seconds": 0.05, "timeout_seconds": 30,
                "endpoints": only(health="/hang")}
        fast = {"name": "fast", "url": url, "interval_seconds": 0.05, "endpoints": only(health="/fast")}
        async with running_collector(slow, fast) as collector:
            s = await wait_scrape(collector, lambda s: s.value(
                "agentwatch_probe_duration_seconds_count", server="fast", endpoint="health") >= 5)
            # collect() answered while the slow server's first probe is still in flight
            assert s.value("agentwatch_probe_duration_seconds_count", server="slow", endpoint="health") == 0
            assert s.value("agentwatch_probe_success", server="fast", endpoint="health") == 1
            release.set()
            await wait_scrape(collector, lambda s: s.value(
                "agentwatch_probe_success", server="slow", endpoint="health") == 1)


async def test_connection_refused_and_health_503_body() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    body = {"status": "unhealthy", "checks": {"database": {"status": "down", "latency_ms": 1500},
                                              "redis": {"status": "ok", "latency_ms": 2}}}
    async with stand_in({"/h": _json(body, status=503)}) as url:
        targets = [{"name": "gone", "url": closed, "interval_seconds": 0.1, "endpoints": only(health="/h")},
                   {"name": "sick", "url": url, "interval_seconds": 0.1, "endpoints": only(health="/h")}]
        async with running_collector(*targets) as collector:
            s = await wait_scrape(collector, lambda s: s.value(
                "agentwatch_probe_failures_total", server="gone", endpoint="health", reason="connect") >= 1
                and s.value("agentwatch_probe_failures_total", server="sick", endpoint="health",
                            reason="http_status") >= 1)
    assert s.value("agentwatch_probe_success", server="gone", endpoint="health") == 0
    assert not s.series("agentwatch_app_health_status", server="gone")  # never seen: no made-up status
    assert s.value("agentwatch_probe_success", server="sick", endpoint="health") == 0
    assert s.value("agentwatch_app_health_status", server="sick", check="overall", status="unhealthy") == 1
    assert s.value("agentwatch_app_health_status", server="sick", check="database", status="unhealthy") == 1
    assert s.value("agentwatch_app_health_status", server="sick", check="redis", status="healthy") == 1
    assert s.value("agentwatch_app_dependency_latency_seconds", server="sick", check="database") == 1.5


async def test_model_and_pool_caps_bound_cardinality() -> None:
    agents = {"agents": [{"id": f"a{i}", "model": f"model-{i}", "started_at": time.time() - 100 - i}
                         for i in range(30)]}
    pools = {"pools": {f"p{i}": {"max_size": 5, "size": 1, "in_use": 1} for i in range(10)}}
    async with stand_in({"/r": _json(agents), "/p": _json(pools)}) as url:
        target = {"name": "wide", "url": url, "interval_seconds": 0.1, "max_models": 3, "max_pools": 4,
                  "endpoints": only(running="/r", pools="/p")}
        async with running_collector(target) as collector:
            s = await wait_scrape(collector, lambda s: s.series("agentwatch_agents_running", server="wide")
                                  and s.series("agentwatch_pool_size", server="wide"))
    running = {lbl["model"]: v for lbl, v in s.series("agentwatch_agents_running", server="wide")}
    assert running == {"model-0": 1, "model-1": 1, "model-2": 1, "_other": 27}
    assert len(s.series("agentwatch_pool_size", server="wide")) == 4
    assert s.value("agentwatch_probe_series_dropped_total", server="wide", kind="model") >= 27
    assert s.value("agentwatch_probe_series_dropped_total", server="wide", kind="pool") >= 6
    assert s.value("agentwatch_agent_oldest_running_seconds", server="wide") >= 129
    assert s.value("agentwatch_pool_idle", server="wide", pool="p0") == 0  # derived: size - in_use


async def test_runs_are_timed_and_counted_from_running_and_recent_lists() -> None:
    t0 = time.time()
    script = [
        # first answer: one run already finished before the exporter looked (history, not counted)
        {"agents": [{"id": "a", "model": "opus", "started_at": t0 - 50},
                    {"id": "b", "model": "haiku", "started_at": t0 - 20}],
         "recent": [{"id": "old", "model": "opus", "outcome": "completed"}]},
        # a ended (failed, the server says when); c started and ended between two probes
        {"agents": [{"id": "b", "model": "haiku", "started_at": t0 - 20}],
         "recent": [{"id": "a", "model": "opus", "started_at": t0 - 50, "finished_at": t0 - 10, "status": "failed"},
                    {"id": "c", "model": "haiku", "started_at": t0 - 30, "finished_at": t0 - 25,
                     "status": "completed"},
                    {"id": "old", "model": "opus", "outcome": "completed"}]},
        # b left the list without the server saying how
        {"agents": [], "recent": []},
    ]
    step = {"i": 0}

    async def running(request: web.Request) -> web.Response:
        return web.json_response(script[min(step["i"], len(script) - 1)])

    async with stand_in({"/r": running}) as url:
        target = {"name": "runs", "url": url, "interval_seconds": 0.05, "endpoints": only(running="/r")}
        async with running_collector(target) as collector:
            for i in range(len(script)):
                step["i"] = i
                probes = collector.servers[0].probes
                await wait_scrape(collector, lambda s, p=probes: collector.servers[0].probes >= p + 2)
            s = await scrape(collector)
    runs = {(lbl["model"], lbl["outcome"]): v for lbl, v in s.series("agentwatch_agent_runs_total") if v}
    assert runs == {("opus", "error"): 1, ("haiku", "success"): 1, ("haiku", "unknown"): 1}
    assert s.value("agentwatch_agent_run_duration_seconds_count", model="opus") == 1
    assert s.value("agentwatch_agent_run_duration_seconds_sum", model="opus") == pytest.approx(40, abs=0.01)
    assert s.value("agentwatch_agent_run_duration_seconds_count", model="haiku") == 2
    # c ran 5 s, b ran from t0-20 until it left the list (a little after t0)
    assert s.value("agentwatch_agent_run_duration_seconds_bucket", model="haiku", le="10.0") == 1
    assert s.value("agentwatch_agent_run_duration_seconds_bucket", model="haiku", le="30.0") == 2
    assert s.value("agentwatch_agents_running", model="opus") == 0
    assert s.value("agentwatch_agent_oldest_running_seconds", server="runs") == 0

"""The probe collector against the real demo agent server (a subprocess with child-process agents)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from agentwatch import catalog
from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess
from agentwatch.log import redact
from tests.probes.helpers import running_collector, wait_scrape


@pytest.fixture(scope="module")
def demo():
    os.environ[KEY_ENV] = KEY  # the collector reads the key from the same variable
    try:
        with DemoProcess("--max-concurrency", "4", "--pool-size", "2", "--enable-test-endpoints",
                         "--forget-crashed") as server:
            yield server
    finally:
        os.environ.pop(KEY_ENV, None)


def _target(demo: DemoProcess, **extra: object) -> dict[str, object]:
    return {"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": 0.2,
            "timeout_seconds": 2, **extra}


async def _idle(demo: DemoProcess) -> None:
    for _ in range(150):
        if not (await asyncio.to_thread(demo.running))["agents"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("demo agents did not finish")


async def test_running_agents_durations_health_and_deploy(demo: DemoProcess) -> None:
    await _idle(demo)
    async with running_collector(_target(demo)) as c:
        await wait_scrape(c, lambda s: s.value("agentwatch_probe_success", endpoint="running") == 1)
        await asyncio.to_thread(demo.start_agent, "haiku", 1.0)
        await asyncio.to_thread(demo.start_agent, "sonnet", 1.5)
        s = await wait_scrape(c, lambda s: s.value("agentwatch_agents_running", model="haiku") == 1
                              and s.value("agentwatch_agents_running", model="sonnet") == 1, what="both running")
        assert s.value("agentwatch_agents_stuck_running", model="haiku") == 0
        s = await wait_scrape(c, lambda s: s.value("agentwatch_agent_runs_total", model="haiku", outcome="success")
                              == 1 and s.value("agentwatch_agent_runs_total", model="sonnet", outcome="success") == 1,
                              what="both finished")
        pools = (await asyncio.to_thread(demo.call, "GET", "/api/pools"))[2]["pools"]["mcp"]
    for model, low in (("haiku", 1.0), ("sonnet", 1.5)):
        assert s.value("agentwatch_agent_run_duration_seconds_count", model=model) == 1
        assert low <= s.value("agentwatch_agent_run_duration_seconds_sum", model=model) < 10
        assert s.value("agentwatch_agent_run_duration_seconds_bucket", model=model, le="10.0") == 1
        assert s.value("agentwatch_agents_running", model=model) == 0
    assert s.value("agentwatch_agent_oldest_running_seconds") == 0
    for endpoint in ("health", "live", "ready", "running", "deploy_status", "pools"):
        assert s.value("agentwatch_probe_success", endpoint=endpoint) == 1, endpoint
        assert s.value("agentwatch_probe_http_responses_total", endpoint=endpoint, code="200") >= 1
    assert s.value("agentwatch_app_health_status", check="overall", status="healthy") == 1
    for check in ("memory", "mcp_pool", "workers", "event_loop"):
        assert sum(v for _, v in s.series("agentwatch_app_health_status", check=check)) == 1, check
        assert {lbl["status"] for lbl, _ in s.series("agentwatch_app_health_status", check=check)} == set(
            catalog.APP_HEALTH_STATES)
    assert s.value("agentwatch_app_dependency_latency_seconds", check="memory") >= 0
    assert s.value("agentwatch_app_event_loop_lag_seconds") < 1
    assert (s.value("agentwatch_app_live"), s.value("agentwatch_app_ready")) == (1, 1)
    assert (s.value("agentwatch_app_draining"), s.value("agentwatch_app_max_concurrency")) == (0, 4)
    assert s.value("agentwatch_app_requests_total") > 10
    assert s.value("agentwatch_pool_max_size", pool="mcp") == pools["max_size"] == 2
    assert s.value("agentwatch_pool_size", pool="mcp") == pools["size"]
    assert s.value("agentwatch_pool_evictions_total", pool="mcp") == pools["evictions"]


async def test_pool_exhaustion_shows_waiting_then_lru_eviction(demo: DemoProcess) -> None:
    await _idle(demo)
    async with running_collector(_target(demo)) as c:
        start = await wait_scrape(c, lambda s: s.value("agentwatch_pool_evictions_total", pool="mcp") is not None)
        evictions = start.value("agentwatch_pool_evictions_total", pool="mcp")
        for tool in ("github", "slack"):
            await asyncio.to_thread(demo.start_agent, "haiku", 2.0, tool=tool)
        await asyncio.to_thread(demo.start_agent, "opus", 0.5, tool="jira")  # pool of 2 is full: waits
        s = await wait_scrape(c, lambda s: s.value("agentwatch_pool_waiting", pool="mcp") == 1, what="a waiter")
        assert s.value("agentwatch_pool_in_use", pool="mcp") == 2
        assert s.value("agentwatch_app_health_status", check="mcp_pool", status="degraded") == 1
        s = await wait_scrape(c, lambda s: s.value("agentwatch_pool_waiting", pool="mcp") == 0
                              and s.value("agentwatch_pool_evictions_total", pool="mcp") > evictions
                              and s.value("agentwatch_agent_runs_total", model="opus", outcome="success") >= 1,
                              what="eviction and the waiter's run")
    assert s.value("agentwatch_pool_size", pool="mcp") <= 2


async def test_blocked_event_loop_is_seen_as_timeout(demo: DemoProcess) -> None:
    async with running_collector(_target(demo, timeout_seconds=0.5)) as c:
        await wait_scrape(c, lambda s: s.value("agentwatch_probe_success", endpoint="health") == 1)
        status, _, _ = await asyncio.to_thread(demo.call, "POST", "/api/test/block-event-loop", {"seconds": 2.5})
        assert status == 202
        s = await wait_scrape(c, lambda s: s.value("agentwatch_probe_failures_total", endpoint="health",
                                                   reason="timeout") >= 1, what="a health timeout")
        assert s.value("agentwatch_probe_success", endpoint="health") == 0
        # once the loop runs again the server itself reports the lag (and fails its health check)
        s = await wait_scrape(c, lambda s: s.value("agentwatch_app_event_loop_lag_seconds") >= 2
                              and s.value("agentwatch_app_live") == 1, what="lag reported after the block")
    assert s.value("agentwatch_app_health_status", check="event_loop", status="unhealthy") == 1
    assert s.value("agentwatch_app_health_status", check="overall", status="unhealthy") == 1


async def test_wrong_api_key_is_an_auth_failure_and_never_logged(demo: DemoProcess, caplog, monkeypatch) -> None:
    wrong = "wrong-key-5b1e0d7a"
    monkeypatch.setenv("AW_TEST_WRONG_KEY", wrong)
    caplog.set_level(logging.DEBUG)
    async with running_collector(_target(demo, api_key_env="AW_TEST_WRONG_KEY")) as c:
        s = await wait_scrape(c, lambda s: all(
            s.value("agentwatch_probe_failures_total", endpoint=ep, reason="auth") >= 2
            for ep in ("health", "running", "deploy_status", "pools", "ready")), what="auth failures")
    assert s.value("agentwatch_probe_http_responses_total", endpoint="health", code="401") >= 2
    assert s.value("agentwatch_probe_success", endpoint="running") == 0
    assert s.value("agentwatch_app_live") == 1  # /live needs no key
    assert not s.series("agentwatch_agents_running")
    assert "(auth)" in caplog.text
    assert wrong not in caplog.text and KEY not in caplog.text
    assert redact(f"key={wrong}") == "key=***"  # registered as a secret for every log formatter


async def test_agent_killed_but_still_listed_is_stuck_running(demo: DemoProcess) -> None:
    await _idle(demo)
    async with running_collector(_target(demo)) as c:
        agent = await asyncio.to_thread(demo.start_agent, "opus", 60)
        pid = await asyncio.to_thread(demo.wait_for_pid, agent["id"])
        await wait_scrape(c, lambda s: s.value("agentwatch_agents_running", model="opus") == 1)
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        s = await wait_scrape(c, lambda s: s.value("agentwatch_agents_stuck_running", model="opus") == 1,
                              what="stuck agent")
        assert s.value("agentwatch_agents_running", model="opus") == 1  # the server still lists it
        status, _, body = await asyncio.to_thread(demo.call, "DELETE", f"/api/agents/{agent['id']}")
        assert status == 200 and body["outcome"] == "lost"
        s = await wait_scrape(c, lambda s: s.value("agentwatch_agent_runs_total", model="opus", outcome="lost")
                              == 1, what="the lost run")
    assert s.value("agentwatch_agents_stuck_running", model="opus") == 0


async def test_api_key_from_a_file(demo: DemoProcess, tmp_path) -> None:
    key_file = tmp_path / "agent-key"
    key_file.write_text(KEY + "\n")
    target = {"name": "demo", "url": demo.url, "api_key_file": str(key_file), "interval_seconds": 0.2}
    async with running_collector(target) as c:
        s = await wait_scrape(c, lambda s: s.value("agentwatch_probe_success", endpoint="running") == 1)
    assert s.value("agentwatch_probe_failures_total", endpoint="running", reason="auth") == 0

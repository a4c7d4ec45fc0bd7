"""The real exporter process serving probe metrics, and the container stuck-running check on the
private Docker engine."""

from __future__ import annotations

import pytest
from aiohttp import web

from agentwatch import catalog
from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess, ExporterProcess
from agentwatch.local.process import wait_for
from tests.probes.helpers import only, running_collector, stand_in, wait_scrape


def test_exporter_serves_probe_metrics_over_http() -> None:
    with DemoProcess("--max-concurrency", "3") as demo:
        demo.start_agent("sonnet", 30)
        config = {"docker": {"enabled": False}, "processes": {"enabled": False},
                  "probes": [{"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": 0.5},
                             {"name": "locked", "url": demo.url, "api_key_env": "AW_TEST_BAD_KEY",
                              "interval_seconds": 0.5}]}
        bad = "bad-key-for-exporter-91c"
        with ExporterProcess(config, env={KEY_ENV: KEY, "AW_TEST_BAD_KEY": bad}) as exporter:
            s = wait_for(lambda: (x := exporter.scrape()).value("agentwatch_agents_running", server="demo",
                                                                 model="sonnet") == 1
                         and (x.value("agentwatch_probe_failures_total", server="locked", endpoint="running",
                                      reason="auth") or 0) >= 1 and x, 20)
            log = exporter.log()
    assert s.value("agentwatch_collector_success", collector="probes") == 1
    assert s.value("agentwatch_probe_success", server="demo", endpoint="health") == 1
    assert s.value("agentwatch_app_max_concurrency", server="demo") == 3
    assert s.value("agentwatch_pool_max_size", server="demo", pool="mcp") == 20
    assert s.value("agentwatch_probe_success", server="locked", endpoint="running") == 0
    for spec in catalog.PROBES:
        if spec.name != "agentwatch_pool_wait_seconds":
            assert spec.name.removesuffix("_total") in s.types, spec.name
            assert s.helps[spec.name.removesuffix("_total")] == spec.help
    assert "probe of locked /api/agents/running failed (auth)" in log
    assert bad not in log and KEY not in log


@pytest.mark.docker
async def test_container_gone_is_stuck_running(dockerd, docker_client) -> None:
    alive = docker_client.containers.run("agent:local", ["sleep", "300"], detach=True, network_mode="none")
    dead = docker_client.containers.run("agent:local", ["sh", "-c", "exit 137"], detach=True, network_mode="none")
    wait_for(lambda: (dead.reload() or dead.status) == "exited", 20)
    body = {"agents": [{"id": "a1", "model": "opus", "container": alive.id},
                       {"id": "a2", "model": "opus", "container": dead.name},
                       {"id": "a3", "model": "haiku", "container": "no-such-container"},
                       {"id": "a4", "model": "haiku", "pid": 1}]}

    async def running(request: web.Request) -> web.Response:
        return web.json_response(body)

    async with stand_in({"/r": running}) as url:
        target = {"name": "fleet", "url": url, "interval_seconds": 0.2, "endpoints": only(running="/r"),
                  "containers": {"enabled": True, "docker_host": dockerd.host}}
        async with running_collector(target) as c:
            s = await wait_scrape(c, lambda s: s.value("agentwatch_agents_stuck_running", model="opus") == 1
                                  and s.value("agentwatch_agents_stuck_running", model="haiku") == 1, timeout=20)
    assert s.value("agentwatch_agents_running", model="opus") == 2
    assert s.value("agentwatch_agents_running", model="haiku") == 2

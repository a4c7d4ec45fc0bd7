"""set_concurrency and drain take effect on a stand-in agent server (X-API-Key, configurable paths)."""

from __future__ import annotations

from agentwatch.scaler.executor import Scaler
from tests.scaler.helpers import API_KEY, StandIn, alert, config


def make(tmp_path, url: str, rules, endpoints=None, **extra) -> Scaler:
    target = {"kind": "agent_server", "url": url, "api_key_env": "AW_TEST_AGENT_KEY", "min_concurrency": 2,
              "max_concurrency": 10}
    if endpoints:
        target["endpoints"] = endpoints
    return Scaler(config(tmp_path, dry_run=False, targets={"srv": target}, rules=rules,
                         retry={"attempts": 3, "backoff_seconds": 0.05}, **extra))


async def test_set_concurrency_lower_restore_and_drain(aiohttp_server, tmp_path, monkeypatch):
    monkeypatch.setenv("AW_TEST_AGENT_KEY", API_KEY)
    srv = StandIn(max_concurrency=8)
    server = await aiohttp_server(srv.app)
    scaler = make(tmp_path, str(server.make_url("")), [
        {"name": "lower", "alertname": "Mem", "action": "set_concurrency", "factor": 0.5, "target": "srv",
         "on_resolved": "reverse", "stabilization_seconds": 0, "cooldown_seconds": 0},
        {"name": "drain", "alertname": "Exhausted", "action": "drain", "target": "srv", "priority": 10,
         "cooldown_seconds": 0}])
    await scaler.start()
    try:
        [d] = await scaler.handle([alert("Mem")])
        await scaler.idle(10)
        assert (d.result, d.current, d.desired) == ("success", 8, 4)
        assert srv.max_concurrency == 4
        [d] = await scaler.handle([alert("Mem", starts="2")])
        await scaler.idle(10)
        assert srv.max_concurrency == 2, "floored at min_concurrency"
        [d] = await scaler.handle([alert("Mem", starts="3")])
        assert d.reason == "bounds"

        await scaler.handle([alert("Mem", status="resolved")])
        [rev] = await scaler.tick()
        await scaler.idle(10)
        assert (rev.trigger, rev.mode, rev.result) == ("reverse", "restore", "success")
        assert srv.max_concurrency == 8, "restored to the value before the first lowering"

        [d] = await scaler.handle([alert("Exhausted")])
        await scaler.idle(10)
        assert d.result == "success" and srv.draining
        [d] = await scaler.handle([alert("Exhausted", starts="2")])
        assert d.reason == "no_change", "already draining"
        assert srv.calls == [("concurrency", 4), ("concurrency", 2), ("concurrency", 8), ("drain", None)]
    finally:
        await scaler.stop()


async def test_custom_paths_retries_and_wrong_key(aiohttp_server, tmp_path, monkeypatch):
    monkeypatch.setenv("AW_TEST_AGENT_KEY", API_KEY)
    srv = StandIn(max_concurrency=6, prefix="/v2/ops")
    srv.fail_next = 2  # two 503s, then it works: retried with backoff
    server = await aiohttp_server(srv.app)
    endpoints = {"status": "/v2/ops/status", "concurrency": "/v2/ops/concurrency", "drain": "/v2/ops/drain"}
    scaler = make(tmp_path, str(server.make_url("")), [
        {"name": "lower", "alertname": "Mem", "action": "set_concurrency", "step": 1, "target": "srv",
         "cooldown_seconds": 0}], endpoints=endpoints)
    await scaler.start()
    try:
        [d] = await scaler.handle([alert("Mem")])
        await scaler.idle(10)
        assert (d.result, d.attempts, srv.max_concurrency) == ("success", 3, 5)
        assert scaler.metrics.value("agentwatch_scaler_action_retries_total", "set_concurrency") == 2

        monkeypatch.setenv("AW_TEST_AGENT_KEY", "a-wrong-key-123456")
        [d] = await scaler.handle([alert("Mem", starts="2")])
        assert (d.outcome, d.reason) == ("skipped", "observe_failed"), "never acts blind"
        assert srv.max_concurrency == 5
    finally:
        await scaler.stop()

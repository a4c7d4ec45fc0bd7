"""A drain is reversed when its alert resolves (``on_resolved: reverse``): the pure policy, and the
real scaler stopping a real demo server's drain."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess
from agentwatch.scaler import policy
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.executor import Scaler
from agentwatch.scaler.model import Decision, Observation
from agentwatch.scaler.state import State
from tests.scaler.helpers import alert, config

T0 = 1_700_000_000.0
SERVER = {"kind": "agent_server", "url": "http://127.0.0.1:1"}
DRAIN = {"name": "drain", "alertname": "AgentHostMemoryExhausted", "action": "drain", "target": "srv",
         "cooldown_seconds": 0, "on_resolved": "reverse", "stabilization_seconds": 60}


def _ids() -> policy.IdFactory:
    numbers = itertools.count(1)
    return lambda: f"d{next(numbers)}"


def _decide(cfg: ScalerConfig, state: State, alerts: list, draining: bool | None, now: float) -> list[Decision]:
    decisions = policy.evaluate(alerts, cfg, state, now, _ids())
    policy.plan(decisions, cfg, state, {"srv": Observation(concurrency=4, draining=draining)}, now)
    policy.commit(decisions, cfg, state, now)
    return decisions


def _due(cfg: ScalerConfig, state: State, draining: bool, now: float) -> list[Decision]:
    decisions = policy.due_reverses(cfg, state, now, _ids())
    policy.plan(decisions, cfg, state, {"srv": Observation(concurrency=4, draining=draining)}, now)
    policy.commit(decisions, cfg, state, now)
    return decisions


def _config(**rule: Any) -> ScalerConfig:
    return ScalerConfig.model_validate({"targets": {"srv": SERVER}, "rules": [{**DRAIN, **rule}]})


def test_a_resolved_drain_is_stopped_after_the_stabilisation_window() -> None:
    cfg, state = _config(), State()
    [d] = _decide(cfg, state, [alert("AgentHostMemoryExhausted")], draining=False, now=T0)
    assert (d.outcome, d.action, d.current, d.desired) == ("act", "drain", 0, 1)
    [d] = _decide(cfg, state, [alert("AgentHostMemoryExhausted", status="resolved")], draining=True, now=T0 + 10)
    assert (d.outcome, d.action) == ("scheduled", "undrain")
    assert _due(cfg, state, draining=True, now=T0 + 69) == []  # still stabilising
    [d] = _due(cfg, state, draining=True, now=T0 + 71)
    assert (d.trigger, d.outcome, d.action, d.current, d.desired) == ("reverse", "act", "undrain", 1, 0)
    assert not state.pending and not state.applied
    assert _due(cfg, state, draining=False, now=T0 + 500) == []  # once only


def test_a_server_no_longer_draining_is_left_alone() -> None:
    cfg, state = _config(), State()
    _decide(cfg, state, [alert("AgentHostMemoryExhausted")], draining=False, now=T0)
    _decide(cfg, state, [alert("AgentHostMemoryExhausted", status="resolved")], draining=True, now=T0 + 10)
    [d] = _due(cfg, state, draining=False, now=T0 + 71)  # someone stopped it by hand
    assert (d.action, d.outcome, d.reason) == ("undrain", "skipped", "no_change")
    assert not state.pending


def test_without_reverse_a_drain_stays() -> None:
    cfg, state = _config(on_resolved="none"), State()
    _decide(cfg, state, [alert("AgentHostMemoryExhausted")], draining=False, now=T0)
    assert _decide(cfg, state, [alert("AgentHostMemoryExhausted", status="resolved")], True, T0 + 10) == []
    assert _due(cfg, state, draining=True, now=T0 + 1000) == []


async def test_the_scaler_stops_a_real_demo_servers_drain_when_the_alert_resolves(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)  # the scaler reads the demo's key from the same variable
    with DemoProcess() as demo:
        scaler = Scaler(config(tmp_path, dry_run=False, tick_seconds=60,
                               targets={"srv": {"kind": "agent_server", "url": demo.url, "api_key_env": KEY_ENV}},
                               rules=[{**DRAIN, "stabilization_seconds": 0}]))
        await scaler.start()
        try:
            [d] = await scaler.handle([alert("AgentHostMemoryExhausted")])
            await scaler.idle(10)
            assert (d.action, d.result) == ("drain", "success"), d.error
            status = (await asyncio.to_thread(demo.call, "GET", "/api/deploy/status"))[2]
            assert status["draining"] is True
            assert (await asyncio.to_thread(demo.call, "GET", "/ready"))[0] == 503

            await scaler.handle([alert("AgentHostMemoryExhausted", status="resolved")])
            [rev] = await scaler.tick()
            await scaler.idle(10)
            assert (rev.action, rev.result, rev.current, rev.desired) == ("undrain", "success", 1, 0), rev.error
            status = (await asyncio.to_thread(demo.call, "GET", "/api/deploy/status"))[2]
            assert status["draining"] is False and status["accepting"] is True
            assert (await asyncio.to_thread(demo.call, "GET", "/ready"))[0] == 200
            await asyncio.to_thread(demo.start_agent, "haiku", 0.1)  # accepted again
        finally:
            await scaler.stop()
    assert "draining stopped" in demo.log()

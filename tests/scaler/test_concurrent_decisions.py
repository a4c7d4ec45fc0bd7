"""Concurrent webhooks: ordered per target, never held up by another target, durable when answered."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiohttp
import pytest
from aiohttp import web

from agentwatch.scaler.executor import Scaler
from agentwatch.scaler.model import Alert
from agentwatch.scaler.state import State, dedupe_digest
from tests.scaler.helpers import API_KEY, TOKEN, ScalerProcess, StandIn, alert, config, payload, raw_alert

KEY_ENV = "AW_TEST_AGENT_KEY"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _agent_server(url: str) -> dict[str, object]:
    return {"kind": "agent_server", "url": url, "api_key_env": KEY_ENV, "min_concurrency": 1}


def _lower(name: str, target: str) -> dict[str, object]:
    return {"name": name, "alertname": name, "action": "set_concurrency", "factor": 0.5, "target": target,
            "cooldown_seconds": 0}


class SlowStandIn(StandIn):
    """Answers its status read only once ``release`` is set (an agent server that hangs)."""

    def __init__(self) -> None:
        super().__init__(max_concurrency=8)
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def status(self, request: web.Request) -> web.Response:
        self.asked.set()
        await self.release.wait()
        return await super().status(request)


class CountingStandIn(StandIn):
    """Counts the status reads it answers."""

    def __init__(self) -> None:
        super().__init__(max_concurrency=8)
        self.reads = 0

    async def status(self, request: web.Request) -> web.Response:
        self.reads += 1
        return await super().status(request)


async def test_a_hanging_agent_server_holds_up_only_its_own_decisions(aiohttp_server, tmp_path, monkeypatch):
    """The status read happens outside any lock another target's decision needs: while one agent
    server hangs, a webhook about another one is decided and answered (one global lock held across
    the read made it wait)."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    slow, fast = SlowStandIn(), StandIn(max_concurrency=8)
    slow_url = str((await aiohttp_server(slow.app)).make_url(""))
    fast_url = str((await aiohttp_server(fast.app)).make_url(""))
    scaler = Scaler(config(tmp_path, dry_run=True, targets={"slow": _agent_server(slow_url),
                                                            "fast": _agent_server(fast_url)},
                           rules=[_lower("SlowMem", "slow"), _lower("FastMem", "fast")]))
    await scaler.start()
    try:
        held = asyncio.ensure_future(scaler.handle([alert("SlowMem")]))
        await asyncio.wait_for(slow.asked.wait(), 10)
        [d] = await asyncio.wait_for(scaler.handle([alert("FastMem")]), 10)
        assert (d.target, d.outcome, d.current, d.desired) == ("fast", "act", 8, 4)
        assert not held.done(), "the hanging server's decision is still waiting for its status"
        # A second webhook about the hanging server waits for the first one: decided in arrival order.
        behind = asyncio.ensure_future(scaler.handle([alert("SlowMem", fp="again")]))
        await asyncio.sleep(0.05)
        assert not behind.done()
        slow.release.set()
        [first], [second] = await asyncio.wait_for(asyncio.gather(held, behind), 10)
        assert first.outcome == second.outcome == "act" and first.decided_at <= second.decided_at
    finally:
        slow.release.set()
        await scaler.stop()


async def test_one_alert_in_fifty_concurrent_webhooks_acts_once_on_one_status_read(aiohttp_server, tmp_path,
                                                                                 monkeypatch):
    """Fifty webhooks carrying the same alert at once: the first to arrive acts, the others are
    duplicates, and the agent server is asked for its status once, not fifty times."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    srv = CountingStandIn()
    url = str((await aiohttp_server(srv.app)).make_url(""))
    scaler = Scaler(config(tmp_path, dry_run=True, targets={"srv": _agent_server(url)},
                           rules=[_lower("Mem", "srv")]))
    await scaler.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(*(scaler.handle([alert("Mem")]) for _ in range(50))), 30)
        outcomes = [(d.outcome, d.reason) for [d] in results]
        assert outcomes[0] == ("act", "")
        assert outcomes[1:] == [("skipped", "duplicate")] * 49
        assert srv.reads == 1
    finally:
        await scaler.stop()


@pytest.mark.parametrize("write_seconds", [0.0, 1.0], ids=["fast disk: on the loop", "slow disk: I/O thread"])
async def test_concurrent_decisions_share_fsyncs_and_are_on_disk_when_answered(tmp_path, write_seconds):
    """Fifty concurrent webhooks, fifty distinct alerts: each one's dedupe entry is in the state
    file when its ``handle`` returns, and they took far fewer writes than decisions, whether the
    writes run on the event loop (a fast disk) or in the I/O thread (a slow one)."""
    cfg = config(tmp_path, dry_run=True, targets={"chat": {"kind": "notify", "url_env": "AW_TEST_NO_CHAT"}},
                 rules=[{"name": "page", "alertname": "Page", "action": "notify", "target": "chat",
                         "cooldown_seconds": 0}],
                 rate_limit={"max_actions": 1000, "per_seconds": 60})
    scaler = Scaler(cfg)
    await scaler.start()
    scaler.saves.write_seconds = write_seconds  # as if the last writes had taken that long
    on_disk: list[bool] = []

    async def one(i: int) -> None:
        a: Alert = alert("Page", fp=f"fp-{i}")
        [d] = await scaler.handle([a])
        assert d.outcome == "act"
        saved = State.from_json(json.loads((tmp_path / "state.json").read_bytes()))
        on_disk.append(dedupe_digest(d.dedupe_key) in saved.seen)

    try:
        before = scaler.saves.batches
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 30)
        assert on_disk == [True] * 50
        assert scaler.saves.batches - before < 25, "one write and fsync per batch, not per decision"
    finally:
        await scaler.stop()


def test_acknowledged_decisions_survive_kill_9(tmp_path):
    """Fifty webhooks answered at once, then SIGKILL: a scaler started on the same state file
    knows every one of those alert instances (a repeat is a duplicate, not a second action)."""
    policy = {"dry_run": True, "state_file": str(tmp_path / "state.json"), "audit_log": str(tmp_path / "a.jsonl"),
              "rate_limit": {"max_actions": 1000, "per_seconds": 60},
              "targets": {"chat": {"kind": "notify", "url_env": "AW_TEST_NO_CHAT"}},
              "rules": [{"name": "page", "alertname": "Page", "action": "notify", "target": "chat",
                         "cooldown_seconds": 0}]}

    async def post_all(url: str) -> list[dict[str, object]]:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            async def one(i: int) -> dict[str, object]:
                async with session.post(url + "/webhook", json=payload(raw_alert("Page", fp=f"fp-{i}"))) as resp:
                    assert resp.status == 200
                    [d] = (await resp.json())["decisions"]
                    return d
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 60)

    first = ScalerProcess(policy, tmp_path).launch()
    try:
        decisions = asyncio.run(post_all(first.url))
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)  # at once: no shutdown, no later write
        first.proc.wait(10)
    finally:
        first.stop()
    assert [d["outcome"] for d in decisions] == ["act"] * 50

    with ScalerProcess(policy, tmp_path) as second:
        again = asyncio.run(post_all(second.url))
    assert [(d["outcome"], d["reason"]) for d in again] == [("skipped", "duplicate")] * 50

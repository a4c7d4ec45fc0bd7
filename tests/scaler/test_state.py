"""Cooldown and dedupe survive a restart of the real scaler process; a corrupt state file is set aside."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from agentwatch.local.scrape import Scrape
from agentwatch.scaler.executor import Scaler
from agentwatch.scaler.state import PendingReverse, State, StateStore
from tests.scaler.helpers import ScalerProcess, ThreadedApp, config, http, payload, raw_alert


def chat_app(posts: list) -> web.Application:
    async def post(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", post)
    return app


def policy(tmp_path, **extra):
    return {"dry_run": False, "state_file": str(tmp_path / "state.json"), "audit_log": str(tmp_path / "audit.jsonl"),
            "targets": {"chat": {"kind": "notify", "url_env": "AW_CHAT_URL"}},
            "rules": [{"name": "page", "alertname": "Page", "action": "notify", "target": "chat",
                       "cooldown_seconds": 600}], **extra}


def test_restart_mid_cooldown_keeps_cooldown_and_dedupe(tmp_path):
    posts: list = []
    with ThreadedApp(chat_app(posts)) as chat:
        env = {"AW_CHAT_URL": chat.url + "/hook"}
        first = payload(raw_alert("Page", fp="one", starts="2024-01-01T00:00:00Z"))
        with ScalerProcess(policy(tmp_path), tmp_path, env=env) as scaler:
            status, body = http("POST", scaler.url + "/webhook", first)
            assert status == 200 and body["decisions"][0]["outcome"] == "act"
        assert len(posts) == 1
        with ScalerProcess(policy(tmp_path), tmp_path, env=env) as scaler:
            _, body = http("POST", scaler.url + "/webhook", first)
            assert body["decisions"][0]["reason"] == "duplicate", "a retry after the restart is still a repeat"
            second = payload(raw_alert("Page", fp="two", starts="2024-01-01T00:01:00Z"))
            _, body = http("POST", scaler.url + "/webhook", second)
            assert body["decisions"][0]["reason"] == "cooldown"
            scrape = Scrape.parse(http("GET", scaler.url + "/metrics", token=None)[1])
            left = scrape.value("agentwatch_scaler_cooldown_remaining_seconds", target="chat", action="notify")
            assert left is not None and 500 < left <= 600
            _, actions = http("GET", scaler.url + "/actions")
            assert actions["cooldowns"][0]["target"] == "chat"
    assert len(posts) == 1, "no second notify across the restart"


def test_corrupt_state_file_is_set_aside_not_fatal(tmp_path):
    (tmp_path / "state.json").write_text('{"version": 1, "cooldowns": {"x": "later"')
    with ScalerProcess(policy(tmp_path), tmp_path, env={"AW_CHAT_URL": "http://127.0.0.1:9/x"}) as scaler:
        assert http("GET", scaler.url + "/healthz", token=None)[0] == 200
        scrape = Scrape.parse(http("GET", scaler.url + "/metrics", token=None)[1])
        assert scrape.value("agentwatch_scaler_persistence_errors_total", reason="state_corrupt") == 1
        aside = list(tmp_path.glob("state.json.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_text().startswith('{"version": 1')
        assert not (tmp_path / "state.json").exists()
        log = scaler.log()
    record = next(json.loads(line) for line in log.splitlines() if "corrupt" in line)
    assert record["level"] == "error" and "set aside" in record["msg"]


def test_state_is_replaced_atomically(tmp_path):
    store = StateStore(tmp_path / "sub" / "state.json")
    state = State(cooldowns={"t|a": 123.0})
    state.mark_seen("rule|fp|2024-01-01T00:00:00Z|firing", 400.0, 56.0, 100)
    store.save(state)
    store.save(state)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["state.json"], "no temp file left behind"
    assert StateStore(tmp_path / "sub" / "state.json").load() == state


def test_start_drops_saved_reverses_the_policy_no_longer_has(tmp_path):
    cfg = config(tmp_path, targets={"chat": {"kind": "notify", "url_env": "AW_CHAT_URL"}},
                 rules=[{"name": "page", "alertname": "Page", "action": "notify", "target": "chat",
                         "on_resolved": "reverse"}])
    far = 4_000_000_000.0
    StateStore(cfg.state_file).save(State(pending={
        "page|chat": PendingReverse(due=far, alertname="Page"),
        "removed-rule|chat": PendingReverse(due=far), "page|removed-target": PendingReverse(due=far)}))

    async def start_and_stop() -> None:
        scaler = Scaler(cfg, backends={})
        await scaler.start()
        await scaler.stop()

    asyncio.run(start_and_stop())
    assert StateStore(cfg.state_file).load().pending == {"page|chat": PendingReverse(due=far, alertname="Page")}


@pytest.mark.parametrize("pending", [{"k": {"due": "soon"}}, {"k": {"due": True}}, {"k": {"due": 1, "alertname": 5}},
                                     {"k": [1]}, ["k"]])
def test_a_malformed_pending_reverse_is_rejected(pending):
    with pytest.raises(ValueError, match="pending"):
        State.from_json({"version": 1, "pending": pending})

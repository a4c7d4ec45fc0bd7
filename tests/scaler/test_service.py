"""The HTTP service: auth, body cap, payload errors, a flood of webhooks, the views, notify."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
from aiohttp import web

from agentwatch.local.scrape import Scrape
from agentwatch.scaler.app import SCALER_KEY, create_app
from tests.scaler.helpers import TOKEN, ScalerProcess, StandIn, ThreadedApp, config, http, payload, raw_alert

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class Chat:
    """A loopback Slack/Discord webhook receiver that records what was posted."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.app = web.Application()
        self.app.router.add_post("/hook/{secret}", self.post)

    async def post(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        return web.Response(text="ok")


def notify_policy(tmp_path, url_env: str = "AW_TEST_CHAT_URL", **extra):
    return config(tmp_path, dry_run=False, targets={"chat": {"kind": "notify", "url_env": url_env}},
                  rules=[{"name": "page", "alertname": "Page", "action": "notify", "target": "chat",
                          "cooldown_seconds": 0, "message": "{{ labels.alertname }} {{ labels.n }}"}],
                  rate_limit={"max_actions": 100000, "per_seconds": 60}, **extra)


@pytest.fixture
async def chat(aiohttp_server):
    c = Chat()
    c.server = await aiohttp_server(c.app)
    return c


async def test_token_is_required_and_compared_without_detail(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(config(tmp_path), token=TOKEN))
    body = payload(raw_alert("X"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
        resp = await client.post("/webhook", json=body, headers=headers)
        assert resp.status == 401, headers
        assert await resp.json() == {"error": "unauthorized"}
        assert (await client.get("/actions", headers=headers)).status == 401
    assert (await client.post("/webhook", json=body, headers=AUTH)).status == 200
    assert (await client.get("/actions", headers=AUTH)).status == 200
    scrape = Scrape.parse(await (await client.get("/metrics")).text())
    assert scrape.value("agentwatch_scaler_webhooks_total", result="unauthorized") == 5
    assert scrape.value("agentwatch_scaler_webhooks_total", result="accepted") == 1


def test_missing_token_refuses_to_start(tmp_path, monkeypatch):
    from agentwatch.configfile import ConfigError
    monkeypatch.delenv("AW_TEST_SCALER_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="AW_TEST_SCALER_TOKEN"):
        create_app(config(tmp_path))


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "(body): not valid JSON"),
    (b"[]", "(body): expected a JSON object"),
    ({"status": "firing", "alerts": []}, "version: expected \"4\""),
    (payload(raw_alert("X"), status="burning"), "status: expected"),
    ({**payload(), "alerts": {"a": 1}}, "alerts: expected a list"),
    ({**payload(), "alerts": [{**raw_alert("X"), "labels": "x"}]}, "alerts[0].labels: expected an object"),
    ({**payload(), "alerts": [raw_alert("X"), {**raw_alert("Y"), "labels": {"alertname": "Y", "n": 3}}]},
     "alerts[1].labels.n: expected a string (got int)"),
    ({**payload(), "alerts": [{k: v for k, v in raw_alert("X").items() if k != "labels"}]},
     "alerts[0].labels: required"),
    ({**payload(), "alerts": [{**raw_alert("X"), "startsAt": 5}]}, "alerts[0].startsAt: expected"),
    ({**payload(), "alerts": [{**raw_alert("X"), "startsAt": "yesterday"}]}, "alerts[0].startsAt: expected"),
    ({**payload(), "alerts": [{**raw_alert("X"), "status": None}]}, "alerts[0].status: expected"),
    ({**payload(), "alerts": [{**raw_alert("X"), "labels": {}}]}, "alerts[0].labels.alertname: required"),
])
async def test_bad_payloads_get_400_naming_the_field_and_nothing_is_acted_on(aiohttp_client, tmp_path, chat,
                                                                             monkeypatch, body, message):
    monkeypatch.setenv("AW_TEST_CHAT_URL", str(chat.server.make_url("/hook/s3cret-path")))
    client = await aiohttp_client(create_app(notify_policy(tmp_path), token=TOKEN))
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await client.post("/webhook", data=data, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(message)
    assert chat.posts == []
    actions = await (await client.get("/actions", headers=AUTH)).json()
    assert actions["decisions"] == []


async def test_oversized_body_gets_413_while_reading(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(config(tmp_path, max_body_bytes=4096), token=TOKEN))
    big = json.dumps(payload(raw_alert("X", pad="x" * 3000), raw_alert("Y", pad="y" * 3000))).encode()
    assert (await client.post("/webhook", data=big, headers=AUTH)).status == 413

    async def chunks():  # no Content-Length: the cap must hold while streaming
        for _ in range(100):
            yield b" " * 1024

    resp = await client.post("/webhook", data=chunks(), headers=AUTH)
    assert resp.status == 413
    ok = await client.post("/webhook", json=payload(raw_alert("X")), headers=AUTH)
    assert ok.status == 200, "the service is still fine"
    scrape = Scrape.parse(await (await client.get("/metrics")).text())
    assert scrape.value("agentwatch_scaler_webhooks_total", result="too_large") == 2


async def test_flood_of_webhooks_every_request_answered_no_action_twice(aiohttp_client, tmp_path, chat, monkeypatch):
    monkeypatch.setenv("AW_TEST_CHAT_URL", str(chat.server.make_url("/hook/s3cret-path")))
    client = await aiohttp_client(create_app(notify_policy(tmp_path), token=TOKEN))
    distinct = 150
    sem = asyncio.Semaphore(50)

    async def send(i: int) -> int:
        n = i % distinct
        if i % 97 == 0:
            body, headers = b"{", AUTH
        elif i % 89 == 0:
            body, headers = json.dumps(payload(raw_alert("Page", fp=f"f{n}", n=str(n)))).encode(), {}
        else:
            body, headers = json.dumps(payload(raw_alert("Page", fp=f"f{n}", n=str(n)))).encode(), AUTH
        async with sem:
            resp = await client.post("/webhook", data=body, headers=headers)
            await resp.read()
            return resp.status

    statuses = await asyncio.wait_for(asyncio.gather(*(send(i) for i in range(1000))), timeout=120)
    assert len(statuses) == 1000
    assert set(statuses) <= {200, 400, 401}
    assert statuses.count(400) == len([i for i in range(1000) if i % 97 == 0])
    scaler = client.app[SCALER_KEY]
    await scaler.idle(30)
    texts = [p["text"] for p in chat.posts]
    assert len(texts) == len(set(texts)) == distinct, "every distinct alert acted on exactly once"
    assert (await client.get("/healthz")).status == 200
    scrape = Scrape.parse(await (await client.get("/metrics")).text())
    assert scrape.value("agentwatch_scaler_actions_total", action="notify", result="success") == distinct
    assert scrape.value("agentwatch_scaler_skipped_total", reason="duplicate") >= 1000 - distinct - 30
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sum(1 for r in audit if r["event"] == "result" and r["result"] == "success") == distinct


async def test_notify_url_is_a_secret_and_labels_cannot_inject_mentions(aiohttp_client, tmp_path, chat,
                                                                        monkeypatch, caplog):
    secret_url = str(chat.server.make_url("/hook/T000-very-secret"))
    monkeypatch.setenv("AW_TEST_CHAT_URL", secret_url)
    client = await aiohttp_client(create_app(notify_policy(tmp_path), token=TOKEN))
    caplog.set_level(logging.DEBUG)
    resp = await client.post("/webhook", json=payload(raw_alert("Page", n="<!channel> <b>")), headers=AUTH)
    assert resp.status == 200
    scaler = client.app[SCALER_KEY]
    await scaler.idle(10)
    assert chat.posts == [{"text": "Page &lt;!channel&gt; &lt;b&gt;"}]
    # Now the receiver is gone: the failure reason must not carry the URL.
    monkeypatch.setenv("AW_TEST_CHAT_URL", "http://127.0.0.1:9/hook/T000-very-secret")
    scaler.config.retry.__dict__.update(attempts=2, backoff_seconds=0.01)
    await client.post("/webhook", json=payload(raw_alert("Page", fp="other", n="2")), headers=AUTH)
    await scaler.idle(10)
    actions = await (await client.get("/actions", headers=AUTH)).json()
    failed = [d for d in actions["decisions"] if d.get("result") == "failure"]
    assert failed and failed[0]["attempts"] == 2 and failed[0]["error"]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("agentwatch"))
    assert "notify on chat failed" in ours
    everything = (tmp_path / "audit.jsonl").read_text() + ours + json.dumps(actions)
    assert "T000-very-secret" not in everything
    assert TOKEN not in everything


async def test_html_page_escapes_alert_data(aiohttp_client, tmp_path):
    policy = config(tmp_path, targets={"chat": {"kind": "notify", "url_env": "NOPE"}},
                    rules=[{"name": "page", "alertname": "Page", "action": "notify",
                            "target": "{{ labels.target }}"}])
    client = await aiohttp_client(create_app(policy, token=TOKEN))
    evil = "<script>alert(1)</script>"
    await client.post("/webhook", json=payload(raw_alert("Page", target=evil)), headers=AUTH)
    page = await (await client.get("/")).text()
    assert "target_not_allowed" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_dry_run_throughput_and_decision_latency(tmp_path):
    """Measured, not asserted: a real scaler process in dry-run, 1,000 webhooks, 50 at a time."""
    srv = StandIn(max_concurrency=8)
    with ThreadedApp(srv.app) as standin:
        policy = {"dry_run": True, "state_file": str(tmp_path / "s.json"), "audit_log": str(tmp_path / "a.jsonl"),
                  "log_level": "warning", "rate_limit": {"max_actions": 100000, "per_seconds": 60},
                  "targets": {"srv": {"kind": "agent_server", "url": standin.url, "api_key_env": "AW_KEY"},
                              "chat": {"kind": "notify", "url_env": "AW_NOPE"}},
                  "rules": [{"name": "lower", "alertname": "Mem", "action": "set_concurrency", "target": "srv",
                             "priority": 10, "cooldown_seconds": 0},
                            {"name": "page", "alertname": "Mem", "action": "notify", "target": "chat",
                             "cooldown_seconds": 0}]}
        with ScalerProcess(policy, tmp_path, env={"AW_KEY": srv.api_key}) as scaler:
            async def main(n: int, concurrency: int, offset: int, distinct: int) -> tuple[float, list[float]]:
                latencies: list[float] = []
                sem = asyncio.Semaphore(concurrency)
                async with aiohttp.ClientSession(headers=AUTH) as session:
                    async def one(i: int) -> None:
                        k = offset + i % distinct
                        body = payload(raw_alert("Mem", fp=f"f{k}", host=f"h{k}"))
                        async with sem, session.post(scaler.url + "/webhook", json=body) as resp:
                            assert resp.status == 200
                            latencies.append((await resp.json())["decision_latency_seconds"])
                    start = time.perf_counter()
                    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=120)
                    return time.perf_counter() - start, sorted(latencies)

            for n, conc, offset, distinct in ((1000, 50, 0, 400), (200, 1, 10_000, 200)):
                elapsed, lat = asyncio.run(main(n, conc, offset, distinct))
                p50, p99 = lat[len(lat) // 2], lat[max(0, int(len(lat) * 0.99) - 1)]
                print(f"\nscaler dry-run: {n} webhooks ({distinct} distinct alerts, {conc} in flight) in "
                      f"{elapsed:.2f}s = {n / elapsed:.0f}/s; decision latency p50 {p50 * 1000:.1f} ms, "
                      f"p99 {p99 * 1000:.1f} ms")
            scrape = Scrape.parse(http("GET", scaler.url + "/metrics", token=None)[1])
            assert scrape.value("agentwatch_scaler_actions_total", action="notify", result="dry_run") == 600
            assert scrape.value("agentwatch_scaler_actions_total", action="set_concurrency", result="dry_run") == 600
            assert scrape.value("agentwatch_scaler_skipped_total", reason="duplicate") == 2 * 600
            assert not scrape.series("agentwatch_scaler_actions_total", result="success")
    assert srv.calls == [], "dry run changes nothing"

"""Test helpers for the scaler: alerts, policies, a stand-in agent server, real child processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from agentwatch.local.alertmanager import AlertmanagerProcess
from agentwatch.local.process import ManagedProcess, free_port, http_status
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.model import Alert, AlertStatus

TOKEN = "test-token-0123456789abcdef"
API_KEY = "agent-api-key-abcdef123456"


def alert(name: str, status: AlertStatus = "firing", starts: str = "2024-01-01T00:00:00Z", fp: str | None = None,
          **labels: str) -> Alert:
    labels = {"alertname": name, **labels}
    return Alert(status, labels, {}, starts, "", fp or f"fp-{name}-{sorted(labels.items())}")


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {"version": "4", "status": status, "receiver": "scaler", "groupKey": "{}:{}", "alerts": list(alerts),
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am"}


def raw_alert(name: str, status: str = "firing", fp: str = "abc", starts: str = "2024-01-01T00:00:00Z",
              **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, **labels}, "annotations": {}, "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fp}


def config(tmp: Path, **overrides: Any) -> ScalerConfig:
    data: dict[str, Any] = {"state_file": str(tmp / "state.json"), "audit_log": str(tmp / "audit.jsonl"),
                            "auth": {"token_env": "AW_TEST_SCALER_TOKEN"}}
    data.update(overrides)
    return ScalerConfig.model_validate(data)


# -- a stand-in agent server ------------------------------------------------------------------------
class StandIn:
    """GET /api/deploy/status, POST /api/deploy/concurrency and /api/deploy/drain behind X-API-Key."""

    def __init__(self, max_concurrency: int = 8, api_key: str = API_KEY, prefix: str = "/api/deploy") -> None:
        self.max_concurrency = max_concurrency
        self.draining = False
        self.api_key = api_key
        self.calls: list[tuple[str, Any]] = []
        self.fail_next = 0
        self.app = web.Application()
        self.app.router.add_get(f"{prefix}/status", self.status)
        self.app.router.add_post(f"{prefix}/concurrency", self.concurrency)
        self.app.router.add_post(f"{prefix}/drain", self.drain)

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("X-API-Key") != self.api_key:
            raise web.HTTPUnauthorized()

    async def status(self, request: web.Request) -> web.Response:
        self._auth(request)
        return web.json_response({"maxConcurrency": self.max_concurrency, "draining": self.draining})

    async def concurrency(self, request: web.Request) -> web.Response:
        self._auth(request)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": "busy"}, status=503)
        body = await request.json()
        value = body.get("maxConcurrency")
        if not isinstance(value, int) or value < 0:
            return web.json_response({"error": "maxConcurrency"}, status=400)
        self.calls.append(("concurrency", value))
        self.max_concurrency = value
        return web.json_response({"maxConcurrency": value})

    async def drain(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.calls.append(("drain", None))
        self.draining = True
        return web.json_response({"draining": True})


class ThreadedApp:
    """An aiohttp app served from its own thread and loop on a free loopback port."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        assert self._ready.wait(10), "stand-in did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# -- the real scaler as a child process -------------------------------------------------------------
def http(method: str, url: str, body: Any = None, token: str | None = TOKEN,
         timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class ScalerProcess(ManagedProcess):
    """``agentwatch scaler`` with a policy dict, on a free loopback port."""

    def __init__(self, policy: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.policy = {"log_format": "json", **policy, "listen": f"127.0.0.1:{self.port}",
                       "auth": {"token_env": "AW_TEST_SCALER_TOKEN"}}
        self.workdir = workdir
        self.env = {**os.environ, "AW_TEST_SCALER_TOKEN": TOKEN, **(env or {})}
        super().__init__([sys.executable, "-m", "agentwatch.cli", "scaler", "--config", str(workdir / "policy.yml")],
                         workdir / f"scaler-{self.port}.log", env=self.env, name="scaler")

    def launch(self, timeout: float = 20) -> ScalerProcess:
        """Write the policy file, start, and wait for /healthz."""
        (self.workdir / "policy.yml").write_text(yaml.safe_dump(self.policy))
        self.start(lambda: http_status(self.url + "/healthz") == 200, timeout)
        return self

    def actions(self) -> list[dict[str, Any]]:
        status, body = http("GET", self.url + "/actions")
        assert status == 200, body
        return body["decisions"]

    def __enter__(self) -> ScalerProcess:
        return self.launch()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the real Alertmanager ---------------------------------------------------------------------------


class Alertmanager(AlertmanagerProcess):
    """Alertmanager 0.25 with a webhook receiver pointing at the scaler; no clustering."""

    def __init__(self, webhook_url: str, token: str = TOKEN, group_by: tuple[str, ...] = ("alertname",),
                 group_wait: str = "500ms", group_interval: str = "1s", repeat_interval: str = "2s") -> None:
        workdir = Path(tempfile.mkdtemp(prefix="aw-am-"))
        self.dir = workdir
        (self.dir / "token").write_text(token + "\n")
        cfg = {
            "route": {"receiver": "scaler", "group_by": list(group_by), "group_wait": group_wait,
                      "group_interval": group_interval, "repeat_interval": repeat_interval},
            "receivers": [{"name": "scaler", "webhook_configs": [{
                "url": webhook_url, "send_resolved": True, "max_alerts": 0,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(self.dir / "token")}}}]}],
        }
        (self.dir / "am.yml").write_text(yaml.safe_dump(cfg))
        super().__init__(self.dir / "am.yml", workdir)

    def fire(self, *alerts: dict[str, Any]) -> None:
        """POST /api/v2/alerts: [{labels, annotations, startsAt?, endsAt?}]."""
        status, body = http("POST", self.url + "/api/v2/alerts", list(alerts), token=None)
        assert status == 200, body

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""agentwatch's own servers as managed processes on free loopback ports: the exporter and the demo agent server.

They run as real child processes (``python -m agentwatch.cli ...``), not in-process apps, so what
is measured or tested is what a user runs: the same CLI, config parsing, signal handling and exit.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from agentwatch.local.process import ManagedProcess, free_port, http_status
from agentwatch.local.scrape import Scrape


class ExporterProcess(ManagedProcess):
    """``agentwatch exporter`` with a given config dict; a context manager."""

    def __init__(self, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 ready_timeout: float = 30.0, workdir: Path | None = None) -> None:
        self.port = free_port()
        self.config = dict(config or {})
        self.config.setdefault("interval_seconds", 1)
        self.config["listen"] = f"127.0.0.1:{self.port}"
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="aw-exporter-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.dir / "agentwatch.yml"
        super().__init__([sys.executable, "-m", "agentwatch.cli", "exporter", "--config", str(self.config_path)],
                         self.dir / "exporter.log", env={**os.environ, **(env or {})}, name="exporter",
                         ready=lambda: http_status(f"{self.url}/readyz") == 200, ready_timeout=ready_timeout)

    def prepare(self) -> None:
        """The config is written at start, so a test may change ``self.config`` before it."""
        self.config_path.write_text(yaml.safe_dump(self.config))

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def scrape(self) -> Scrape:
        status, body = self.get("/metrics")
        assert status == 200, body
        return Scrape.parse(body.decode())

    def wait_for_cycles(self, n: int = 2, timeout: float = 30.0) -> Scrape:
        """Wait until ``n`` more collection cycles have rendered; return the latest scrape."""
        def stamp() -> float:
            return self.scrape().value("agentwatch_snapshot_timestamp_seconds") or 0.0
        seen = {stamp()}
        deadline = time.monotonic() + timeout
        while len(seen) <= n and time.monotonic() < deadline:
            time.sleep(0.2)
            seen.add(stamp())
        return self.scrape()

KEY_ENV = "AW_TEST_DEMO_KEY"
KEY = "demo-key-7f3a9c2e51"


class DemoProcess(ManagedProcess):
    """The demo server with the given extra flags; a context manager. Agents hold tiny memory."""

    def __init__(self, *flags: str, key: str = KEY, ready_timeout: float = 20.0, workdir: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = key
        self.flags = ["--memory-scale", "0.02", *flags]
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="aw-demo-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [sys.executable, "-m", "agentwatch.cli", "demo-agents", "--listen", f"127.0.0.1:{self.port}",
             "--api-key-env", KEY_ENV, "--log-format", "text", *self.flags],
            self.dir / "demo.log", env={**os.environ, KEY_ENV: self.key}, name="demo server",
            ready=lambda: http_status(f"{self.url}/live") == 200, ready_timeout=ready_timeout)

    def call(self, method: str, path: str, body: Any = None, key: str | None = "default",
             raw: bytes | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        """(status, headers, parsed JSON or text); ``key=None`` sends no key."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["X-API-Key"] = self.key if key == "default" else key
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, hdrs, payload = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            status, hdrs, payload = exc.code, dict(exc.headers), exc.read()
        try:
            return status, hdrs, json.loads(payload)
        except ValueError:
            return status, hdrs, payload.decode(errors="replace")

    def start_agent(self, model: str = "haiku", seconds: float = 1.0, **extra: Any) -> dict[str, Any]:
        status, _, body = self.call("POST", "/api/agents", {"model": model, "seconds": seconds, **extra})
        assert status == 202, (status, body)
        return body

    def running(self) -> dict[str, Any]:
        status, _, body = self.call("GET", "/api/agents/running")
        assert status == 200, body
        return body

    def wait_for_pid(self, agent_id: str, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for agent in self.running()["agents"]:
                if agent["id"] == agent_id and agent["pid"]:
                    return int(agent["pid"])
            time.sleep(0.05)
        raise AssertionError(f"agent {agent_id} got no pid within {timeout}s")


"""Run the real demo agent server (``agentwatch demo-agents``) as a subprocess on a free loopback port."""

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

from tests.harness.process import ManagedProcess, free_port, http_status

KEY_ENV = "AW_TEST_DEMO_KEY"
KEY = "demo-key-7f3a9c2e51"


class DemoProcess(ManagedProcess):
    """The demo server with the given extra flags; a context manager. Agents hold tiny memory."""

    def __init__(self, *flags: str, key: str = KEY, ready_timeout: float = 20.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = key
        self.flags = ["--memory-scale", "0.02", *flags]
        self.ready_timeout = ready_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="aw-demo-"))
        super().__init__(
            [sys.executable, "-m", "agentwatch.cli", "demo-agents", "--listen", f"127.0.0.1:{self.port}",
             "--api-key-env", KEY_ENV, "--log-format", "text", *self.flags],
            self.dir / "demo.log", env={**os.environ, KEY_ENV: self.key}, name="demo server")

    def start(self) -> DemoProcess:  # type: ignore[override]
        super().start(lambda: http_status(f"{self.url}/live") == 200, self.ready_timeout)
        return self

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

    def stop(self, timeout: float = 15.0) -> int | None:  # type: ignore[override]
        super().stop(timeout)
        return self.proc.returncode if self.proc else None

    def __enter__(self) -> DemoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

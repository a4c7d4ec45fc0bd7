"""Run the real exporter as a subprocess on a free loopback port and scrape it over HTTP."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.harness.metrics import Scrape
from tests.harness.process import ManagedProcess, free_port, http_status


class ExporterProcess(ManagedProcess):
    """``agentwatch exporter`` with a given config dict; a context manager."""

    def __init__(self, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 ready_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.config = dict(config or {})
        self.config.setdefault("interval_seconds", 1)
        self.config["listen"] = f"127.0.0.1:{self.port}"
        self.ready_timeout = ready_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="aw-exporter-"))
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = self.dir / "agentwatch.yml"
        super().__init__([sys.executable, "-m", "agentwatch.cli", "exporter", "--config", str(cfg)],
                         self.dir / "exporter.log", env={**os.environ, **(env or {})}, name="exporter")

    def start(self) -> ExporterProcess:  # type: ignore[override]
        (self.dir / "agentwatch.yml").write_text(yaml.safe_dump(self.config))
        super().start(lambda: http_status(f"{self.url}/readyz") == 200, self.ready_timeout)
        return self

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

    def __enter__(self) -> ExporterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

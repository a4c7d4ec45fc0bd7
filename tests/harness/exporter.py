"""Run the real exporter as a subprocess on a free loopback port and scrape it over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.harness.metrics import Scrape


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ExporterProcess:
    """``agentwatch exporter`` with a given config dict; a context manager."""

    def __init__(self, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 ready_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.config = dict(config or {})
        self.config.setdefault("interval_seconds", 1)
        self.config["listen"] = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.ready_timeout = ready_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="aw-exporter-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> ExporterProcess:
        cfg = self.dir / "agentwatch.yml"
        cfg.write_text(yaml.safe_dump(self.config))
        self.log_path = self.dir / "exporter.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentwatch.cli", "exporter", "--config", str(cfg)],
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, env=self.env,  # noqa: SIM115
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"exporter not ready within {self.ready_timeout}s:\n{self.log()}")

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

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> ExporterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

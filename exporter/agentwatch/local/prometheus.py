"""The real Prometheus (Debian package) on a free loopback port, with short intervals.

Rules and scrape shapes are proved against the server users run, not against a PromQL imitation;
intervals of a second keep a rule's ``for:`` and a scrape's effect within a test's patience.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from agentwatch.local.process import ManagedProcess, free_port, http_status


class PrometheusProcess(ManagedProcess):
    """``prometheus`` scraping ``targets`` every ``interval`` with optional rule files; a context manager.

    ``config`` is written at start, so a caller may add to it (an ``alerting`` section) before.
    Its files go to ``workdir`` (its owner's to delete), else to a new temporary directory deleted at ``stop``.
    """

    def __init__(self, targets: list[str], rule_files: Sequence[Path] = (), interval: str = "1s",
                 job: str = "agentwatch", ready_timeout: float = 30.0, workdir: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="aw-prometheus-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        super().__init__([], self.dir / "prometheus.log", name="prometheus",
                         ready=lambda: http_status(f"{self.url}/-/ready") == 200, ready_timeout=ready_timeout)

    def prepare(self) -> None:
        binary = shutil.which("prometheus")
        if not binary:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.config))
        self.argv = [binary, f"--config.file={self.dir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                     "--storage.tsdb.retention.time=1h"]

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/``path``; the ``data`` of a success, AssertionError with Prometheus's error otherwise."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def wait_for_query(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The first non-empty result of ``expr``, polled every half second; bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no result for {expr} within {timeout}s")

    def stop(self, timeout: float = 15.0) -> int | None:
        code = super().stop(timeout)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return code

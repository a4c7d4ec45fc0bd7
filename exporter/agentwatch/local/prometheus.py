"""The real Prometheus (Debian package) on a free loopback port, with short intervals."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from agentwatch.local.process import ManagedProcess, free_port, http_status


class PrometheusProcess(ManagedProcess):
    """``prometheus`` scraping ``targets`` every ``interval`` with optional rule files."""

    def __init__(self, targets: list[str], rule_files: list[Path] = (), interval: str = "1s",
                 job: str = "agentwatch") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="aw-prometheus-"))
        self.config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        super().__init__([], self.dir / "prometheus.log", name="prometheus")

    def start(self, timeout: float = 30) -> PrometheusProcess:  # type: ignore[override]
        binary = shutil.which("prometheus")
        if not binary:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.config))
        self.argv = [binary, f"--config.file={self.dir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                     "--storage.tsdb.retention.time=1h"]
        super().start(lambda: http_status(f"{self.url}/-/ready") == 200, timeout)
        return self

    def api(self, path: str, **params: str) -> Any:
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
        return self.api("query", query=expr)["result"]

    def wait_for_query(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no result for {expr} within {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrometheusProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

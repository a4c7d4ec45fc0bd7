"""The README's first command works on a machine with no Docker engine and no config file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

from agentwatch.local.process import free_port
from agentwatch.local.scrape import Scrape


def test_exporter_without_engine_reports_it_down_and_serves_process_stats(tmp_path):
    exe = shutil.which("agentwatch")
    assert exe, "the console script is installed by `pip install .`"
    port = free_port()
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    log_path = tmp_path / "exporter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "exporter", "--listen", f"127.0.0.1:{port}", "--interval", "0.3"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        scrape = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    scrape = Scrape.parse(resp.read().decode())
                if (scrape.value("agentwatch_collector_duration_seconds_count", collector="containers") or 0) >= 5:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert scrape is not None, log_path.read_text()
        assert scrape.value("agentwatch_docker_up") == 0
        assert scrape.value("agentwatch_host_memory_total_bytes") > 0
        assert 0 < scrape.value("agentwatch_host_memory_used_ratio") < 1
        assert scrape.value("agentwatch_collector_success", collector="processes") == 1
        assert scrape.series("agentwatch_process_group_processes"), "default process groups are exported"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert records, "logs are JSON objects, one per line, by default"
    engine_warnings = [r for r in records if r["level"] == "warning" and "engine" in r["msg"].lower()]
    assert len(engine_warnings) == 1, f"one warning across 5+ cycles, got {engine_warnings}"

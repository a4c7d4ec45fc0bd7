"""The exposition's shape: every family's name, type, help, label names, sample names and buckets.

Computed from real input: the demo agent server (a subprocess instrumented with
``agentwatch.instrument``) with one agent that finishes and one that runs; the exporter's collection
loop with its self-metrics, the probe collector probing that server and the process collector
reading the running agent from /proc; and the scaler's metrics registry. Values differ from run to
run, the shape must not: ``tests/core/test_exposition_shape.py`` compares it with the fixture this
module writes when run as a script (``python3 -m tests.core.exposition_shape``, from the checkout).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agentwatch.collectors.probes import ProbeCollector
from agentwatch.collectors.processes import ProcessCollector
from agentwatch.config import ExporterConfig, ProcessesConfig
from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess
from agentwatch.scaler.metrics import ScalerMetrics, registry
from agentwatch.snapshot import CollectionLoop

FIXTURE = Path(__file__).with_name("fixtures") / "exposition_shape.json"
Shape = dict[str, dict[str, Any]]


def shape(text: str, openmetrics: bool = False) -> Shape:
    """Family name -> type, help, sorted label names (``le`` aside), sample names and ``le`` values."""
    out: Shape = {}
    for fam in (parse_openmetrics if openmetrics else parse_text)(text):
        les: list[str] = []
        labels: set[str] = set()
        for s in fam.samples:
            labels |= set(s.labels) - {"le"}
            if "le" in s.labels and s.labels["le"] not in les:
                les.append(s.labels["le"])
        out[fam.name] = {"type": fam.type, "help": fam.documentation, "labels": sorted(labels),
                         "samples": sorted({s.name for s in fam.samples}), "le": les}
    return out


def _scaler_text() -> tuple[str, str]:
    """The scaler's /metrics registry after one of everything it counts."""
    metrics = ScalerMetrics(cooldowns=lambda: {("agents", "scale_up"): 30.0})
    metrics.inc("agentwatch_scaler_webhooks_total", "accepted")
    metrics.inc("agentwatch_scaler_decisions_total", "scale_up", "executed")
    metrics.inc("agentwatch_scaler_actions_total", "scale_up", "success")
    metrics.inc("agentwatch_scaler_skipped_total", "cooldown")
    metrics.inc("agentwatch_scaler_action_retries_total", "scale_up")
    metrics.inc("agentwatch_scaler_persistence_errors_total", "state_write")
    metrics.observe("agentwatch_scaler_action_duration_seconds", 0.2, "scale_up")
    metrics.observe("agentwatch_scaler_decision_latency_seconds", 0.01)
    reg = registry(metrics)
    return generate_latest(reg).decode(), generate_openmetrics(reg).decode()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


class _Families:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


async def _probed(probes: ProbeCollector, name: str, timeout: float = 20.0) -> None:
    """Wait until the probe collector shows a sample of ``name`` above 0 (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        text = generate_latest(_Families(await probes.collect())).decode()
        if any(s.value > 0 for fam in parse_text(text) for s in fam.samples if s.name == name):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {name} > 0")
        await asyncio.sleep(0.1)


async def _exporter_and_demo(demo: DemoProcess) -> tuple[str, str, str]:
    """(exporter text, exporter OpenMetrics, demo server's own /metrics text)."""
    pid = demo.proc.pid if demo.proc else 0
    probes = ProbeCollector(ExporterConfig.model_validate({
        "docker": {"enabled": False}, "processes": {"enabled": False},
        "probes": [{"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": 0.2,
                    "timeout_seconds": 5}]}))
    processes = ProcessCollector(ProcessesConfig.model_validate({
        "groups": [{"name": "agents",
                    "cmdline": rf"agent_worker\.py --model (?P<model>\w+) .*--parent-pid {pid}\b"}],
        "uss": True, "per_process": {"enabled": True}}))
    loop = CollectionLoop([probes, processes], interval=3600)
    await probes.start()
    try:
        await _probed(probes, "agentwatch_probe_success")
        await asyncio.to_thread(demo.start_agent, "haiku", 0.3)
        long = await asyncio.to_thread(demo.start_agent, "sonnet", 60)
        await asyncio.to_thread(demo.wait_for_pid, long["id"])
        await _probed(probes, "agentwatch_agent_runs_total")
        await _probed(probes, "agentwatch_agents_running")
        snap = await loop.collect_once()
        demo_text = await asyncio.to_thread(_get, demo.url + "/metrics")
    finally:
        await probes.stop()
        await processes.stop()
    return (gzip.decompress(snap.gzipped(False)).decode(), gzip.decompress(snap.gzipped(True)).decode(),
            demo_text)


def compute() -> dict[str, Shape]:
    """The shape of every part, from a fresh demo server."""
    saved = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = KEY  # the probe collector reads the demo's key from this variable
    try:
        with DemoProcess("--max-concurrency", "4", "--pool-size", "2") as demo:
            text, om, demo_text = asyncio.run(_exporter_and_demo(demo))
    finally:
        if saved is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = saved
    scaler_text, scaler_om = _scaler_text()
    return {"exporter": shape(text), "exporter_openmetrics": shape(om, openmetrics=True),
            "scaler": shape(scaler_text), "scaler_openmetrics": shape(scaler_om, openmetrics=True),
            "instrument": shape(demo_text)}


def main() -> int:
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

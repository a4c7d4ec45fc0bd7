"""End to end: the real exporter on a real engine, scraped by a real Prometheus that loads the rules.

Every dashboard query and every rule must evaluate without error against what the exporter really
emits, and the core panels must return data: Grafana is not installable here, so this is how the
dashboards are checked beyond their structure.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess, ExporterProcess
from agentwatch.local.process import wait_for
from agentwatch.local.prometheus import PrometheusProcess

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dashboards"))
import build  # noqa: E402

#: Panels that must show data with one limited container and the exporter's own metrics.
MUST_HAVE_DATA = {"Host memory used", "Docker engine up", "Working set / limit", "Working set",
                  "CPU used / limit", "Containers by state", "Collector success", "Collection cycle",
                  "Last exit code / OOM killed", "Running agents by model", "Max concurrency", "Probe success",
                  "Probe latency p99", "Pool utilisation", "Pool waiting", "Health checks", "Agents stuck running"}


@pytest.fixture(scope="module")
def stack(dockerd):
    client = dockerd.client
    container = client.containers.run(
        "agent:local", ["sleep", "600"], detach=True, network_mode="none", name="e2e-agent-1",
        mem_limit="64m", nano_cpus=500_000_000,
        labels={"com.docker.compose.project": "fleet", "com.docker.compose.service": "agent"},
    )
    rules = sorted((ROOT / "alert-rules").glob("*.rules.yml"))
    demo = DemoProcess("--max-concurrency", "3").start()
    demo.start_agent("sonnet", seconds=120)
    exporter = ExporterProcess(
        {"interval_seconds": 1, "docker": {"host": dockerd.host},
         "probes": [{"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": 1}]},
        env={KEY_ENV: KEY},
    ).start()
    prom = PrometheusProcess([f"127.0.0.1:{exporter.port}"], rule_files=rules).start()
    try:
        prom.wait_for_query('agentwatch_container_memory_working_set_ratio{container="e2e-agent-1"}')
        prom.wait_for_query('agentwatch_agents_running{server="demo", model="sonnet"} == 1')
        time.sleep(6)  # enough samples for rate() over the panels' windows
        yield prom
    finally:
        prom.stop()
        exporter.stop()
        demo.stop()
        container.remove(force=True)


def substitute(expr: str) -> str:
    return expr.replace("$instance", ".*").replace("$service", ".*")


@pytest.mark.parametrize("panel", build.PANELS, ids=lambda p: p.title)
def test_dashboard_query_evaluates(stack, panel):
    for expr in panel.exprs:
        result = stack.query(substitute(expr))  # raises on a PromQL error
        if panel.title in MUST_HAVE_DATA:
            assert result, f"{panel.title}: no data for {expr}"


def test_rules_load_and_evaluate_without_errors(stack):
    groups = wait_for(lambda: stack.api("rules")["groups"], timeout=20, what="rule groups loaded")
    rules = [r for g in groups for r in g["rules"]]
    assert rules, "the alert-rules folder has rules"

    def all_evaluated():
        current = [r for g in stack.api("rules")["groups"] for r in g["rules"]]
        return all(r.get("lastEvaluation", "").startswith("20") for r in current) and current

    evaluated = wait_for(all_evaluated, timeout=20, what="every rule evaluated once")
    broken = [(r["name"], r.get("lastError")) for r in evaluated if r.get("health") != "ok"]
    assert not broken, broken


def test_limited_container_ratio_matches_engine(stack):
    result = stack.query('agentwatch_container_memory_limit_bytes{container="e2e-agent-1"}')
    assert float(result[0]["value"][1]) == 64 * 1024 * 1024
    cores = stack.query('agentwatch_container_cpu_limit_cores{container="e2e-agent-1"}')
    assert float(cores[0]["value"][1]) == pytest.approx(0.5)

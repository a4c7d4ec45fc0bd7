"""End to end: the real exporter on a real engine, scraped by a real Prometheus that loads the rules.

Every dashboard query and every rule must evaluate without error against what the exporter really
emits, and the core panels must return data: Grafana is not installable here, so this is how the
dashboards are checked beyond their structure.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess, ExporterProcess
from agentwatch.local.process import ManagedProcess, free_port, http_status, wait_for
from agentwatch.local.prometheus import PrometheusProcess
from tests.dashboards.boards import targets

ROOT = Path(__file__).resolve().parents[2]

SCALER_TOKEN = "e2e-scaler-token-5b1d7c"
#: What the dashboards' variables become here: every value (Grafana's All).
VARIABLES = {"$job": ".+", "$instance": ".+", "$__rate_interval": "30s", "$__range": "10m"}
#: A container that adds 256 KiB to its memory every second: growing, with a limit ahead.
GROWER = ["sh", "-c", "i=0; while :; do dd if=/dev/zero of=/dev/shm/f$i bs=256k count=1 2>/dev/null; "
          "i=$((i+1)); sleep 1; done"]
#: Seen running for a few seconds, then allocates 100 MiB at once inside 32 MiB: OOM-killed.
OOM = ["sh", "-c", "sleep 4; dd if=/dev/zero of=/dev/null bs=100M count=1"]


#: (dashboard, panel title, target) for every query of every committed dashboard.
PANEL_TARGETS = [(name.removesuffix(".json").removeprefix("agentwatch-"), panel["title"], target)
                 for name, panel, target in targets()]


def substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    for variable in ("$service", "$container", "$server", "$group", "$action", "$target"):
        expr = expr.replace(variable, ".*")
    return expr


class Scaler(ManagedProcess):
    """The real scaler on a free port, acting on the demo server and on a chat hook that never answers."""

    def __init__(self, demo_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="aw-e2e-scaler-"))
        (self.dir / "state.json").write_text("{not json")  # a corrupt state file: set aside, counted
        policy = {
            "dry_run": False, "listen": f"127.0.0.1:{self.port}", "log_format": "text",
            "auth": {"token_env": "AW_E2E_SCALER_TOKEN"},
            "state_file": str(self.dir / "state.json"), "audit_log": str(self.dir / "audit.jsonl"),
            "retry": {"attempts": 2, "backoff_seconds": 0.2, "timeout_seconds": 5},
            "targets": {
                "demo": {"kind": "agent_server", "url": demo_url, "api_key_env": KEY_ENV},
                "oncall": {"kind": "notify", "url_env": "AW_E2E_HOOK_URL", "timeout_seconds": 1},
            },
            "rules": [
                {"name": "lower", "alertname": "E2EPressure", "action": "set_concurrency", "mode": "lower",
                 "factor": 0.5, "target": "demo", "cooldown_seconds": 600},
                {"name": "page", "alertname": "E2EPressure", "action": "notify", "target": "oncall",
                 "message": "{{ labels.alertname }}", "cooldown_seconds": 0},
            ],
        }
        (self.dir / "policy.yml").write_text(yaml.safe_dump(policy))
        env = {**os.environ, "AW_E2E_SCALER_TOKEN": SCALER_TOKEN, KEY_ENV: KEY,
               "AW_E2E_HOOK_URL": f"http://127.0.0.1:{free_port()}/hook"}  # nothing listens: the action fails
        super().__init__([sys.executable, "-m", "agentwatch.cli", "scaler", "--config", str(self.dir / "policy.yml")],
                         self.dir / "scaler.log", env=env, name="scaler",
                         ready=lambda: http_status(f"{self.url}/healthz") == 200, ready_timeout=30)

    def webhook(self, starts_at: str, token: str = SCALER_TOKEN) -> int:
        alert = {"status": "firing", "labels": {"alertname": "E2EPressure", "severity": "critical"},
                 "annotations": {}, "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
                 "fingerprint": f"e2e-{starts_at}"}
        body = {"version": "4", "status": "firing", "receiver": "scaler", "groupKey": "{}", "alerts": [alert],
                "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am"}
        req = urllib.request.Request(f"{self.url}/webhook", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


def _run(client, name: str, command: list[str], service: str, **limits: Any):
    return client.containers.run(
        "agent:local", command, detach=True, network_mode="none", name=name,
        labels={"com.docker.compose.project": "fleet", "com.docker.compose.service": service}, **limits)


@pytest.fixture(scope="module")
def stack(dockerd) -> Iterator[PrometheusProcess]:
    """A fleet with something in every panel: a steady, a growing and an OOM-killed container, a busy
    demo server and an unreachable one, a finished agent run, and a scaler that acted, failed and skipped."""
    client = dockerd.client
    containers = [
        _run(client, "e2e-agent-1", ["sleep", "600"], "agent", mem_limit="64m", nano_cpus=500_000_000),
        _run(client, "e2e-grow-1", GROWER, "agent", mem_limit="128m", shm_size="128m", nano_cpus=500_000_000),
    ]
    rules = sorted((ROOT / "alert-rules").glob("*.rules.yml"))
    demo = DemoProcess("--max-concurrency", "3").start()
    processes: list[ManagedProcess] = [demo]
    try:
        store = Path(tempfile.mkdtemp(prefix="aw-e2e-insights-")) / "insights.sqlite3"
        store.write_bytes(b"this is not a database" * 100)  # counted as a store error, replaced by a fresh one
        exporter = ExporterProcess(
            {"interval_seconds": 1, "docker": {"host": dockerd.host},
             "probes": [{"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": 1,
                         "container": "e2e-agent-1", "compose_service": "agent"},
                        {"name": "down", "url": f"http://127.0.0.1:{free_port()}", "interval_seconds": 1,
                         "timeout_seconds": 0.5}],
             "insights": {"window_seconds": 20, "min_samples": 3, "min_slope_bytes_per_second": 16384,
                          "db_path": str(store)}},
            env={KEY_ENV: KEY},
        ).start()
        processes.append(exporter)
        scaler = Scaler(demo.url).start()
        processes.append(scaler)
        prom = PrometheusProcess([f"127.0.0.1:{exporter.port}"], rule_files=rules)
        for job, port in (("agentwatch-scaler", scaler.port), ("agent-server", demo.port)):  # as compose does
            prom.config["scrape_configs"].append({"job_name": job,
                                                  "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]})
        prom.start()
        processes.append(prom)
        prom.wait_for_query("count(up == 1) == 3", timeout=60)
        # Everything that counts or observes happens from here on, inside the panels' rate() windows.
        demo.start_agent("sonnet", seconds=120)
        # Two runs that finish a few seconds apart: the first creates the duration series, the second
        # is an increase rate() can see (a series is born with its first observation already in it).
        demo.start_agent("haiku", seconds=1)
        demo.start_agent("haiku", seconds=5)
        containers.append(_run(client, "e2e-oom-1", OOM, "worker", mem_limit="32m", memswap_limit="32m"))
        assert scaler.webhook("2024-01-01T00:00:00Z", token="wrong-token") == 401
        assert scaler.webhook("2024-01-01T00:00:00Z") == 200  # acts: lowers concurrency, pages (fails)
        assert scaler.webhook("2024-01-01T00:00:00Z") == 200  # the same alert instance: duplicate
        prom.wait_for_query('agentwatch_scaler_actions_total{action="notify", result="failure"}', timeout=60)
        assert scaler.webhook("2024-01-01T00:05:00Z") == 200  # a new instance: lowering is cooling down,
        #                                                       paging fails again (a second action duration)
        for expr in ('agentwatch_container_memory_working_set_ratio{container="e2e-agent-1"}',
                     'agentwatch_agents_running{server="demo", model="sonnet"} == 1',
                     'sum(agentwatch_container_crashes_total{container="e2e-oom-1"}) > 0',
                     'ALERTS{alertname="AgentContainerOOMKilled", alertstate="firing"}',
                     'agentwatch_container_memory_projected_seconds_to_limit{container="e2e-grow-1"}',
                     'agentwatch_scaler_actions_total{action="notify", result="failure"} >= 2',
                     'sum(agentwatch_agent_runs_total{job="agent-server", model="haiku"}) >= 2'):
            prom.wait_for_query(expr, timeout=90)
        time.sleep(5)  # a few more samples for rate() and increase() over the panels' windows
        yield prom
    finally:
        for process in reversed(processes):
            process.stop()
        for container in containers:
            container.remove(force=True)


def _has_data(result: list[dict[str, Any]]) -> bool:
    """Some series with a real number (NaN is a gap on a Grafana panel, not data)."""
    for series in result:
        values = series.get("values") or [series.get("value")]
        if any(v and math.isfinite(float(v[1])) for v in values):
            return True
    return False


@pytest.mark.parametrize("item", PANEL_TARGETS, ids=lambda i: f"{i[0]}:{i[1]}:{i[2]['refId']}")
def test_dashboard_query_returns_data(stack, item):
    """Every panel query evaluates on a real Prometheus and shows data, as Grafana would ask for it."""
    board, title, target = item
    expr = substitute(target["expr"])
    if target.get("instant"):
        result = stack.query(expr)  # raises on a PromQL error
    else:
        end = time.time()
        result = stack.api("query_range", query=expr, start=f"{end - 120:.3f}", end=f"{end:.3f}", step="2")["result"]
    assert _has_data(result), f"{board}: {title}: no data for {expr}"


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


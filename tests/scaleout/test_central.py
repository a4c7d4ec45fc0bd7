"""Central alerting: Prometheus agents per node remote-write to one central Prometheus, which alerts.

Real processes on loopback: two exporters (two "nodes"), a Prometheus in agent mode beside each
(deploy/central/agent.yml with its node name, its exporter's port and 1 s intervals), one central
Prometheus with the remote-write receiver (deploy/central/central.yml with the repository's rules)
and an Alertmanager. A fleet rule with its threshold lowered fires at the centre on the agents'
data, naming both nodes, and reaches Alertmanager. The figures go to bench/results/central.md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from agentwatch.local.alertmanager import AlertmanagerProcess
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import ManagedProcess, free_port, http_status, wait_for
from agentwatch.local.prometheus import PrometheusProcess

pytestmark = [pytest.mark.slow, pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]
CENTRAL = ROOT / "deploy" / "central"
RESULTS = ROOT / "bench" / "results" / "central.md"
NODES = ("node-a", "node-b")
#: Only the fleet alert's threshold and delay are lowered, so it fires on an idle machine.
OVERRIDE = {"fleet_memory_pressure_ratio": 0.01, "fleet_memory_pressure_for": "1s"}


def agent_config(node: str, exporter_port: int, central_url: str) -> str:
    """deploy/central/agent.yml for one node: its name, its exporter's port, the centre, 1 s scrapes."""
    text = (CENTRAL / "agent.yml").read_text()
    for shipped, here in (("@NODE_NAME@:9847", f"@NODE_NAME@:{exporter_port}"), ("@NODE_NAME@", node),
                          ('"127.0.0.1:9847"', f'"127.0.0.1:{exporter_port}"'),
                          ("http://central-prometheus:9090", central_url),
                          ("scrape_interval: 15s", "scrape_interval: 1s")):
        assert shipped in text, f"deploy/central/agent.yml no longer has {shipped!r}"
        text = text.replace(shipped, here)
    return text


class AgentProcess(ManagedProcess):
    """``prometheus --enable-feature=agent`` with a rendered agent.yml."""

    def __init__(self, config: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "agent.yml").write_text(config)
        binary = shutil.which("prometheus") or "prometheus"
        super().__init__([binary, "--enable-feature=agent", f"--config.file={workdir / 'agent.yml'}",
                          f"--storage.agent.path={workdir / 'wal'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                         workdir / "agent.log", name="prometheus-agent",
                         ready=lambda: http_status(f"{self.url}/-/ready") == 200)


class CentralProcess(PrometheusProcess):
    """deploy/central/central.yml with the repository's rules (one threshold lowered) and the receiver on."""

    def __init__(self, rules: list[Path], alertmanager: str) -> None:
        super().__init__([], rule_files=rules, interval="1s", job="prometheus-central")
        shipped = yaml.safe_load((CENTRAL / "central.yml").read_text())
        assert shipped["scrape_configs"][0]["static_configs"][0]["targets"] == ["localhost:9090"]
        shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        shipped["rule_files"] = [str(p) for p in rules]
        shipped["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
        shipped["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{self.port}"]
        self.config = shipped

    def prepare(self) -> None:
        super().prepare()
        self.argv.append("--web.enable-remote-write-receiver")


@pytest.fixture(scope="module")
def central(dockerd):
    work = Path(tempfile.mkdtemp(prefix="aw-central-"))
    override = work / "thresholds.yml"
    override.write_text(yaml.safe_dump(OVERRIDE))
    subprocess.run([sys.executable, str(ROOT / "alert-rules" / "generate.py"), "--thresholds", str(override),
                    "--out-dir", str(work / "rules")], check=True, capture_output=True, timeout=60)
    am_config = work / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump({"route": {"receiver": "null", "group_wait": "0s"},
                                         "receivers": [{"name": "null"}]}))
    started: list[ManagedProcess] = []
    try:
        (work / "am").mkdir()
        alertmanager = AlertmanagerProcess(am_config, workdir=work / "am").start()
        started.append(alertmanager)
        centre = CentralProcess(sorted((work / "rules").glob("*.rules.yml")), f"127.0.0.1:{alertmanager.port}")
        started.append(centre.start())
        for node in NODES:
            exporter = ExporterProcess({"docker": {"host": dockerd.host}}, workdir=work / node / "exporter")
            started.append(exporter.start())
            config = agent_config(node, exporter.port, centre.url)
            started.append(AgentProcess(config, work / node / "agent").start())
        yield centre, alertmanager
    finally:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_the_centre_gets_every_node_and_alerts_on_the_fleet(central):
    centre, alertmanager = central
    def both(expr: str) -> list[dict]:
        return wait_for(lambda: (lambda r: r if len(r) == len(NODES) else None)(centre.query(expr)), 60,
                        interval=0.5, what=f"{expr} for every node")

    up = both('up{job="agentwatch"} == 1')
    assert sorted((r["metric"]["node"], r["metric"]["instance"].split(":")[0]) for r in up) == \
        [(n, n) for n in NODES], "each node's series carry its name in node and instance"
    nodes = both("node:agentwatch_host_memory_used:ratio")
    assert sorted(r["metric"]["node"] for r in nodes) == list(NODES), "the per-node rules run at the centre"

    def firing() -> list[dict]:
        return [a for a in centre.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "AgentFleetMemoryPressure" and a["state"] == "firing"]

    [alert] = wait_for(firing, 90, interval=1.0, what="AgentFleetMemoryPressure firing at the centre")
    assert "Nodes above it: node-a (" in alert["annotations"]["description"]
    assert ", node-b (" in alert["annotations"]["description"]

    def received() -> list[dict]:
        with urllib.request.urlopen(f"{alertmanager.url}/api/v2/alerts", timeout=5) as resp:
            return [a for a in json.loads(resp.read()) if a["labels"]["alertname"] == "AgentFleetMemoryPressure"]

    assert wait_for(received, 60, interval=1.0, what="the alert at Alertmanager")

    # Figures: what one node sends, and what the centre takes in.
    series = {r["metric"]["node"]: int(float(r["value"][1]))
              for r in centre.query('count by (node) ({job="agentwatch"})')}
    ingest = centre.wait_for_query('rate(prometheus_tsdb_head_samples_appended_total{job="prometheus-central"}[30s])')
    head = centre.query('prometheus_tsdb_head_series{job="prometheus-central"}')
    rss = centre.query('process_resident_memory_bytes{job="prometheus-central"}')
    write_results(series, float(ingest[0]["value"][1]), int(float(head[0]["value"][1])),
                  int(float(rss[0]["value"][1])))
    assert all(n > 50 for n in series.values()), series


def write_results(series: dict[str, int], ingest: float, head: int, rss: int) -> None:
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = "\n".join(f"| `{node}` | {count} | {count / 15:.0f} |" for node, count in sorted(series.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"""# Central alerting: per-node agents, one Prometheus ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)

Written by `tests/scaleout/test_central.py`. Machine: {os.cpu_count()} CPUs, {platform.system()} \
{platform.release()}; load average {load}. Two exporters (one private dockerd), a Prometheus agent
beside each (`deploy/central/agent.yml`), one central Prometheus 2.42 with the remote-write receiver
(`deploy/central/central.yml`) evaluating every rule, 1 s scrape and evaluation intervals.

| node | series sent | samples/s at the shipped 15 s interval |
| --- | --- | --- |
{rows}

At the centre (1 s intervals here, rules and its own scrape included): {ingest:.0f} samples/s
appended, {head} series in the head block, {rss / 2**20:.0f} MiB resident.
""")

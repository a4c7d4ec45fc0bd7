"""Generate the Grafana dashboard JSON from a short Python description.

Why code: panel ids, grid positions and the datasource reference are repetitive and easy to get
wrong by hand; the tests import ``PANELS`` to check every query against a real Prometheus.
Run ``python dashboards/build.py`` after editing; a test fails when the JSON is stale.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "agentwatch-fleet.json"
DS = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[str, ...]
    unit: str = "short"
    kind: str = "timeseries"
    legend: str = ""
    description: str = ""
    thresholds: tuple[float, ...] = ()


def _row(title: str, *panels: Panel) -> tuple[str, tuple[Panel, ...]]:
    return title, panels


SEL = 'instance=~"$instance"'
SVC = f'{SEL}, compose_service=~"$service"'

ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    _row(
        "Host",
        Panel("Host memory used", (f"agentwatch_host_memory_used_ratio{{{SEL}}}",), "percentunit", "gauge",
              thresholds=(0.8, 0.9), description="1 - available / total. Above 80% new agents risk OOM kills."),
        Panel("Host memory available", (f"agentwatch_host_memory_available_bytes{{{SEL}}}",), "bytes", "stat"),
        Panel("Docker engine up", (f"agentwatch_docker_up{{{SEL}}}",), "bool", "stat"),
        Panel("Agent processes", (f"sum(agentwatch_process_group_processes{{{SEL}}})",), "short", "stat"),
    ),
    _row(
        "Containers",
        Panel("Working set / limit", (f"agentwatch_container_memory_working_set_ratio{{{SVC}}}",), "percentunit",
              legend="{{container}}", thresholds=(0.8, 0.9),
              description="What the OOM killer compares with the limit: 90% is critical."),
        Panel("Working set", (f"agentwatch_container_memory_working_set_bytes{{{SVC}}}",
                              f"agentwatch_container_memory_limit_bytes{{{SVC}}} > 0"), "bytes",
              legend="{{container}}"),
        Panel("CPU used / limit", (
            f"rate(agentwatch_container_cpu_usage_seconds_total{{{SVC}}}[5m])"
            f" / on(instance, container) (agentwatch_container_cpu_limit_cores{{{SVC}}} > 0)",), "percentunit",
              legend="{{container}}", thresholds=(0.8,)),
        Panel("CPU throttled periods", (
            f"rate(agentwatch_container_cpu_throttled_periods_total{{{SVC}}}[5m])"
            f" / rate(agentwatch_container_cpu_periods_total{{{SVC}}}[5m])",), "percentunit", legend="{{container}}"),
        Panel("Restarts (1h)", (f"increase(agentwatch_container_restarts_total{{{SVC}}}[1h])",), "short",
              legend="{{container}}"),
        Panel("OOM kills and dies (1h)", (
            f"increase(agentwatch_container_oom_events_total{{{SVC}}}[1h])",
            f"increase(agentwatch_container_memory_oom_kills_total{{{SVC}}}[1h])",
            f"sum by (container, exit_code) (increase(agentwatch_container_dies_total{{{SVC}}}[1h]))"), "short",
              legend="{{container}} {{exit_code}}",
              description="oom events, kernel OOM kills in the cgroup (children included), dies by exit code."),
        Panel("Containers by state", (f"sum by (state) (agentwatch_container_state{{{SVC}}})",), "short",
              "bargauge", legend="{{state}}"),
        Panel("Last exit code / OOM killed", (f"agentwatch_container_last_exit_code{{{SVC}}}",
                                              f"agentwatch_container_oom_killed{{{SVC}}}"), "short", "table",
              legend="{{container}}"),
        Panel("Network", (f"rate(agentwatch_container_network_receive_bytes_total{{{SVC}}}[5m])",
                          f"rate(agentwatch_container_network_transmit_bytes_total{{{SVC}}}[5m])"), "Bps",
              legend="{{container}}"),
        Panel("Block IO", (f"rate(agentwatch_container_blkio_read_bytes_total{{{SVC}}}[5m])",
                           f"rate(agentwatch_container_blkio_write_bytes_total{{{SVC}}}[5m])"), "Bps",
              legend="{{container}}"),
    ),
    _row(
        "Agent processes",
        Panel("Processes by group", (f"agentwatch_process_group_processes{{{SEL}}}",), "short",
              legend="{{group}} {{model}}"),
        Panel("RSS by group", (f"agentwatch_process_group_memory_rss_bytes{{{SEL}}}",), "bytes",
              legend="{{group}} {{model}}"),
        Panel("Per-agent RSS p95", (
            "histogram_quantile(0.95, sum by (group, le) "
            f"(agentwatch_process_group_process_rss_bytes_bucket{{{SEL}}}))",
        ), "bytes", legend="{{group}}",
              description="What one agent costs: the basis of the recommended maximum concurrency."),
        Panel("CPU by group", (f"rate(agentwatch_process_group_cpu_seconds_total{{{SEL}}}[5m])",), "short",
              legend="{{group}}"),
        Panel("Oldest process age", (f"agentwatch_process_group_oldest_age_seconds{{{SEL}}}",), "s",
              legend="{{group}}"),
    ),
    _row(
        "Agent servers",
        Panel("Running agents by model", (f"agentwatch_agents_running{{{SEL}}}",), "short",
              legend="{{server}} {{model}}"),
        Panel("Max concurrency", (f"agentwatch_app_max_concurrency{{{SEL}}}",), "short", legend="{{server}}"),
        Panel("Agents stuck running", (f"sum by (server) (agentwatch_agents_stuck_running{{{SEL}}})",), "short",
              "stat", thresholds=(1,)),
        Panel("Agent run duration p50 / p95", (
            f"histogram_quantile(0.5, sum by (le) (rate(agentwatch_agent_run_duration_seconds_bucket{{{SEL}}}[1h])))",
            f"histogram_quantile(0.95, sum by (le) (rate(agentwatch_agent_run_duration_seconds_bucket{{{SEL}}}[1h])))",
        ), "s"),
        Panel("Probe success", (f"agentwatch_probe_success{{{SEL}}}",), "bool", legend="{{server}} {{endpoint}}"),
        Panel("Probe latency p99", (
            f"histogram_quantile(0.99, sum by (server, endpoint, le) "
            f"(rate(agentwatch_probe_duration_seconds_bucket{{{SEL}}}[5m])))",), "s",
              legend="{{server}} {{endpoint}}"),
        Panel("Pool utilisation", (
            f"agentwatch_pool_in_use{{{SEL}}} / (agentwatch_pool_max_size{{{SEL}}} > 0)",), "percentunit",
              legend="{{server}} {{pool}}", thresholds=(0.9,)),
        Panel("Pool waiting", (f"agentwatch_pool_waiting{{{SEL}}}",), "short", legend="{{server}} {{pool}}"),
        Panel("Error ratio", (
            f"rate(agentwatch_app_request_errors_total{{{SEL}}}[5m])"
            f" / (rate(agentwatch_app_requests_total{{{SEL}}}[5m]) > 0)",), "percentunit", legend="{{server}}",
              thresholds=(0.1,)),
        Panel("Health checks", (f"agentwatch_app_health_status{{{SEL}}} == 1",), "short", "table",
              legend="{{server}} {{check}} {{status}}"),
    ),
    _row(
        "Exporter",
        Panel("Collector success", (f"agentwatch_collector_success{{{SEL}}}",), "bool", legend="{{collector}}"),
        Panel("Collector duration (avg)", (
            f"rate(agentwatch_collector_duration_seconds_sum{{{SEL}}}[5m])"
            f" / rate(agentwatch_collector_duration_seconds_count{{{SEL}}}[5m])",), "s", legend="{{collector}}"),
        Panel("Collection cycle", (f"agentwatch_collection_cycle_duration_seconds{{{SEL}}}",), "s"),
    ),
)

PANELS: tuple[Panel, ...] = tuple(p for _, panels in ROWS for p in panels)


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict:
    steps = [{"color": "green", "value": None}]
    steps += [{"color": c, "value": v} for c, v in zip(("orange", "red", "dark-red"), panel.thresholds, strict=False)]
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": panel.legend,
             **({"format": "table", "instant": True} if panel.kind == "table" else {})}
            for i, expr in enumerate(panel.exprs)
        ],
    }


def _variable(name: str, query: str, label: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "refresh": 2, "includeAll": True,
            "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
            "query": {"query": query, "refId": name}, "definition": query, "sort": 1}


def build() -> dict:
    panels, pid, y = [], 1, 0
    for title, row in ROWS:
        panels.append({"id": pid, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, panel in enumerate(row):
            panels.append(_panel_json(panel, pid, (i % 3) * 8, y + (i // 3) * 8))
            pid += 1
        y += ((len(row) + 2) // 3) * 8
    return {
        "uid": "agentwatch-fleet",
        "title": "agentwatch: agent fleet",
        "description": "Containers, agent processes and agent servers watched by agentwatch.",
        "tags": ["agentwatch", "agents", "docker"],
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            _variable("instance", "label_values(agentwatch_build_info, instance)", "Exporter"),
            _variable("service", "label_values(agentwatch_container_info, compose_service)", "Compose service"),
        ]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == render() else 1)
    OUT.write_text(render())
    print(f"wrote {OUT}")

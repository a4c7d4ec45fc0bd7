"""The dashboard JSON is current, well formed, and queries only metrics agentwatch emits."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from agentwatch import catalog

ROOT = Path(__file__).resolve().parents[2]
DASH = ROOT / "dashboards"
sys.path.insert(0, str(DASH))
import build  # noqa: E402

PROMQL_WORDS = {"by", "on", "without", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "le", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Identifiers that are metric names: not functions, keywords, label names or quoted strings."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = m.group(0)
        after = expr[m.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        names.add(word)
    return names


def test_committed_json_is_current():
    assert (DASH / "agentwatch-fleet.json").read_text() == build.render(), "run python dashboards/build.py"


def test_structure():
    dash = json.loads((DASH / "agentwatch-fleet.json").read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance", "service"} <= variables
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= variables, f"{panel['title']}: unknown variables {used - variables}"


def test_every_query_uses_known_metrics():
    known = catalog.exposed_series_names()
    for panel in build.PANELS:
        for expr in panel.exprs:
            unknown = metric_names(expr) - known
            assert not unknown, f"{panel.title}: {expr} uses {unknown}"


def test_metric_name_extraction():
    expr = 'histogram_quantile(0.95, sum by (group, le) (rate(a_bucket{x="y(z)"}[5m]))) / on(instance) b > 0'
    assert metric_names(expr) == {"a_bucket", "b"}


def test_provisioning_files():
    dashboards = yaml.safe_load((DASH / "provisioning/dashboards/agentwatch.yml").read_text())
    assert dashboards["apiVersion"] == 1 and dashboards["providers"][0]["type"] == "file"
    sources = yaml.safe_load((DASH / "provisioning/datasources/prometheus.yml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"


def test_build_check_mode():
    assert subprocess.run([sys.executable, str(DASH / "build.py"), "--check"], timeout=60).returncode == 0

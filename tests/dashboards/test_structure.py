"""The dashboards are current, query only what agentwatch emits, follow the rules' thresholds, link up, and load."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from agentwatch import catalog
from tests.dashboards.boards import DASH, ROOT, build, committed, panels
from tests.dashboards.promql import Selector, selectors, variable_selectors

THRESHOLDS = yaml.safe_load((ROOT / "alert-rules/thresholds.yml").read_text())
RUNBOOKS = (ROOT / "docs/runbooks.md").read_text()


def recording_rules() -> set[str]:
    return {r["record"] for path in sorted((ROOT / "alert-rules").glob("*.rules.yml"))
            for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "record" in r}


def metric_names(found: list[Selector]) -> set[str]:
    """Selector names; a ``{__name__=~"a|b"}`` selector names each alternative."""
    out = set()
    for selector in found:
        if selector.name:
            out.add(selector.name)
        else:
            op, value = selector.matchers["__name__"]
            assert op in ("=", "=~") and re.fullmatch(r"[\w:|]+", value), selector
            out |= set(value.split("|"))
    return out


def steps(dashboards: dict[str, dict[str, Any]]) -> set[float]:
    return {s["value"] for d in dashboards.values() for p in panels(d)
            for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None}


def panel(dashboards: dict[str, dict[str, Any]], file: str, title: str) -> dict[str, Any]:
    found = [p for p in panels(dashboards[file]) if p["title"] == title]
    assert len(found) == 1, f"{file}: {title}"
    return found[0]


def test_committed_json_is_current():
    fresh = build.render_all()
    for name, text in fresh.items():
        assert (DASH / name).read_text() == text, f"{name} is stale: run python dashboards/build.py"
    on_disk = {p.name for p in DASH.glob("*.json")}
    assert on_disk == set(fresh), f"dashboards/ holds JSON the build does not write: {on_disk - set(fresh)}"


def test_build_check_mode(tmp_path):
    check = [sys.executable, str(DASH / "build.py"), "--check"]
    assert subprocess.run(check, timeout=120, capture_output=True).returncode == 0
    (tmp_path / "agentwatch-fleet.json").write_text("{}\n")
    stale = subprocess.run([*check, "--out-dir", str(tmp_path)], timeout=120, capture_output=True, text=True)
    assert stale.returncode == 1 and "agentwatch-fleet.json" in stale.stderr


def test_build_rejects_a_missing_threshold(tmp_path):
    broken = tmp_path / "thresholds.yml"
    broken.write_text(yaml.safe_dump({k: v for k, v in THRESHOLDS.items() if k != "container_memory_warning_ratio"}))
    out = subprocess.run([sys.executable, str(DASH / "build.py"), "--thresholds", str(broken), "--out-dir",
                          str(tmp_path)], timeout=120, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: container_memory_warning_ratio: not in the thresholds file"


def test_every_metric_a_panel_or_variable_uses_is_emitted():
    """Metric names come from the catalog or a recording rule (ALERTS is Prometheus's own)."""
    known = catalog.exposed_series_names() | recording_rules() | {"ALERTS"}
    for name, dashboard in committed().items():
        for p in panels(dashboard):
            for target in p["targets"]:
                unknown = metric_names(selectors(target["expr"])) - known
                assert not unknown, f"{name}: {p['title']}: {unknown}"
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                used = metric_names(variable_selectors(variable["query"])[0])
                assert used <= known, f"{name}: variable {variable['name']}: {used - known}"


def test_thresholds_come_from_the_rules_file():
    """Rebuilt with other thresholds, every coloured level moves: none is copied into the panels."""
    moved: dict[str, Any] = {}
    for key, value in THRESHOLDS.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            moved[key] = round(value * 0.731 + 0.0013, 6)
        elif key.endswith(("_window", "_horizon")):
            moved[key] = "97m"
    before, after = steps(build.build_all()), steps(build.build_all(moved))
    fixed = {1.0} | _exporter_levels()  # "any" (a stuck agent, a waiting caller) and 1 = up
    assert before - fixed, "the panels colour by the rules' thresholds"
    assert not (before - fixed) & after, f"levels that did not follow thresholds.yml: {(before - fixed) & after}"


def _exporter_levels() -> set[float]:
    """Levels that come from the exporter's own insights (its config defaults and scoring), not from the rules."""
    from agentwatch_dashboards.insights import score_steps

    from agentwatch.config import InsightsConfig

    return {InsightsConfig().imminent_seconds} | {v for v, _ in score_steps() if v is not None}


def test_memory_panels_draw_the_alert_levels():
    dashboards = committed()
    levels = [THRESHOLDS["container_memory_warning_ratio"], THRESHOLDS["container_memory_critical_ratio"]]
    memory = panel(dashboards, "agentwatch-fleet.json", "Memory against limit")
    assert [s["value"] for s in memory["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]] == levels
    assert memory["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    top = panel(dashboards, "agentwatch-fleet.json", "Top containers by memory ratio")
    assert [s["value"] for s in top["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]] == levels
    window = THRESHOLDS["crash_loop_window"]
    restarts = panel(dashboards, "agentwatch-fleet.json", f"Restarts and dies ({window})")
    assert f"container:agentwatch_container_restarts:increase{window}" in restarts["targets"][0]["expr"]
    assert restarts["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == (
        THRESHOLDS["crash_loop_restarts_count"])


def test_dashboards_link_to_each_other_and_to_the_runbooks():
    dashboards = committed()
    base = THRESHOLDS["runbook_base_url"].rstrip("/")
    anchors = {_anchor(h) for h in re.findall(r"^#+\s+(.+?)\s*$", RUNBOOKS, re.MULTILINE)}
    runbook_panels = 0
    for name, dashboard in dashboards.items():
        assert "agentwatch" in dashboard["tags"]
        links = {link["title"]: link for link in dashboard["links"]}
        others = links["agentwatch"]
        assert others["type"] == "dashboards" and others["tags"] == ["agentwatch"]
        assert others["includeVars"] and others["keepTime"]
        assert links["Runbooks"]["url"] == base
        for p in panels(dashboard):
            for link in p.get("links", []):
                url, _, anchor = link["url"].partition("#")
                assert url == base and anchor in anchors, f"{name}: {p['title']}: {link['url']}"
                runbook_panels += 1
    assert runbook_panels >= 20, "panels tied to an alert link its runbook"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_provisioning_loads_every_dashboard_from_the_mounted_folder():
    """Grafana's file provider reads every *.json under ``path``: compose mounts dashboards/ there."""
    provider = yaml.safe_load((DASH / "provisioning/dashboards/agentwatch.yml").read_text())
    assert provider["apiVersion"] == 1 and len(provider["providers"]) == 1
    spec = provider["providers"][0]
    assert spec["type"] == "file" and spec["folder"] and spec["options"]["foldersFromFilesStructure"] is False
    compose = yaml.safe_load((ROOT / "compose/docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 2)[:2] if v.endswith((":ro", ":rw")) else v.split(":", 1)
                  for v in compose["services"]["grafana"]["volumes"])
    assert mounts["../dashboards"] == spec["options"]["path"]
    assert mounts["../dashboards/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    for name in build.DASHBOARDS:
        assert (DASH / name).parent == DASH, name
        assert json.loads((DASH / name).read_text())["uid"]
    sources = yaml.safe_load((DASH / "provisioning/datasources/prometheus.yml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"


@pytest.mark.parametrize("key", ["container_memory_warning_ratio", "host_memory_critical_ratio",
                                 "pool_utilization_warning_ratio", "error_warning_ratio", "queue_backlog_count"])
def test_each_alert_level_appears_on_a_panel(key):
    assert THRESHOLDS[key] in steps(committed()), key

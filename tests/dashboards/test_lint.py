"""grafana/dashboard-linter's rules, as tests over the committed dashboards.

Each test names the linter rule it follows. Where agentwatch differs, the test says why: ALERTS and
per-instance recording rules carry no job label, and ``increase(...[$__range])`` is allowed in
instant tables that total the dashboard's time range.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.dashboards.boards import ROOT, UIDS, committed, panels, targets
from tests.dashboards.promql import PromQLError, selectors, variable_selectors

DASHBOARDS = committed()
NAMES = sorted(DASHBOARDS)
TARGETS = list(targets())

#: From dashboard-linter's panel-units-rule (the units agentwatch can use; all are in its list).
VALID_UNITS = {
    "none", "string", "short", "percent", "percentunit", "bytes", "decbytes", "bits", "kbytes", "mbytes", "gbytes",
    "binBps", "Bps", "bps", "KiBs", "MiBs", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurations", "dtdurationms",
    "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "bool", "bool_yes_no", "bool_on_off", "hertz",
}
#: Selectors allowed without job and instance matchers, and why.
NO_SCOPE = {
    "ALERTS": "ALERTS keeps only the labels each rule kept; filtering on job or instance would hide the alerts "
              "that aggregate them away (AgentwatchExporterDown has no instance).",
}


def _jobless_recording_rules() -> set[str]:
    """Recording rules whose ``by (...)`` or ``on (...)`` drops ``job`` (per instance: one exporter per host)."""
    groups = [g for path in sorted((ROOT / "alert-rules").glob("*.rules.yml"))
              for g in yaml.safe_load(path.read_text())["groups"]]
    out = set()
    for group in groups:
        for rule in group["rules"]:
            if "record" not in rule:
                continue
            lists = re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"])
            if lists and not any("job" in labels for labels in lists):
                out.add(rule["record"])
    return out


JOBLESS = _jobless_recording_rules()


def _ids(item: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    name, panel, target = item
    return f"{name.removesuffix('.json').removeprefix('agentwatch-')}:{panel['title']}:{target['refId']}"


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


# -- dashboard rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_template_datasource_rule(name):
    """template-datasource-rule: one datasource variable named ``datasource``, labelled ``Data source``."""
    found = [v for v in DASHBOARDS[name]["templating"]["list"] if v["type"] == "datasource"]
    assert len(found) == 1, found
    assert found[0]["name"] == "datasource" and found[0]["label"] == "Data source"
    assert found[0]["query"] == "prometheus"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("variable", ["job", "instance"])
def test_template_job_and_instance_rules(name, variable):
    """template-job-rule, template-instance-rule: a multi-select Prometheus query on $datasource, allValue .+"""
    found = _variables(DASHBOARDS[name]).get(variable)
    assert found, f"{name}: no {variable} variable"
    assert found["type"] == "query"
    assert found["datasource"]["uid"] in ("$datasource", "${datasource}")
    assert found["label"] == variable.title()
    assert found["multi"] is True and found["includeAll"] is True
    assert found["allValue"] == ".+"


@pytest.mark.parametrize("name", NAMES)
def test_template_on_time_change_reload_rule(name):
    """template-on-time-change-reload: query variables refresh when the time range changes."""
    for variable in DASHBOARDS[name]["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["refresh"] == 2, variable["name"]


@pytest.mark.parametrize("name", NAMES)
def test_template_unused_rule(name):
    """template-unused-rule: every query variable is used by some panel's query."""
    exprs = [t["expr"] for p in panels(DASHBOARDS[name]) for t in p["targets"]]
    for variable in _variables(DASHBOARDS[name]).values():
        if variable["type"] != "query":
            continue
        used = re.compile(rf"\$({variable['name']})\b|\$\{{{variable['name']}(:[^}}]+)?\}}")
        assert any(used.search(e) for e in exprs), f"{name}: variable {variable['name']} is used by no panel"


@pytest.mark.parametrize("name", NAMES)
def test_template_label_promql_rule(name):
    """template-label-promql-rule: variable queries are label_values() over a scoped selector."""
    variables = _variables(DASHBOARDS[name])
    for variable in variables.values():
        if variable["type"] != "query":
            continue
        found, _label = variable_selectors(variable["query"])
        assert found, variable["query"]
        for selector in found:
            used = set(re.findall(r"\$(\w+)", str(selector.matchers)))
            assert used <= set(variables), f"{variable['name']} uses unknown variables {used - set(variables)}"
        if variable["name"] != "job":
            assert "job" in found[0].matchers, f"{variable['name']}: its query should follow $job"


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_identity_and_layout(name):
    """Stable uid (bookmarks), unique panel ids, refIds per panel, panels inside the 24-column grid."""
    dashboard = DASHBOARDS[name]
    assert dashboard["uid"] == UIDS[name]
    assert dashboard["title"].startswith("agentwatch: ") and dashboard["description"]
    assert dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]] + [q["id"] for p in dashboard["panels"] for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)) and all(i > 0 for i in ids)
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(refs), panel["title"]
    titles = [p["title"] for p in panels(dashboard)]
    assert len(titles) == len(set(titles)), "panel titles are unique within a dashboard"


def test_uids_and_titles_are_unique_across_the_set():
    assert sorted(DASHBOARDS) == sorted(UIDS)
    assert len({d["title"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)


# -- panel rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_panel_datasource_rule(name):
    """panel-datasource-rule: every panel and target uses the templated datasource."""
    for panel in panels(DASHBOARDS[name]):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("name", NAMES)
def test_panel_title_description_rule(name):
    """panel-title-description-rule: every panel has a title and a description (of some substance)."""
    for panel in panels(DASHBOARDS[name]):
        assert panel.get("title"), panel
        assert len(panel.get("description", "")) >= 20, f"{panel['title']}: no real description"


@pytest.mark.parametrize("name", NAMES)
def test_panel_units_rule(name):
    """panel-units-rule: every panel (not only the kinds the linter checks) has a valid unit."""
    for panel in panels(DASHBOARDS[name]):
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in VALID_UNITS, f"{panel['title']}: unit {unit!r}"


@pytest.mark.parametrize("name", NAMES)
def test_panel_no_targets_rule(name):
    """panel-no-targets-rule: every panel queries something."""
    for panel in panels(DASHBOARDS[name]):
        assert panel["targets"], panel["title"]


# -- target rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", TARGETS, ids=_ids)
def test_target_job_and_instance_rules(item):
    """target-job-rule, target-instance-rule: every selector has job=~"$job" and instance=~"$instance"."""
    _, _, target = item
    for selector in selectors(target["expr"]):
        if selector.name in NO_SCOPE:
            continue
        assert selector.matchers.get("instance") == ("=~", "$instance"), f"{selector.name} in {target['expr']}"
        if selector.name in JOBLESS:
            assert "job" not in selector.matchers
            continue
        assert selector.matchers.get("job") == ("=~", "$job"), f"{selector.name} in {target['expr']}"


@pytest.mark.parametrize("item", TARGETS, ids=_ids)
def test_target_rate_interval_rule(item):
    """target-rate-interval-rule: ranges are $__rate_interval; increase() over $__range only in instant totals."""
    _, panel, target = item
    for selector in selectors(target["expr"]):
        if selector.range is None:
            continue
        if selector.range == "$__range":
            assert selector.function == "increase" and target.get("instant"), target["expr"]
            continue
        assert selector.range == "$__rate_interval", f"{panel['title']}: [{selector.range}] in {target['expr']}"
        assert selector.function in ("rate", "irate", "increase"), target["expr"]


@pytest.mark.parametrize("item", TARGETS, ids=_ids)
def test_target_counter_agg_rule(item):
    """target-counter-agg-rule: a counter (``_total``) is only read through rate, irate or increase."""
    _, _, target = item
    for selector in selectors(target["expr"]):
        if selector.name.endswith("_total"):
            assert selector.range and selector.function in ("rate", "irate", "increase"), target["expr"]


def test_target_expressions_parse():
    """target-promql-rule, in part: every query lexes (a real Prometheus evaluates them in tests/e2e)."""
    for name, panel, target in TARGETS:
        assert selectors(target["expr"]), f"{name}: {panel['title']}: no selector in {target['expr']}"


# -- the lexer the rules rely on ----------------------------------------------------------------------


def test_selector_lexer_finds_ranges_calls_and_matchers():
    expr = ('histogram_quantile(0.95, sum by (group, le) (rate(a_bucket{x="y(z})", job=~"$job"}[$__rate_interval])))'
            ' / on (instance) group_left () b > 0 or sum(increase(c_total[$__range])) by (d)')
    found = {s.name: s for s in selectors(expr)}
    assert set(found) == {"a_bucket", "b", "c_total"}
    assert found["a_bucket"].matchers == {"x": ("=", "y(z})"), "job": ("=~", "$job")}
    assert found["a_bucket"].range == "$__rate_interval" and found["a_bucket"].function == "rate"
    assert found["b"].range is None and found["b"].function is None
    assert found["c_total"].function == "increase" and found["c_total"].range == "$__range"
    aggregated = selectors('sum by (state) (m{a="b"})')
    assert [(s.name, s.function) for s in aggregated] == [("m", "sum")]
    with pytest.raises(PromQLError):
        selectors("rate(x[5m]")


def test_variable_query_lexer():
    found, label = variable_selectors('label_values(agentwatch_build_info{job=~"$job"}, instance)')
    assert label == "instance" and found[0].name == "agentwatch_build_info"
    with pytest.raises(PromQLError):
        variable_selectors("query_result(up)")

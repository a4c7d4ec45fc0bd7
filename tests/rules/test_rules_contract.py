"""Cross-checks: every alert is tested firing and silent, has a runbook, and uses only real metrics."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import yaml

from agentwatch import catalog
from tests.rules.helpers import (
    PROMTOOL_TESTS,
    RULES_DIR,
    alerts,
    label_names,
    metric_names,
    recordings,
    runbook_anchors,
    seconds,
    selector_labels,
)

RUNBOOK_BASE = yaml.safe_load((RULES_DIR / "thresholds.yml").read_text())["runbook_base_url"]
#: Alerts on an event (a counter increase): a `for:` would only delay them.
EVENT_ALERTS = {"AgentContainerOOMKilled", "AgentwatchScalerActionsFailing"}
#: Series Prometheus itself provides.
BUILTIN_SERIES = {"up"}
#: Labels every series gets from the scrape, and the ones rules add or histograms carry.
SCRAPE_LABELS = {"instance", "job", "node"}  # node: the Swarm/Kubernetes scrape configs (deploy/)
EXTRA_LABELS = {"le", "quantile", "model", "service"}  # model: the process matchers' (?P<model>) group;
# service: made by scaleout.rules.yml from compose_service or a Swarm task's container name

ALERT_NAMES = [a["alert"] for a in alerts()]


def _cases() -> dict[str, list[tuple[str, int, float, bool]]]:
    """alertname -> (test file, test group index, eval time in s, fires?) for every case."""
    cases: dict[str, list[tuple[str, int, float, bool]]] = defaultdict(list)
    for path in PROMTOOL_TESTS:
        for index, group in enumerate(yaml.safe_load(path.read_text())["tests"]):
            for case in group.get("alert_rule_test", []):
                cases[case["alertname"]].append(
                    (path.name, index, seconds(case["eval_time"]), bool(case.get("exp_alerts"))))
    return cases


CASES = _cases()


def test_there_are_alerts_and_recordings():
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES)) >= 20
    assert len(recordings()) >= 10


def test_promtool_tests_only_name_real_alerts():
    assert set(CASES) <= set(ALERT_NAMES), set(CASES) - set(ALERT_NAMES)


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_is_tested_firing_and_silent(rule):
    name = rule["alert"]
    cases = CASES.get(name, [])
    firing = [c for c in cases if c[3]]
    silent = [c for c in cases if not c[3]]
    assert firing, f"{name}: no promtool case where it fires"
    assert silent, f"{name}: no promtool case where it stays silent"
    if seconds(rule.get("for")) > 0:
        # Silent before `for:` elapses: a silent case earlier than a firing case of the same data.
        assert any(s[:2] == f[:2] and s[2] < f[2] and f[2] - s[2] <= seconds(rule["for"])
                   for s in silent for f in firing), f"{name}: no silent case before `for:` elapses"


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_shape(rule):
    name = rule["alert"]
    assert re.fullmatch(r"(?:[A-Z][a-z0-9]+|OOM|CPU)+", name), f"{name}: alert names are CamelCase"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert set(rule["annotations"]) >= {"summary", "description", "runbook_url"}
    assert "$value" in rule["annotations"]["description"] or name in {
        "AgentServerUnresponsive", "AgentServerNotReady", "AgentHealthCheckFailing", "AgentContainerUnhealthy",
        "AgentwatchExporterDown", "AgentwatchCollectorFailing", "AgentwatchDockerDown", "AgentwatchDockerEventsDown",
    }, f"{name}: the description shows the live value"  # the listed ones are 0/1 states: the value says nothing
    if name not in EVENT_ALERTS:
        assert seconds(rule.get("for")) > 0, f"{name}: an alert that can flap needs a `for:`"


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_runbook_section_exists(rule):
    url = rule["annotations"]["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == RUNBOOK_BASE
    assert anchor == rule["alert"].lower()
    assert anchor in runbook_anchors(), f"docs/runbooks.md has no heading for {rule['alert']}"


def test_warning_critical_twins_share_a_family():
    families: dict[str, set[str]] = defaultdict(set)
    for rule in alerts():
        if "alert_family" in rule["labels"]:
            families[rule["labels"]["alert_family"]].add(rule["labels"]["severity"])
    assert families, "no alert_family labels"
    for family, severities in families.items():
        assert severities == {"warning", "critical"}, f"{family}: a family needs a warning and a critical alert"


RULES = [*recordings(), *alerts()]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.get("alert") or r["record"])
def test_rule_uses_only_catalog_metrics(rule):
    exposed = catalog.exposed_series_names()
    recorded = {r["record"] for r in recordings()}
    used = metric_names(rule["expr"])
    assert used, f"no metric found in {rule['expr']!r}"
    unknown = used - exposed - recorded - BUILTIN_SERIES
    assert not unknown, f"not in agentwatch.catalog: {sorted(unknown)}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.get("alert") or r["record"])
def test_rule_uses_only_real_labels(rule):
    known = {label for spec in catalog.ALL for label in spec.labels} | SCRAPE_LABELS | EXTRA_LABELS
    assert label_names(rule["expr"]) <= known, label_names(rule["expr"]) - known
    by_series = {name: spec for spec in catalog.ALL for name in spec.exposed_names}
    for series, matched in selector_labels(rule["expr"]):
        if series in by_series:
            allowed = set(by_series[series].labels) | SCRAPE_LABELS
            if series.endswith("_bucket"):
                allowed.add("le")
            assert matched <= allowed, f"{series} has no label {sorted(matched - allowed)}"


def test_promql_reader_finds_names_and_skips_the_rest():
    expr = ('sum by (instance, le) (rate(foo_bucket{group=~"a(b)"}[5m] offset 1m)) '
            '/ on (instance) group_left () bar:baz:ratio > 0.5e3 and absent(up{job="x"}) unless inf')
    assert metric_names(expr) == {"foo_bucket", "bar:baz:ratio", "up"}
    assert label_names(expr) == {"instance", "le", "group", "job"}
    assert selector_labels(expr) == [("foo_bucket", {"group"}), ("up", {"job"})]


def test_readme_table_lists_every_alert():
    readme = (RULES_DIR.parent / "README.md").read_text()
    section = readme.partition("<!-- BEGIN alerts -->")[2].partition("<!-- END alerts -->")[0]
    listed = set(re.findall(r"^\| `(\w+)` \| (?:warning|critical) \|", section, flags=re.M))
    assert listed == set(ALERT_NAMES)
    severities = dict(re.findall(r"^\| `(\w+)` \| (warning|critical) \|", section, flags=re.M))
    assert severities == {a["alert"]: a["labels"]["severity"] for a in alerts()}

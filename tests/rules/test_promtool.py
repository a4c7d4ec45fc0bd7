"""The rules load in the real promtool, their unit tests pass, and the generated files are current."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import yaml

from tests.rules.helpers import PROMTOOL_TESTS, RULE_FILES, RULES_DIR, binary, run

_spec = importlib.util.spec_from_file_location("aw_generate_rules", RULES_DIR / "generate.py")
generate = importlib.util.module_from_spec(_spec)
sys.modules["aw_generate_rules"] = generate
_spec.loader.exec_module(generate)


def test_rule_files_exist():
    assert {p.name for p in RULE_FILES} == {"alerts.rules.yml", "recording.rules.yml", "scaleout.rules.yml"}
    assert len(PROMTOOL_TESTS) >= 5


def test_promtool_check_rules():
    proc = run(binary("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(RULE_FILES)


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file):
    proc = run(binary("promtool"), "test", "rules", test_file.name, cwd=test_file.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_committed_rules_equal_generated():
    generated = generate.generate()
    assert set(generated) == {p.name for p in RULE_FILES}
    for name, text in generated.items():
        assert (RULES_DIR / name).read_text() == text, f"{name} is stale: run python alert-rules/generate.py"
    proc = run(sys.executable, str(RULES_DIR / "generate.py"), "--check")
    assert proc.returncode == 0, proc.stderr


def test_every_threshold_is_used():
    values = generate.load_values()
    used = generate.used_keys()
    raw = yaml.safe_load(generate.DEFAULTS.read_text())
    def forms(key: str) -> set[str]:
        return {key, key.removesuffix("_ratio") + "_percent", key + "_in_seconds"}

    dead = [k for k in raw if not forms(k) & used]
    assert not dead, f"thresholds no template uses: {dead}"
    assert used <= set(values), f"placeholders without a threshold: {used - set(values)}"


def test_override_changes_thresholds_and_still_loads(tmp_path):
    override = tmp_path / "mine.yml"
    override.write_text("container_memory_warning_ratio: 0.75\ncontainer_memory_warning_for: 15m\n"
                        "exporter_job: agents-exporter\nconcurrency_safety_margin_ratio: 0.2\n")
    out = tmp_path / "rules"
    proc = run(sys.executable, str(RULES_DIR / "generate.py"), "--thresholds", str(override), "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    alerts = {r["alert"]: r for g in yaml.safe_load((out / "alerts.rules.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    near = alerts["AgentContainerMemoryNearLimit"]
    assert near["expr"].endswith("> 0.75") and near["for"] == "15m"
    assert "75%" in near["annotations"]["summary"] and "for 15m" in near["annotations"]["description"]
    assert 'up{job="agents-exporter"}' in alerts["AgentwatchExporterDown"]["expr"]
    assert "* 0.2)" in (out / "recording.rules.yml").read_text()
    check = run(binary("promtool"), "check", "rules", *map(str, sorted(out.glob("*.rules.yml"))))
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(("content", "message"), [
    ("container_memory_warning_ratio: 80\n", "container_memory_warning_ratio: expected a number in (0, 1] (got 80)"),
    ("crash_loop_for: 5 minutes\n", "crash_loop_for: expected a Prometheus duration"),
    ("crash_loop_restarts_count: 0\n", "crash_loop_restarts_count: expected a positive integer"),
    ("no_such_threshold: 1\n", "no_such_threshold: unknown threshold"),
    ('agent_process_groups: "a\\"b"\n', "agent_process_groups: expected a non-empty string without quotes"),
    ("agent_process_groups: '('\n", "agent_process_groups: expected a regular expression"),
    ("runbook_base_url: ftp://x\n", "runbook_base_url: expected an http(s) URL"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_override_is_a_clear_error(tmp_path, content, message):
    override = tmp_path / "bad.yml"
    override.write_text(content)
    proc = run(sys.executable, str(RULES_DIR / "generate.py"), "--thresholds", str(override),
               "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert message in proc.stderr and str(override) in proc.stderr
    assert not (tmp_path / "out").exists(), "nothing is written on an error"


def test_unknown_placeholder_is_an_error():
    with pytest.raises(generate.ThresholdError, match=r"x.rules.yml.in: \$\{nope\}: no such threshold"):
        generate.render("expr: up > ${nope}\n", generate.load_values(), "x.rules.yml.in")

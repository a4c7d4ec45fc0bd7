"""The Alertmanager config: rendered with dummy secrets, checked by amtool, routed as intended."""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from agentwatch import alerting
from tests.rules.helpers import AM_DIR, AM_TEMPLATE, ROOT, alerts, binary, run

DISCORD = "https://discord.com/api/webhooks/123456/dummy-discord-token-for-tests"
SLACK = "https://hooks.slack.com/services/T000/B000/dummy-slack-token"
TOKEN = "dummy-scaler-token-0123456789"
#: The alerts the scaler can act on (lower concurrency, drain, resize, restart, scale).
SCALER_ALERTS = {
    "AgentHostMemoryHigh", "AgentHostMemoryCritical", "AgentHostMemoryExhausted",
    "AgentContainerMemoryNearLimit", "AgentContainerMemoryCritical", "AgentContainerMemoryFillingUp",
    "AgentContainerOOMKilled", "AgentContainerCrashLooping", "AgentContainerRetriesExhausted",
    "AgentContainerCPUHigh", "AgentConcurrencyAboveRecommended", "AgentStuckRunning",
    "AgentPoolExhausted", "AgentPoolUtilizationHigh", "AgentQueueBacklog",
}


def render_cli(out, env, *args):
    """Run the renderer as the CLI runs it, in a child process, with only ``env``."""
    code = "import sys; from agentwatch.alerting import main; sys.exit(main(sys.argv[1:]))"
    full_env = {"PATH": os.environ["PATH"], **env}
    return subprocess.run([sys.executable, "-c", code, "--template", str(AM_TEMPLATE), "--out", str(out), *args],
                          capture_output=True, text=True, env=full_env, timeout=60, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The config rendered from the template with dummy secrets, in a private temp dir."""
    base = tmp_path_factory.mktemp("am")
    secrets = base / "secrets"
    secrets.mkdir()
    (secrets / "slack-webhook-url").write_text(SLACK + "\n")
    (secrets / "agentwatch-scaler-token").write_text(TOKEN + "\n")
    (base / "discord-url").write_text(DISCORD + "\n")
    out = base / "alertmanager.yml"
    proc = render_cli(out, {"AGENTWATCH_DISCORD_WEBHOOK_URL_FILE": str(base / "discord-url")},
                      "--set", f"AGENTWATCH_SECRETS_DIR={secrets}", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert DISCORD not in proc.stdout + proc.stderr
    return out


def test_rendered_config_passes_amtool(rendered):
    proc = run(binary("amtool"), "check-config", str(rendered))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "4 receivers" in proc.stdout


def test_rendered_file_is_private_and_complete(rendered):
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    config = yaml.safe_load(rendered.read_text())
    assert "${" not in rendered.read_text()
    secrets_dir = rendered.parent / "secrets"
    assert config["global"]["slack_api_url_file"] == str(secrets_dir / "slack-webhook-url")
    receivers = {r["name"]: r for r in config["receivers"]}
    hook = receivers["scaler"]["webhook_configs"][0]
    assert hook["url"] == "http://127.0.0.1:9848/webhook"
    assert hook["http_config"]["authorization"]["credentials_file"] == str(secrets_dir / "agentwatch-scaler-token")
    assert receivers["critical"]["discord_configs"][0]["webhook_url"] == DISCORD
    assert config["templates"] == [str((AM_DIR / "templates").resolve() / "*.tmpl")]
    assert config["route"]["group_by"] == ["alertname", "compose_service", "server"]


def test_template_in_repo_holds_no_secret():
    text = AM_TEMPLATE.read_text()
    assert "hooks.slack.com" not in text and "discord.com/api/webhooks" not in text
    assert "${AGENTWATCH_DISCORD_WEBHOOK_URL}" in text


def routes(config, *labels):
    proc = run(binary("amtool"), "config", "routes", "test", f"--config.file={config}", *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().split(",")


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_every_alert_routes_where_intended(rendered, rule):
    name, severity = rule["alert"], rule["labels"]["severity"]
    expected = ["scaler"] if name in SCALER_ALERTS else []
    if severity == "critical":
        expected.append("critical")
    elif name.startswith("Agentwatch"):
        expected.append("discord-ops")
    else:
        expected.append("slack-warning")
    labels = [f"{k}={v}" for k, v in {**rule["labels"], "alertname": name, "container": "agent-1"}.items()]
    assert routes(rendered, *labels) == expected
    # And amtool's own verification agrees.
    proc = run(binary("amtool"), "config", "routes", "test", f"--config.file={rendered}",
               f"--verify.receivers={','.join(expected)}", *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scaler_policy_alerts_reach_the_scaler(rendered):
    """Every alert the example scaler policy names, and that the rules define, goes to the scaler."""
    policy = yaml.safe_load((ROOT / "compose" / "scaler-policy.yml").read_text())
    defined = {r["alert"]: r for r in alerts()}
    named = {r["alertname"] for r in policy["rules"] if r.get("alertname") in defined}
    assert named, "the example policy names none of the alerts"
    for name in named:
        assert "scaler" in routes(rendered, f"alertname={name}", f"severity={defined[name]['labels']['severity']}")


def test_unknown_alerts_fall_back_to_slack(rendered):
    assert routes(rendered, "alertname=SomethingElse") == ["slack-warning"]


def test_inhibition_rules_pair_twins(rendered):
    config = yaml.safe_load(rendered.read_text())
    twin = config["inhibit_rules"][0]
    assert twin["source_matchers"] == ['severity="critical"', 'alert_family=~".+"']
    assert twin["target_matchers"] == ['severity="warning"', 'alert_family=~".+"']
    assert "alert_family" in twin["equal"] and "container" in twin["equal"]


def test_notification_templates_show_value_target_and_runbook(tmp_path):
    rule = next(r for r in alerts() if r["alert"] == "AgentContainerMemoryCritical")
    data = {
        "receiver": "critical", "status": "firing", "externalURL": "http://127.0.0.1:9093",
        "groupLabels": {"alertname": rule["alert"]},
        "commonLabels": {"alertname": rule["alert"], "severity": "critical", "compose_service": "agent"},
        "commonAnnotations": {},
        "alerts": [{
            "status": "firing", "fingerprint": "f1", "generatorURL": "", "startsAt": "2024-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "labels": {"alertname": rule["alert"], "severity": "critical", "container": "agent-7",
                       "compose_service": "agent", "instance": "host-a:9847"},
            "annotations": {"summary": "Container agent-7 is above 90% of its memory limit; an OOM kill is near.",
                            "description": "working set at 93.5% of its memory limit",
                            "runbook_url": rule["annotations"]["runbook_url"]},
        }],
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    proc = run(binary("amtool"), "template", "render", f"--template.glob={AM_DIR / 'templates' / '*.tmpl'}",
               f"--template.data={tmp_path / 'data.json'}",
               '--template.text={{ template "agentwatch.title" . }}|{{ template "agentwatch.color" . }}\n'
               '{{ template "agentwatch.text" . }}')
    assert proc.returncode == 0, proc.stderr
    title, _, body = proc.stdout.partition("\n")
    assert title == "[FIRING:1] AgentContainerMemoryCritical (critical) service agent|danger"
    assert "93.5%" in body and "container: agent-7" in body and "host: host-a:9847" in body
    assert f"runbook: {rule['annotations']['runbook_url']}" in body


# --- the renderer refuses what would leak or break ---------------------------------------------

# --- every channel is optional ------------------------------------------------------------------

#: One alert of each routing class: (alertname, severity).
ROUTING_CLASSES = [
    ("AgentContainerMemoryCritical", "critical"),    # the scaler acts on it; people are told at once
    ("AgentContainerMemoryNearLimit", "warning"),    # the scaler acts on it; a warning for people
    ("AgentwatchCollectorFailing", "warning"),       # agentwatch's own warning: the ops channel
    ("AgentErrorRatioHigh", "warning"),              # a plain warning
    ("SomethingElse", "none"),                       # no route of its own
]


def expected_receivers(name: str, severity: str, channels: set[str]) -> list[str]:
    """Where an alert goes when only ``channels`` are configured, written out from the template's intent."""
    out = ["scaler"] if "scaler" in channels and name in SCALER_ALERTS else []
    if severity == "critical" and channels & {"slack", "discord"}:
        return [*out, "critical"]
    if severity == "warning" and name.startswith("Agentwatch") and "discord" in channels:
        return [*out, "discord-ops"]
    if severity == "warning" and "slack" in channels:
        return [*out, "slack-warning"]
    return out or ["slack-warning" if "slack" in channels else "nobody"]


COMBINATIONS = [set(c) for n in range(4) for c in itertools.combinations(("scaler", "slack", "discord"), n)]


@pytest.mark.parametrize("channels", COMBINATIONS, ids=lambda c: "+".join(sorted(c)) or "none")
def test_every_combination_of_channels_renders_valid_and_routes(tmp_path, channels):
    """A channel is on when configured where the renderer runs (its file, or Discord's URL); else left out."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    if "slack" in channels:
        (secrets / "slack-webhook-url").write_text(SLACK + "\n")
    if "scaler" in channels:
        (secrets / "agentwatch-scaler-token").write_text(TOKEN + "\n")
    env = {"AGENTWATCH_DISCORD_WEBHOOK_URL": DISCORD} if "discord" in channels else {}
    out = tmp_path / "am.yml"
    proc = render_cli(out, env, "--set", f"AGENTWATCH_SECRETS_DIR={secrets}", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    for channel in {"scaler", "slack", "discord"} - channels:
        assert f"{channel} left out:" in proc.stderr, proc.stderr
    config = yaml.safe_load(out.read_text())
    kinds = {k for r in config["receivers"] for k in r if k.endswith("_configs")}
    assert kinds == {alerting.CHANNELS[c] for c in channels}
    assert ("slack_api_url_file" in config["global"]) == ("slack" in channels)
    for name, severity in ROUTING_CLASSES:
        labels = [f"alertname={name}", f"severity={severity}", "container=agent-1"]
        assert routes(out, *labels) == expected_receivers(name, severity, channels), (name, severity)


def test_discord_is_optional_and_says_so(tmp_path):
    proc = render_cli(tmp_path / "am.yml", {})
    assert proc.returncode == 0, proc.stderr
    assert "discord left out: AGENTWATCH_DISCORD_WEBHOOK_URL is not set" in proc.stderr
    assert "discord" not in (tmp_path / "am.yml").read_text().split("# channels:")[1].splitlines()[0]


def test_a_channel_asked_for_must_be_configured(tmp_path):
    proc = render_cli(tmp_path / "am.yml", {}, "--channels", "discord")
    assert proc.returncode == 2 and "AGENTWATCH_DISCORD_WEBHOOK_URL is required" in proc.stderr
    assert not (tmp_path / "am.yml").exists()
    proc = render_cli(tmp_path / "am.yml", {}, "--channels", "scaler,email")
    assert proc.returncode == 2 and "--channels: email not in the template" in proc.stderr


def test_channels_named_explicitly_are_kept_without_their_files(tmp_path):
    """Rendered where Alertmanager's own files are not mounted (a separate render step)."""
    proc = render_cli(tmp_path / "am.yml", {}, "--set", f"AGENTWATCH_SECRETS_DIR={tmp_path / 'absent'}",
                      "--channels", "scaler,slack", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {r["name"] for r in yaml.safe_load((tmp_path / "am.yml").read_text())["receivers"]}
    assert names == {"scaler", "critical", "slack-warning"}


def test_secret_on_the_command_line_is_refused(tmp_path):
    proc = render_cli(tmp_path / "am.yml", {}, "--set", f"AGENTWATCH_DISCORD_WEBHOOK_URL={DISCORD}")
    assert proc.returncode == 2 and "is a secret" in proc.stderr
    assert DISCORD not in proc.stderr + proc.stdout


def test_world_readable_mode_is_refused(tmp_path):
    proc = render_cli(tmp_path / "am.yml", {"AGENTWATCH_DISCORD_WEBHOOK_URL": DISCORD}, "--mode", "0644")
    assert proc.returncode == 2 and "gives others access" in proc.stderr
    assert not (tmp_path / "am.yml").exists()


def test_group_readable_mode_is_allowed(tmp_path):
    proc = render_cli(tmp_path / "am.yml", {"AGENTWATCH_DISCORD_WEBHOOK_URL": DISCORD}, "--mode", "0640")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "am.yml").stat().st_mode) == 0o640


def test_output_inside_the_repo_is_refused():
    out = ROOT / "alert-rules" / "alertmanager" / "rendered-by-test.yml"
    proc = render_cli(out, {"AGENTWATCH_DISCORD_WEBHOOK_URL": DISCORD})
    assert proc.returncode == 2 and "inside the git work tree" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("bad", [
    'https://discord.com/x" \nroute: {}',      # YAML injection
    "file:///etc/passwd",
    "https://discord.com/api webhooks",
])
def test_bad_url_is_refused_without_showing_it(tmp_path, bad):
    proc = render_cli(tmp_path / "am.yml", {"AGENTWATCH_DISCORD_WEBHOOK_URL": bad})
    assert proc.returncode == 2
    assert "AGENTWATCH_DISCORD_WEBHOOK_URL: expected an http(s) URL" in proc.stderr and "(hidden)" in proc.stderr
    assert bad not in proc.stderr


def test_unreadable_secret_file_is_a_clear_error(tmp_path):
    proc = render_cli(tmp_path / "am.yml", {"AGENTWATCH_DISCORD_WEBHOOK_URL_FILE": str(tmp_path / "missing")})
    assert proc.returncode == 2 and "AGENTWATCH_DISCORD_WEBHOOK_URL_FILE: cannot read" in proc.stderr


def test_rerender_replaces_atomically(tmp_path):
    out = tmp_path / "am.yml"
    for url in (DISCORD, DISCORD + "-rotated"):
        proc = render_cli(out, {"AGENTWATCH_DISCORD_WEBHOOK_URL": url})
        assert proc.returncode == 0, proc.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(out.read_text())["receivers"]}
    assert receivers["critical"]["discord_configs"][0]["webhook_url"].endswith("-rotated")
    assert [p.name for p in tmp_path.iterdir()] == ["am.yml"], "no temp file left behind"


def test_resolve_prefers_set_then_env_then_file_then_default(tmp_path):
    (tmp_path / "dir").write_text("/from/file\n")
    names = {"AGENTWATCH_SECRETS_DIR"}
    fallback = {"AGENTWATCH_SECRETS_DIR": "/default"}
    file_env = {"AGENTWATCH_SECRETS_DIR_FILE": str(tmp_path / "dir")}
    assert alerting.resolve(names, {}, {}, fallback) == {"AGENTWATCH_SECRETS_DIR": "/default"}
    assert alerting.resolve(names, {}, file_env, fallback)["AGENTWATCH_SECRETS_DIR"] == "/from/file"
    both = {**file_env, "AGENTWATCH_SECRETS_DIR": "/from/env"}
    assert alerting.resolve(names, {}, both, fallback)["AGENTWATCH_SECRETS_DIR"] == "/from/env"
    chosen = alerting.resolve(names, {"AGENTWATCH_SECRETS_DIR": "/set"}, both, fallback)
    assert chosen["AGENTWATCH_SECRETS_DIR"] == "/set"

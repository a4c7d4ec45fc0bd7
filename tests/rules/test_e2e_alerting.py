"""End to end: real Prometheus evaluates the rules on a static exposition and sends to a real
Alertmanager with the rendered config; a loopback sink stands in for the scaler, Slack and Discord.

Proves what unit tests cannot: the critical twin inhibits the warning for every receiver, the scaler
gets the bearer token from its credentials file, and the notifications carry value and runbook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from agentwatch import alerting
from agentwatch.local.alertmanager import AlertmanagerProcess
from agentwatch.local.process import wait_for
from agentwatch.local.prometheus import PrometheusProcess
from tests.rules.helpers import AM_TEMPLATE, RULES_DIR

TOKEN = "e2e-scaler-token-abcdef"
EXPOSITION = """\
# TYPE agentwatch_host_memory_used_ratio gauge
agentwatch_host_memory_used_ratio 0.93
# TYPE agentwatch_container_memory_working_set_bytes gauge
agentwatch_container_memory_working_set_bytes{container="agent-1",compose_service="agent"} 950
# TYPE agentwatch_container_memory_limit_bytes gauge
agentwatch_container_memory_limit_bytes{container="agent-1",compose_service="agent"} 1000
"""


class Sink:
    """Loopback HTTP server: /metrics serves EXPOSITION, any POST is recorded."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = EXPOSITION.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                sink.posts.append((self.path, self.headers.get("Authorization", ""), payload))
                self.send_response(200 if self.path != "/discord" else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[tuple[str, dict]]:
        return [(auth, body) for p, auth, body in list(self.posts) if p == path]


def _fast_rules(tmp: Path) -> list[Path]:
    """The rules with every `for:` at 0s, so the test does not wait minutes."""
    defaults = yaml.safe_load((RULES_DIR / "thresholds.yml").read_text())
    override = tmp / "fast.yml"
    override.write_text(yaml.safe_dump({k: "0s" for k in defaults if k.endswith("_for")}))
    out = tmp / "rules"
    proc = subprocess.run([sys.executable, str(RULES_DIR / "generate.py"), "--thresholds", str(override),
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return sorted(out.glob("*.rules.yml"))


def _fast_config(path: Path) -> None:
    """Shorten the waits of every route (the rest of the rendered config is kept as is)."""
    config = yaml.safe_load(path.read_text())
    stack = [config["route"]]
    while stack:
        route = stack.pop()
        route.update(group_wait="1s", group_interval="1s", repeat_interval="1h")
        stack.extend(route.get("routes", []))
    alerting.write_private(path, yaml.safe_dump(config), 0o600)


@pytest.fixture(scope="module")
def stack():
    tmp = Path(tempfile.mkdtemp(prefix="aw-alerting-e2e-"))
    sink = Sink()
    base = f"http://127.0.0.1:{sink.port}"
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "slack-webhook-url").write_text(f"{base}/slack\n")
    (secrets / "agentwatch-scaler-token").write_text(TOKEN + "\n")
    config = tmp / "alertmanager.yml"
    rc = alerting.main(["--template", str(AM_TEMPLATE), "--out", str(config),
                        "--set", f"AGENTWATCH_SECRETS_DIR={secrets}", "--set", f"AGENTWATCH_SCALER_URL={base}/webhook"],
                       env={"AGENTWATCH_DISCORD_WEBHOOK_URL": f"{base}/discord"})
    assert rc == 0
    _fast_config(config)
    am = AlertmanagerProcess(config, tmp)
    prom = PrometheusProcess([f"127.0.0.1:{sink.port}"], rule_files=_fast_rules(tmp))
    prom.config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}]}
    try:
        am.start()
        prom.start()
        yield sink, am.url
    finally:
        prom.stop()
        am.stop()
        sink.server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _alertnames(bodies) -> set[str]:
    return {a["labels"]["alertname"] for _, body in bodies for a in body.get("alerts", [])}


def test_scaler_gets_criticals_with_its_bearer_token(stack):
    sink, _ = stack
    want = {"AgentHostMemoryCritical", "AgentContainerMemoryCritical"}
    wait_for(lambda: want <= _alertnames(sink.to("/webhook")), timeout=45, what="the scaler webhook")
    for auth, body in sink.to("/webhook"):
        assert auth == f"Bearer {TOKEN}"
        assert body["version"] == "4" and body["receiver"] == "scaler"


def test_warnings_are_inhibited_by_their_critical_twins(stack):
    sink, am_url = stack

    def states():
        with urllib.request.urlopen(f"{am_url}/api/v2/alerts", timeout=5) as resp:
            alerts = json.loads(resp.read())
        return {a["labels"]["alertname"]: a["status"] for a in alerts}

    current = wait_for(lambda: (s := states()) and {"AgentHostMemoryHigh", "AgentContainerMemoryNearLimit"} <= set(s)
                       and s, timeout=45, what="the warnings in Alertmanager")
    for name in ("AgentHostMemoryHigh", "AgentContainerMemoryNearLimit"):
        assert current[name]["state"] == "suppressed", current[name]
        assert current[name]["inhibitedBy"], current[name]
    wait_for(lambda: sink.to("/discord"), timeout=45, what="the critical Discord message")
    assert not ({"AgentHostMemoryHigh", "AgentContainerMemoryNearLimit"} & _alertnames(sink.to("/webhook")))
    slack_channels = {body.get("channel") for _, body in sink.to("/slack")}
    assert "#agentwatch-alerts" not in slack_channels, "a muted warning reached the warning channel"


def test_people_get_value_target_and_runbook(stack):
    sink, _ = stack
    discord = wait_for(lambda: [b for _, b in sink.to("/discord")
                             if "AgentContainerMemoryCritical" in json.dumps(b)], what="Discord")
    slack = wait_for(lambda: [b for _, b in sink.to("/slack")
                           if "AgentContainerMemoryCritical" in json.dumps(b)], what="Slack")
    embed = discord[0]["embeds"][0]
    assert embed["title"].startswith("[FIRING:1] AgentContainerMemoryCritical (critical)")
    assert "95%" in embed["description"] and "container: agent-1" in embed["description"]
    assert "docs/runbooks.md#agentcontainermemorycritical" in embed["description"]
    attachment = slack[0]["attachments"][0]
    assert slack[0]["channel"] == "#agentwatch-critical" and attachment["color"] == "danger"
    assert attachment["title_link"].endswith("#agentcontainermemorycritical")
    assert "95%" in attachment["text"]

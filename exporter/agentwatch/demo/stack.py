"""Every part of the monitoring loop on this machine, on loopback, started in order and stopped in reverse.

A private Docker engine (when one can be started), the example agent server, the exporter, the
scaler in dry run, Slack- and Discord-shaped receivers, Alertmanager with the shipped routes and
receivers (rendered by ``render-alertmanager``), and Prometheus with the shipped rules (short
``for:``, see ``agentwatch.demo.rules``). All files live in one directory. ``stop`` is safe
after a partial start and bounded: each part is stopped even if another one fails to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentwatch.alerting import render as am_render
from agentwatch.demo import incident
from agentwatch.demo.receivers import ChatReceivers, Message
from agentwatch.demo.rules import DemoRules, RulesUnavailable, render_demo_rules
from agentwatch.local.alertmanager import BINARY as ALERTMANAGER_BINARY
from agentwatch.local.alertmanager import AlertmanagerProcess
from agentwatch.local.dockerd import PrivateDockerd
from agentwatch.local.pack import KEY_ENV, DemoProcess, ExporterProcess
from agentwatch.local.process import ManagedProcess
from agentwatch.local.prometheus import PrometheusProcess
from agentwatch.local.scaler import ScalerProcess

INTERVAL = "2s"
#: Alertmanager's waits for the demo (the shipped config waits 10-30 s before a first notification).
GROUP_WAIT = "1s"
GROUP_INTERVAL = "10s"


class StackError(Exception):
    """A part could not be started; the message is one line naming it."""


def engine_unavailable() -> str | None:
    """Why no private engine can be started here, or None."""
    if os.geteuid() != 0:
        return "a private Docker engine needs root"
    if not shutil.which("dockerd"):
        return "dockerd is not installed (apt-get install docker.io)"
    if not (shutil.which("busybox") or Path("/bin/busybox").exists()):
        return "busybox is not installed (apt-get install busybox-static)"
    return None


def shorten_waits(route: dict[str, Any]) -> None:
    """The demo's Alertmanager timing on every route that sets its own: notify quickly, regroup often."""
    if "group_wait" in route:
        route["group_wait"] = GROUP_WAIT
    if "group_interval" in route:
        route["group_interval"] = GROUP_INTERVAL
    for child in route.get("routes") or []:
        shorten_waits(child)


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)


@dataclass
class DemoStack:
    """The parts, each None until started; ``say`` reports what happens while starting."""

    workdir: Path
    say: Callable[[str], None]
    on_message: Callable[[Message], None]
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    key: str = field(default_factory=lambda: secrets.token_hex(16))
    engine: PrivateDockerd | None = None
    engine_note: str = ""
    agents: DemoProcess | None = None
    exporter: ExporterProcess | None = None
    receivers: ChatReceivers | None = None
    scaler: ScalerProcess | None = None
    alertmanager: AlertmanagerProcess | None = None
    prometheus: PrometheusProcess | None = None
    rules: DemoRules | None = None
    notes: list[str] = field(default_factory=list)

    # --- starting ------------------------------------------------------------------------------------
    def start(self, want_engine: bool, rules_dir: Path | None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:  # first: a missing rules directory is one line before anything has started
            self.rules = render_demo_rules(self.workdir / "rules", rules_dir)
        except RulesUnavailable as exc:
            raise StackError(str(exc)) from None
        self._start_engine(want_engine)
        self.agents = self._managed(DemoProcess(*incident.AGENT_SERVER_FLAGS, key=self.key,
                                                workdir=self.workdir / "agent-server"))
        _write_secret(self.workdir / "agent-server-api-key", self.key)
        docker: dict[str, Any] = {"host": self.engine.host} if self.engine else {"enabled": False}
        self.exporter = self._managed(ExporterProcess(
            {"interval_seconds": float(INTERVAL.rstrip("s")), "docker": docker,
             "probes": [{"name": "demo", "url": self.agents.url, "api_key_env": KEY_ENV,
                         "interval_seconds": float(INTERVAL.rstrip("s"))}]},
            env={KEY_ENV: self.key}, workdir=self.workdir / "exporter"))
        self.receivers = ChatReceivers(self.on_message).start()
        self.scaler = self._managed(ScalerProcess(self._policy(), self.token, workdir=self.workdir / "scaler",
                                                  env={KEY_ENV: self.key}))
        self._start_alertmanager()
        self._start_prometheus()

    def _managed(self, process: Any) -> Any:
        """Start ``process`` in its own session (Ctrl-C reaches only the demo, which stops it in order)."""
        process.new_session = True
        try:
            process.start()
        except RuntimeError as exc:
            raise StackError(f"{process.name} did not start: {str(exc).splitlines()[0]}") from None
        return process

    def _start_engine(self, want: bool) -> None:
        reason = "--no-engine" if not want else engine_unavailable()
        if reason is None:
            engine = PrivateDockerd(base=self.workdir / "engine")
            self.engine = engine
            try:
                engine.start()
                engine.import_busybox()
            except Exception as exc:  # no engine is a mode of the demo, not a failure
                reason = f"the private engine did not start: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                engine.stop()
                self.engine = None
        if reason is not None:
            self.engine_note = reason
            self.say(f"running without containers ({reason})")

    def _policy(self) -> dict[str, Any]:
        """The demo's dry-run policy: memory and restarts for the leaking container, concurrency for the pool."""
        assert self.agents is not None
        targets: dict[str, Any] = {
            "agent-server": {"kind": "agent_server", "url": self.agents.url, "api_key_env": KEY_ENV,
                             "min_concurrency": 1, "timeout_seconds": 5},
        }
        rules: list[dict[str, Any]] = [
            {"name": "pool-exhausted-lower-concurrency", "alertname": "AgentPoolExhausted",
             "action": "set_concurrency", "mode": "lower", "factor": 0.5, "target": "agent-server",
             "priority": 50, "cooldown_seconds": 30, "on_resolved": "reverse", "stabilization_seconds": 10},
        ]
        if self.engine is not None:
            targets["leaky-agent"] = {"kind": "container", "container": incident.LEAKY,
                                      "min_memory_bytes": "32MiB", "max_memory_bytes": "512MiB"}
            rules[:0] = [
                {"name": "near-oom-more-memory", "match_re": {"alertname": "AgentContainerMemory(NearLimit|Critical)"},
                 "match": {"container": incident.LEAKY}, "action": "resize_memory", "factor": 2,
                 "target": "leaky-agent", "priority": 60, "cooldown_seconds": 600},
                {"name": "crash-loop-restart",
                 "match_re": {"alertname": "AgentContainer(CrashLooping|RetriesExhausted)"},
                 "match": {"container": incident.LEAKY}, "action": "restart", "target": "leaky-agent",
                 "priority": 80, "cooldown_seconds": 600},
            ]
        return {"dry_run": True, "log_format": "json", "rate_limit": {"max_actions": 30, "per_seconds": 60},
                "docker": {"host": self.engine.host if self.engine else None, "timeout_seconds": 10},
                "targets": targets, "rules": rules}

    def _start_alertmanager(self) -> None:
        binary = shutil.which("prometheus-alertmanager") or ALERTMANAGER_BINARY
        if not Path(binary).exists():
            self.notes.append("Alertmanager is not installed (apt-get install prometheus-alertmanager): "
                              "alerts are shown but not delivered")
            return
        assert self.receivers is not None and self.scaler is not None
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(mode=0o700, exist_ok=True)
        _write_secret(secrets_dir / "slack-webhook-url", self.receivers.slack_url)
        _write_secret(secrets_dir / "agentwatch-scaler-token", self.token)
        template = am_render.DEFAULT_TEMPLATE
        try:
            text = am_render.render(
                template.read_text(), {"AGENTWATCH_SCALER_URL": f"{self.scaler.url}/webhook"},
                {"AGENTWATCH_SECRETS_DIR": str(secrets_dir),
                 "AGENTWATCH_DISCORD_WEBHOOK_URL": self.receivers.discord_url},
                am_render.defaults(template), {"scaler", "slack", "discord"})
        except (OSError, am_render.RenderError) as exc:
            raise StackError(f"cannot render the Alertmanager config: {exc}") from None
        config = yaml.safe_load(text)
        shorten_waits(config["route"])
        path = self.workdir / "alertmanager" / "alertmanager.yml"
        path.parent.mkdir(exist_ok=True)
        am_render.write_private(path, yaml.safe_dump(config, sort_keys=False, width=1 << 16), 0o600)
        self.alertmanager = self._managed(AlertmanagerProcess(path, workdir=path.parent))

    def _start_prometheus(self) -> None:
        if not shutil.which("prometheus"):
            self.notes.append("Prometheus is not installed (apt-get install prometheus): no alerts, "
                              "so no incident walkthrough")
            return
        assert self.exporter is not None and self.scaler is not None and self.rules is not None
        prometheus = PrometheusProcess([f"127.0.0.1:{self.exporter.port}"], rule_files=self.rules.files,
                                       interval=INTERVAL, job="agentwatch", workdir=self.workdir / "prometheus")
        prometheus.config["scrape_configs"].append(
            {"job_name": "agentwatch-scaler", "static_configs": [{"targets": [f"127.0.0.1:{self.scaler.port}"]}]})
        if self.alertmanager is not None:
            prometheus.config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager.port}"]}]}]}
        self.prometheus = self._managed(prometheus)
        with contextlib.suppress(AssertionError, OSError):  # a first scrape, so no alert sees "never scraped"
            self.prometheus.wait_for_query('up{job="agentwatch"} == 1', timeout=20)

    # --- reading -------------------------------------------------------------------------------------
    def alerts(self) -> list[dict[str, Any]]:
        assert self.prometheus is not None
        alerts = self.prometheus.api("alerts").get("alerts")
        return alerts if isinstance(alerts, list) else []

    def urls(self) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        if self.engine is not None:
            rows.append(("private Docker engine", f"{self.engine.host}  (containers {incident.LEAKY}, "
                                                  f"{incident.STEADY})"))
        else:
            rows.append(("private Docker engine", f"none: running without containers ({self.engine_note})"))
        if self.agents is not None:
            rows.append(("example agent server", f"{self.agents.url}/api/deploy/status  (X-API-Key: the file "
                                                 f"{self.workdir / 'agent-server-api-key'})"))
        if self.exporter is not None:
            rows.append(("exporter", f"{self.exporter.url}/metrics"))
        if self.prometheus is not None:
            rows.append(("Prometheus", f"{self.prometheus.url}/alerts"))
        if self.alertmanager is not None:
            rows.append(("Alertmanager", f"{self.alertmanager.url}/#/alerts"))
        if self.scaler is not None:
            rows.append(("scaler (dry run)", f"{self.scaler.url}/  (GET /actions: bearer token in "
                                             f"{self.workdir / 'secrets' / 'agentwatch-scaler-token'})"))
        if self.receivers is not None:
            rows.append(("Slack-shaped receiver", self.receivers.slack_url))
            rows.append(("Discord-shaped receiver", self.receivers.discord_url))
        return rows

    # --- stopping ------------------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop every part, last started first; the problems met (each part is stopped regardless)."""
        problems: list[str] = []
        parts: list[tuple[str, Callable[[], object]]] = []
        for process in (self.prometheus, self.alertmanager, self.scaler, self.exporter, self.agents):
            if process is not None:
                parts.append((process.name, _stopper(process)))
        if self.receivers is not None:
            parts.append(("receivers", self.receivers.stop))
        if self.engine is not None:
            parts.append(("private engine", self.engine.stop))
        for name, stop in parts:
            try:
                stop()
            except Exception as exc:  # the others must still be stopped
                problems.append(f"{name}: {exc}")
        return problems


def _stopper(process: ManagedProcess) -> Callable[[], object]:
    def stop() -> object:
        with contextlib.suppress(ProcessLookupError):
            return process.stop(timeout=10)
        return None
    return stop

"""The whole loop, measured (issue 12): three incidents at once on one real stack.

Real parts only: a private dockerd, the exporter (1 s cycle), Prometheus (1 s scrape and
evaluation) loading the SHIPPED rules unmodified, Alertmanager with the config that
``agentwatch render-alertmanager`` renders (only ``group_wait`` shortened), Slack- and
Discord-shaped loopback receivers that record what they get, and the real scaler acting (not in
dry-run) on the containers and on the demo agent server:

a. a container whose working set climbs past 80 % and 90 % of its limit: the critical memory alert
   goes pending, then firing; Alertmanager delivers it to the scaler, Slack and Discord; the scaler
   raises the limit by half.
b. a container OOM-killed in a loop under ``on-failure``: the OOM alert fires and the scaler doubles
   the limit within seconds; that is not enough, the loop goes on and the crash-loop alert fires;
   the scaler doubles the limit again; the kills stop; the OOM alert resolves and the resolved
   notification reaches the scaler, whose ``on_resolved: reverse`` notify rule says so.
c. the demo agent server with its MCP pool exhausted: the pool alert fires, the scaler halves
   ``maxConcurrency`` through the server's API, and the pool recovers.

The shipped ``for:`` clauses set the pace (2 min for the critical memory and pool alerts, 5 min of
quiet before the OOM alert resolves), so the incidents run concurrently: about 6 minutes in all.
Each incident's times, from its first failure, are printed and written to bench/results/incidents.md;
the targets of the issue are asserted. A fourth container, OOM-killed once in a child process (the
engine sends two ``oom`` events for that one kill), proves that one kill counts 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentwatch import alerting
from agentwatch.local.alertmanager import AlertmanagerProcess
from agentwatch.local.dockerd import IMAGE, PrivateDockerd
from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess, ExporterProcess
from agentwatch.local.prometheus import PrometheusProcess
from tests.scaler.helpers import TOKEN, ScalerProcess

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "alert-rules").glob("*.rules.yml"))
THRESHOLDS = yaml.safe_load((ROOT / "alert-rules" / "thresholds.yml").read_text())
RESULTS = ROOT / "bench" / "results" / "incidents.md"

SCRAPE_SECONDS = 1.0
#: group_wait of every route that waits at all (the shipped config: 30 s, 10 s; the scaler's is 0 s).
GROUP_WAIT = "1s"
#: Everything must have happened within this long after the incidents start.
DEADLINE_SECONDS = 480.0

MEMORY, OOM, CHILD_OOM = "aw-inc-memory", "aw-inc-oom", "aw-inc-child-oom"
MiB = 1024 * 1024
#: 23 steps of 4 MiB into /dev/shm (counted in the working set), one a second: 92 MiB of 100 MiB.
FILL = ("i=0; while [ $i -lt 23 ]; do dd if=/dev/zero of=/dev/shm/fill$i bs=1M count=4 2>/dev/null; "
        "i=$((i+1)); sleep 1; done; exec sleep 3600")
#: Needs 90 MiB: under 32 MiB and 64 MiB every run is OOM-killed at once (the first run waits 3 s, so
#: the exporter sees the container before its first death); under 128 MiB it holds and keeps running.
HOG = ("[ -e /ran ] || { : > /ran; sleep 3; }; "
       "dd if=/dev/zero of=/dev/null bs=90M count=1 2>/dev/null || exit 137; exec sleep 3600")
#: One child (tail, buffering 60 MB) is OOM-killed once; the container keeps running.
CHILD_HOG = ("sleep 2; head -c 60000000 /dev/zero | sh -c 'echo 1000 > /proc/self/oom_score_adj; exec tail' "
             "> /dev/null; exec sleep 3600")  # the tail, never the container's shell, is the OOM killer's choice

DEMO_MAX, DEMO_POOL = 6, 3


def seconds(duration: str) -> float:
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", duration))


# --- the chat stand-ins ------------------------------------------------------------------------------

class ChatSink:
    """Loopback receiver: /slack and /notify answer like Slack (200 ok), /discord like Discord (204).

    Every POST is kept with its arrival time.
    """

    def __init__(self) -> None:
        self.posts: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {"unparsable": True}
                with sink.lock:
                    sink.posts.append((time.time(), self.path, body))
                discord = self.path == "/discord"
                self.send_response(204 if discord else 200)
                self.send_header("Content-Length", "0" if discord else "2")
                self.end_headers()
                if not discord:
                    self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def first(self, path: str, *needles: str) -> float | None:
        """Arrival time of the first POST to ``path`` whose JSON holds every needle."""
        with self.lock:
            posts = list(self.posts)
        for at, p, body in posts:
            text = json.dumps(body)
            if p == path and all(n in text for n in needles):
                return at
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the stack ---------------------------------------------------------------------------------------

def render_alertmanager(tmp: Path, sink: ChatSink, scaler_url: str) -> Path:
    """The shipped template rendered by the CLI users run; then only group_wait is shortened."""
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "slack-webhook-url").write_text(f"{sink.url}/slack\n")
    (secrets / "agentwatch-scaler-token").write_text(TOKEN + "\n")
    out = tmp / "alertmanager.yml"
    proc = subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", "render-alertmanager", "--out", str(out),
         "--set", f"AGENTWATCH_SECRETS_DIR={secrets}", "--set", f"AGENTWATCH_SCALER_URL={scaler_url}/webhook"],
        env={**os.environ, "AGENTWATCH_DISCORD_WEBHOOK_URL": f"{sink.url}/discord"},
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(out.read_text())
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        if seconds(str(route.get("group_wait", "0s"))) > 0:
            route["group_wait"] = GROUP_WAIT
        routes.extend(route.get("routes", []))
    alerting.write_private(out, yaml.safe_dump(config), 0o600)
    return out


def scaler_policy(work: Path, dockerd: PrivateDockerd, demo: DemoProcess) -> dict[str, Any]:
    return {
        "dry_run": False,
        "state_file": str(work / "scaler-state.json"),
        "audit_log": str(work / "scaler-audit.jsonl"),
        "tick_seconds": 1,
        "docker": {"host": dockerd.host, "timeout_seconds": 20},
        "targets": {
            "memory-agent": {"kind": "container", "container": MEMORY,
                             "min_memory_bytes": "64MiB", "max_memory_bytes": "512MiB"},
            "oom-agent": {"kind": "container", "container": OOM,
                          "min_memory_bytes": "32MiB", "max_memory_bytes": "256MiB"},
            "demo": {"kind": "agent_server", "url": demo.url, "api_key_env": KEY_ENV, "min_concurrency": 1},
            "oncall": {"kind": "notify", "flavor": "slack", "url_env": "AW_INC_NOTIFY_URL"},
        },
        "rules": [
            {"name": "memory-near-limit-more-memory", "action": "resize_memory", "factor": 1.5,
             "match_re": {"alertname": "AgentContainerMemory(NearLimit|Critical)"}, "match": {"container": MEMORY},
             "target": "memory-agent", "cooldown_seconds": 600},
            # Double at the first kill; a short cooldown lets the crash loop double again if that was not enough.
            {"name": "oom-killed-double-memory", "alertname": "AgentContainerOOMKilled", "match": {"container": OOM},
             "action": "resize_memory", "factor": 2, "target": "oom-agent", "cooldown_seconds": 20},
            {"name": "crash-loop-double-memory", "alertname": "AgentContainerCrashLooping", "match": {"container": OOM},
             "action": "resize_memory", "factor": 2, "target": "oom-agent", "cooldown_seconds": 600},
            {"name": "oom-killed-tell-oncall", "alertname": "AgentContainerOOMKilled", "match": {"container": OOM},
             "action": "notify", "target": "oncall", "on_resolved": "reverse", "stabilization_seconds": 0,
             "message": "{{ labels.alertname }} on {{ labels.container }}: {{ annotations.summary }}"},
            {"name": "pool-exhausted-lower-concurrency", "alertname": "AgentPoolExhausted",
             "match": {"server": "demo"}, "action": "set_concurrency", "mode": "lower", "factor": 0.5,
             "target": "demo", "cooldown_seconds": 600},
        ],
    }


class Load(threading.Thread):
    """Keeps the demo server at its maxConcurrency with agents of 8-16 s; 503s at capacity are fine."""

    def __init__(self, demo: DemoProcess) -> None:
        super().__init__(name="aw-inc-load", daemon=True)
        self.demo = demo
        self.halt = threading.Event()
        self.rng = random.Random(12)

    def run(self) -> None:
        while not self.halt.wait(0.3):
            with contextlib.suppress(OSError):
                self.demo.call("POST", "/api/agents", {"model": "haiku", "seconds": self.rng.uniform(8, 16)},
                               timeout=5)


# --- what happened -----------------------------------------------------------------------------------

@dataclass
class Run:
    """Everything observed, in Unix seconds; None for what never happened."""

    started: float = 0.0
    timelines: dict[str, dict[str, float | None]] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    child_descriptions: set[str] = field(default_factory=set)
    child_oom_events: int = 0
    child_counted: float | None = None
    oom_container: dict[str, Any] = field(default_factory=dict)
    oom_kills_after_fix: int = 0
    demo_max_concurrency: int | None = None
    notes: list[str] = field(default_factory=list)


def raw(prom: PrometheusProcess, selector: str) -> list[tuple[float, float]]:
    """Every stored sample of ``selector`` over the last 15 minutes, oldest first."""
    out: list[tuple[float, float]] = []
    for series in prom.query(f"{selector}[15m]"):
        out += [(float(t), float(v)) for t, v in series["values"]]
    return sorted(out)


def first_where(samples: list[tuple[float, float]], ok: Any) -> float | None:
    return next((t for t, v in samples if ok(v)), None)


def settled_at_zero(samples: list[tuple[float, float]], after: float | None, hold: float = 10.0) -> float | None:
    """Start of the run of zeros, after ``after``, that lasts to the latest sample and for ``hold`` s."""
    if after is None or not samples or samples[-1][1] != 0:
        return None
    start = None
    for t, v in samples:
        if t > after:
            start = (start or t) if v == 0 else None
    return start if start is not None and samples[-1][0] - start >= hold else None


def alert_times(prom: PrometheusProcess, name: str, match: str) -> dict[str, float | None]:
    """First pending, first firing and resolved (the evaluation after the last firing one)."""
    pending = raw(prom, f'ALERTS{{alertname="{name}",alertstate="pending",{match}}}')
    firing = raw(prom, f'ALERTS{{alertname="{name}",alertstate="firing",{match}}}')
    active = bool(prom.query(f'ALERTS{{alertname="{name}",{match}}}'))
    return {"pending": pending[0][0] if pending else None, "firing": firing[0][0] if firing else None,
            "resolved": firing[-1][0] + SCRAPE_SECONDS if firing and not active else None}


def decision(decisions: list[dict[str, Any]], rule: str, trigger: str = "firing",
             result: str | None = "success") -> dict[str, Any] | None:
    """The scaler's first decision of ``rule`` for ``trigger`` with ``result`` (None: any result)."""
    return next((d for d in decisions if d.get("rule") == rule and d.get("trigger") == trigger
                 and (result is None or d.get("result") == result)), None)


def at(d: dict[str, Any] | None, key: str) -> float | None:
    return float(d[key]) if d and d.get(key) else None


def engine_events(client: Any, name: str, action: str, since: float) -> list[float]:
    """Engine times of a container's ``action`` events since ``since`` (a bounded query: until now)."""
    events = client.events(since=int(since) - 1, until=time.time(), decode=True,
                           filters={"type": "container", "container": name, "event": action})
    return sorted(e["timeNano"] / 1e9 for e in events)


def observe(run: Run, prom: PrometheusProcess, sink: ChatSink, scaler: ScalerProcess, demo: DemoProcess,
            exporter: ExporterProcess, client: Any) -> bool:
    """Refresh ``run`` from every part; True once all three incidents have played out."""
    run.decisions = scaler.actions()
    m, o, p = f'container="{MEMORY}"', f'container="{OOM}"', 'server="demo"'

    ws = raw(prom, f"agentwatch_container_memory_working_set_bytes{{{m}}}")
    limit = 100 * MiB
    critical = alert_times(prom, "AgentContainerMemoryCritical", m)
    resize_a = decision(run.decisions, "memory-near-limit-more-memory")
    run.timelines["a"] = {
        "working set past 80%": first_where(ws, lambda v: v > THRESHOLDS["container_memory_warning_ratio"] * limit),
        "working set past 90%": first_where(ws, lambda v: v > THRESHOLDS["container_memory_critical_ratio"] * limit),
        "AgentContainerMemoryNearLimit pending": alert_times(prom, "AgentContainerMemoryNearLimit", m)["pending"],
        "AgentContainerMemoryCritical pending": critical["pending"],
        "AgentContainerMemoryCritical firing": critical["firing"],
        "delivered to the scaler": at(resize_a, "received_at"),
        "delivered to Slack": sink.first("/slack", "[FIRING", "AgentContainerMemoryCritical", MEMORY),
        "delivered to Discord": sink.first("/discord", "[FIRING", "AgentContainerMemoryCritical", MEMORY),
        "scaler action (limit x1.5)": at(resize_a, "finished_at"),
        "AgentContainerMemoryCritical resolved": critical["resolved"],
    }

    kills = engine_events(client, OOM, "oom", run.started)
    oom_alert = alert_times(prom, "AgentContainerOOMKilled", o)
    loop = alert_times(prom, "AgentContainerCrashLooping", o)
    resize_b = decision(run.decisions, "oom-killed-double-memory")
    resize_again = decision(run.decisions, "crash-loop-double-memory")
    told_resolved = decision(run.decisions, "oom-killed-tell-oncall", trigger="resolved", result=None)
    fixed = at(resize_again, "finished_at")
    run.oom_kills_after_fix = sum(1 for k in kills if fixed and k > fixed + 2 * SCRAPE_SECONDS)
    run.timelines["b"] = {
        "first OOM kill (engine event)": kills[0] if kills else None,
        "AgentContainerOOMKilled firing": oom_alert["firing"],
        "delivered to the scaler": at(resize_b, "received_at"),
        "delivered to Slack": sink.first("/slack", "[FIRING", "AgentContainerOOMKilled", OOM),
        "scaler action (limit x2, 64 MiB)": at(resize_b, "finished_at"),
        "AgentContainerCrashLooping pending": loop["pending"],
        "AgentContainerCrashLooping firing": loop["firing"],
        "AgentContainerCrashLooping to the scaler": at(resize_again, "received_at"),
        "AgentContainerCrashLooping to Discord": sink.first("/discord", "AgentContainerCrashLooping", OOM),
        "scaler action (limit x2 again, 128 MiB)": fixed,
        "last OOM kill": kills[-1] if kills else None,
        "AgentContainerOOMKilled resolved": oom_alert["resolved"],
        "resolved delivered to the scaler": at(told_resolved, "received_at"),
        "scaler's resolved notice posted": sink.first("/notify", "resolved"),
    }
    with contextlib.suppress(Exception):
        attrs = client.api.inspect_container(OOM)
        run.oom_container = {"status": attrs["State"]["Status"], "memory": attrs["HostConfig"]["Memory"],
                             "restarts": attrs["RestartCount"], "oom_killed_flag": attrs["State"]["OOMKilled"]}

    waiting = raw(prom, f"agentwatch_pool_waiting{{{p}}}")
    in_use = dict(raw(prom, f"agentwatch_pool_in_use{{{p}}}"))
    size = dict(raw(prom, f"agentwatch_pool_max_size{{{p}}}"))
    exhausted = [(t, v) for t, v in waiting if v > 0 and t in in_use and t in size and in_use[t] >= size[t]]
    pool = alert_times(prom, "AgentPoolExhausted", p)
    lower = decision(run.decisions, "pool-exhausted-lower-concurrency")
    lowered = at(lower, "finished_at")
    run.timelines["c"] = {
        "pool exhausted, callers waiting": exhausted[0][0] if exhausted else None,
        "AgentPoolExhausted pending": pool["pending"],
        "AgentPoolExhausted firing": pool["firing"],
        "delivered to the scaler": at(lower, "received_at"),
        "delivered to Slack": sink.first("/slack", "[FIRING", "AgentPoolExhausted"),
        "delivered to Discord": sink.first("/discord", "[FIRING", "AgentPoolExhausted"),
        "scaler action (maxConcurrency /2)": lowered,
        "pool recovered (nobody waiting)": settled_at_zero(waiting, lowered),
        "AgentPoolExhausted resolved": pool["resolved"],
    }
    with contextlib.suppress(Exception):
        run.demo_max_concurrency = int(demo.call("GET", "/api/deploy/status")[2]["maxConcurrency"])

    run.child_oom_events = len(engine_events(client, CHILD_OOM, "oom", run.started))
    counted = exporter.scrape().value("agentwatch_container_oom_events_total", container=CHILD_OOM)
    if counted is not None and counted >= 1 and run.child_counted is None:
        run.child_counted = time.time()
    for alert in prom.api("alerts")["alerts"]:
        if alert["labels"].get("container") == CHILD_OOM and alert["labels"]["alertname"] == "AgentContainerOOMKilled":
            run.child_descriptions.add(alert["annotations"]["description"])

    return (all(v is not None for v in run.timelines["a"].values())
            and all(v is not None for v in run.timelines["b"].values())
            and all(v is not None for v in run.timelines["c"].values())
            and bool(run.child_descriptions))


# --- the report --------------------------------------------------------------------------------------

INCIDENTS = {
    "a": ("Working set past 80 % / 90 % of the limit", "working set past 90%"),
    "b": ("OOM kill loop under on-failure:20 (needs 90 MiB, limit 32 MiB)", "first OOM kill (engine event)"),
    "c": ("Demo agent server, MCP pool exhausted", "pool exhausted, callers waiting"),
}


def report(run: Run) -> str:
    lines = ["# Incident loop, measured (tests/e2e/test_incidents.py)", "",
             f"Run at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.started))}: private dockerd, "
             f"exporter (1 s cycle), Prometheus 1 s scrape/evaluation with the shipped rules, Alertmanager "
             f"(rendered config, group_wait {GROUP_WAIT}), real scaler not in dry-run. Seconds from each "
             "incident's first failure; '-' never happened.", ""]
    for key, (title, origin) in INCIDENTS.items():
        timeline = run.timelines.get(key, {})
        zero = timeline.get(origin)
        lines += [f"## {key}. {title}", "", "| step | seconds |", "| --- | ---: |"]
        for step, t in timeline.items():
            value = "-" if t is None or zero is None else f"{t - zero:+.1f}"
            lines.append(f"| {step} | {value} |")
        lines.append("")
    lines += ["## One child OOM kill", "",
              f"oom events the engine sent: {run.child_oom_events}; alert text: "
              f"{sorted(run.child_descriptions) or '-'}", "",
              f"OOM container at the end: {run.oom_container}; kills after the fix: {run.oom_kills_after_fix}",
              f"Demo maxConcurrency at the end: {run.demo_max_concurrency}", ""]
    return "\n".join(lines + run.notes) + "\n"


# --- the fixture: the stack and the three incidents ----------------------------------------------------

@pytest.fixture(scope="module")
def run(dockerd: PrivateDockerd) -> Iterator[Run]:
    client = dockerd.client
    assert client is not None
    tmp = Path(tempfile.mkdtemp(prefix="aw-incidents-"))
    result = Run()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        sink = ChatSink()
        stack.callback(sink.close)
        demo = DemoProcess("--max-concurrency", str(DEMO_MAX), "--pool-size", str(DEMO_POOL),
                           "--pool-acquire-timeout", "120")
        stack.callback(demo.stop)
        demo.start()
        scaler = ScalerProcess(scaler_policy(tmp, dockerd, demo), tmp,
                               env={KEY_ENV: KEY, "AW_INC_NOTIFY_URL": f"{sink.url}/notify"})
        stack.callback(scaler.stop)
        scaler.launch()
        am = AlertmanagerProcess(render_alertmanager(tmp, sink, scaler.url), tmp)
        stack.callback(am.stop)
        am.start()
        exporter = ExporterProcess(
            {"interval_seconds": SCRAPE_SECONDS, "docker": {"host": dockerd.host}, "processes": {"enabled": False},
             "probes": [{"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": 1}]},
            env={KEY_ENV: KEY})
        stack.callback(exporter.stop)
        exporter.start()
        prom = PrometheusProcess([f"127.0.0.1:{exporter.port}"], rule_files=RULES, interval=f"{SCRAPE_SECONDS:g}s")
        prom.config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}]}
        stack.callback(prom.stop)
        prom.start()
        prom.wait_for_query('up{job="agentwatch"} == 1')
        prom.wait_for_query('agentwatch_pool_max_size{server="demo"}')

        for name in (MEMORY, OOM, CHILD_OOM):
            stack.callback(_remove, client, name)
        load = Load(demo)
        stack.callback(load.join, 10)
        stack.callback(load.halt.set)

        result.started = time.time()
        load.start()
        client.containers.run(IMAGE, ["sh", "-c", FILL], name=MEMORY, detach=True, network_mode="none",
                              mem_limit="100m", memswap_limit="100m", shm_size="128m")
        client.containers.run(IMAGE, ["sh", "-c", HOG], name=OOM, detach=True, network_mode="none",
                              mem_limit="32m", memswap_limit="32m",
                              restart_policy={"Name": "on-failure", "MaximumRetryCount": 20})
        client.containers.run(IMAGE, ["sh", "-c", CHILD_HOG], name=CHILD_OOM, detach=True, network_mode="none",
                              mem_limit="32m", memswap_limit="32m")
        deadline = result.started + DEADLINE_SECONDS
        done = False
        while not done and time.time() < deadline:
            time.sleep(1.0)
            done = observe(result, prom, sink, scaler, demo, exporter, client)
        if not done:
            result.notes.append(f"Not everything happened within {DEADLINE_SECONDS:g} s.")
        text = report(result)
        print("\n" + text)
        RESULTS.write_text(text)
        yield result


def _remove(client: Any, name: str) -> None:
    with contextlib.suppress(Exception):
        client.containers.get(name).remove(force=True)


def _since(run: Run, key: str, origin: str, step: str) -> float:
    timeline = run.timelines[key]
    start, end = timeline[origin], timeline[step]
    assert start is not None, f"{key}: {origin} never happened: {timeline}"
    assert end is not None, f"{key}: {step} never happened: {timeline}"
    return end - start


def budget(alert_for: str, group_wait: str) -> float:
    """The issue's bound from the first failure to the scaler's action."""
    return SCRAPE_SECONDS + seconds(alert_for) + seconds(group_wait) + 5


# --- the assertions ------------------------------------------------------------------------------------

def test_memory_climb_is_pending_firing_delivered_and_acted_on(run: Run) -> None:
    origin = "working set past 90%"
    pending = _since(run, "a", origin, "AgentContainerMemoryCritical pending")
    firing = _since(run, "a", origin, "AgentContainerMemoryCritical firing")
    assert 0 <= pending < firing, run.timelines["a"]
    assert firing >= seconds(THRESHOLDS["container_memory_critical_for"]), "the shipped for: held"
    for step in ("delivered to the scaler", "delivered to Slack", "delivered to Discord"):
        assert _since(run, "a", origin, step) >= firing - SCRAPE_SECONDS, step
    action = _since(run, "a", origin, "scaler action (limit x1.5)")
    assert action <= budget(THRESHOLDS["container_memory_critical_for"], "0s"), run.timelines["a"]


def test_oom_loop_fires_is_fixed_by_the_scaler_and_resolves(run: Run) -> None:
    origin = "first OOM kill (engine event)"
    crash_loop = _since(run, "b", origin, "AgentContainerCrashLooping firing")
    assert crash_loop <= 120, f"crash-loop alert {crash_loop:.1f} s after the first OOM kill (target 2 min)"
    action = _since(run, "b", origin, "scaler action (limit x2, 64 MiB)")
    assert action <= budget("0s", "0s"), f"resize {action:.1f} s after the first OOM kill"
    assert _since(run, "b", origin, "delivered to Slack") > 0
    again = _since(run, "b", origin, "scaler action (limit x2 again, 128 MiB)")
    assert again <= crash_loop + budget("0s", "0s"), f"second resize {again - crash_loop:.1f} s after the crash loop"
    assert run.oom_container.get("memory") == 128 * MiB, run.oom_container
    assert run.oom_container.get("status") == "running", run.oom_container
    assert run.oom_kills_after_fix == 0, "the container kept OOMing after the resize"
    resolved = _since(run, "b", origin, "AgentContainerOOMKilled resolved")
    quiet = resolved - _since(run, "b", origin, "last OOM kill")
    assert seconds(THRESHOLDS["oom_window"]) <= quiet <= seconds(THRESHOLDS["oom_window"]) + 10, quiet
    assert _since(run, "b", origin, "resolved delivered to the scaler") >= resolved
    assert _since(run, "b", origin, "scaler's resolved notice posted") >= resolved


def test_pool_exhaustion_lowers_concurrency_and_the_pool_recovers(run: Run) -> None:
    origin = "pool exhausted, callers waiting"
    firing = _since(run, "c", origin, "AgentPoolExhausted firing")
    assert firing >= seconds(THRESHOLDS["pool_exhausted_for"])
    action = _since(run, "c", origin, "scaler action (maxConcurrency /2)")
    assert action <= budget(THRESHOLDS["pool_exhausted_for"], "0s"), run.timelines["c"]
    assert run.demo_max_concurrency == DEMO_MAX // 2
    assert _since(run, "c", origin, "pool recovered (nobody waiting)") > action
    assert _since(run, "c", origin, "AgentPoolExhausted resolved") > action


def test_one_oom_kill_counts_one(run: Run) -> None:
    """The engine sends two oom events for this one kill; the exporter and the alert count 1."""
    assert run.child_counted is not None, "the exporter never counted the child's OOM kill"
    assert run.child_descriptions, "no AgentContainerOOMKilled for the child OOM kill"
    counts = {m for d in run.child_descriptions for m in re.findall(r"(\S+) OOM kill\(s\)", d)}
    assert counts == {"1"}, (counts, run.child_oom_events)

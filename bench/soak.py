"""``python -m bench.soak``: a steady fleet must raise no alert (issue 12). Not run in CI.

Healthy, memory-limited containers on a private engine and the demo agent server under steady load
(its own generator, below ``maxConcurrency``), watched by the exporter and a real Prometheus loading
the SHIPPED rules, for ``--minutes`` (at least 10). Every alert that went pending or firing is
printed and written to bench/results/soak.md; the expected figure is none. Exit code 0 when nothing
fired, 1 when something did, 128+N when interrupted (everything is stopped in every case).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwatch.local.dockerd import IMAGE, EngineUnavailable, PrivateDockerd
from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess, ExporterProcess
from agentwatch.local.prometheus import PrometheusProcess
from agentwatch.local.signals import Interrupted, raise_on_stop_signals
from bench.flags import bounded, positive

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "alert-rules").glob("*.rules.yml"))
#: Each container holds a quarter of its 64 MiB limit and sleeps; one has a passing healthcheck.
STEADY = "dd if=/dev/zero of=/dev/shm/hold bs=1M count=16 2>/dev/null; exec sleep 86400"
MAX_CONCURRENCY = 4


@dataclass
class Seen:
    """Alerts observed, by (alertname, labels): first pending, first firing, last seen (Unix s)."""

    alerts: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    polls: int = 0

    def add(self, alert: dict[str, Any], now: float) -> None:
        labels = alert["labels"]
        key = (labels.get("alertname", "?"),
               ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity")))
        entry = self.alerts.setdefault(key, {})
        entry.setdefault(alert["state"], now)
        entry["last"] = now

    def fired(self) -> list[tuple[str, str]]:
        return sorted(k for k, v in self.alerts.items() if "firing" in v)


#: A soak shorter than the rules' windows proves nothing.
MINUTES = bounded(float, 10, 24 * 60, what="a number of minutes",
                  why=" (a soak shorter than the rules' windows proves nothing)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=MINUTES, default=10.0, help="how long to watch (10 to 1440; default 10)")
    p.add_argument("--containers", type=int, choices=range(0, 51), default=6, metavar="0-50",
                   help="healthy containers (default 6)")
    p.add_argument("--load-per-minute", type=positive(float, 3600), default=12.0,
                   help=f"agents the demo server starts a minute, 5-15 s each, max {MAX_CONCURRENCY} at once "
                        "(default 12)")
    p.add_argument("--interval", type=positive(float, 3600), default=5.0,
                   help="exporter cycle and Prometheus scrape/evaluation interval, seconds (default 5)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.md"), help="the report (Markdown)")
    return p


def run(args: argparse.Namespace, log: Any) -> tuple[Seen, dict[str, Any]]:
    seen = Seen()
    facts: dict[str, Any] = {"containers": args.containers, "engine": "none"}
    with contextlib.ExitStack() as stack:
        engine: PrivateDockerd | None = None
        if args.containers:
            engine = PrivateDockerd()
            stack.callback(engine.stop)
            try:
                engine.start()
                engine.import_busybox()
            except EngineUnavailable as exc:
                log(f"no private engine ({exc}); soaking without containers")
                facts["containers"], engine = 0, None
        if engine is not None and engine.client is not None:
            facts["engine"] = engine.client.version().get("Version", "?")
            for i in range(args.containers):
                extra: dict[str, Any] = {}
                if i == 0:
                    extra["healthcheck"] = {"test": ["CMD", "true"], "interval": 5_000_000_000}
                engine.client.containers.run(
                    IMAGE, ["sh", "-c", STEADY], name=f"soak-agent-{i + 1}", detach=True, network_mode="none",
                    mem_limit="64m", memswap_limit="64m", nano_cpus=500_000_000,
                    restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
                    labels={"com.docker.compose.project": "soak", "com.docker.compose.service": "agent",
                            "com.docker.compose.container-number": str(i + 1)}, **extra)
        demo = DemoProcess("--max-concurrency", str(MAX_CONCURRENCY), "--load-per-minute", f"{args.load_per_minute:g}",
                           "--load-seconds", "5-15")
        stack.callback(demo.stop)
        demo.start()
        config: dict[str, Any] = {
            "interval_seconds": args.interval,
            "probes": [{"name": "demo", "url": demo.url, "api_key_env": KEY_ENV, "interval_seconds": args.interval}],
        }
        if engine is not None:
            config["docker"] = {"host": engine.host}
        exporter = ExporterProcess(config, env={KEY_ENV: KEY})
        stack.callback(exporter.stop)
        exporter.start()
        prom = PrometheusProcess([f"127.0.0.1:{exporter.port}"], rule_files=RULES, interval=f"{args.interval:g}s")
        stack.callback(prom.stop)
        prom.start()
        log(f"exporter {exporter.url}, demo {demo.url}, Prometheus {prom.url}; watching {args.minutes:g} min")

        started = time.time()
        facts["started"] = started
        end = started + args.minutes * 60
        next_note = started + 60
        while time.time() < end:
            now = time.time()
            for alert in prom.api("alerts")["alerts"]:
                seen.add(alert, now)
            seen.polls += 1
            if now >= next_note:
                next_note += 60
                log(f"{(now - started) / 60:4.1f} min: {len(seen.alerts)} alert(s) seen, {len(seen.fired())} fired")
            time.sleep(min(args.interval, max(0.0, end - time.time())))
        facts["minutes"] = (time.time() - started) / 60
        runs = prom.query("sum(agentwatch_agent_runs_total)")
        facts["agent_runs"] = int(float(runs[0]["value"][1])) if runs else 0
        requests = prom.query('sum(agentwatch_app_requests_total{server="demo"})')
        facts["requests"] = int(float(requests[0]["value"][1])) if requests else 0
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        facts["rules"] = len(rules)
        facts["rule_errors"] = sorted({r["name"] for r in rules if r.get("health") != "ok"})
    return seen, facts


def report(seen: Seen, facts: dict[str, Any], args: argparse.Namespace) -> str:
    fired = seen.fired()
    lines = [
        "# Soak: a steady fleet raises no alert", "",
        f"Run at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(facts['started']))} by `python -m bench.soak`: "
        f"{facts['minutes']:.1f} minutes, {facts['containers']} healthy containers (engine {facts['engine']}), "
        f"the demo agent server under steady load ({args.load_per_minute:g} agents a minute, max "
        f"{MAX_CONCURRENCY} at once), exporter and Prometheus at {args.interval:g} s with the shipped rules "
        f"({facts['rules']} rules, {len(facts['rule_errors'])} with errors{': ' if facts['rule_errors'] else ''}"
        f"{', '.join(facts['rule_errors'])}).", "",
        f"Agent runs: {facts['agent_runs']}; requests to the demo server: {facts['requests']}; alert polls: "
        f"{seen.polls}.", "",
        f"**Alerts fired: {len(fired)}** (expected: none). Alerts that went pending: "
        f"{sum(1 for v in seen.alerts.values() if 'pending' in v)}.", "",
    ]
    if seen.alerts:
        lines += ["| alert | labels | pending at | firing at |", "| --- | --- | ---: | ---: |"]
        for (name, labels), times in sorted(seen.alerts.items()):
            def rel(state: str, times: dict[str, float] = times) -> str:
                return f"{(times[state] - facts['started']) / 60:.1f} min" if state in times else "-"
            lines.append(f"| {name} | {labels} | {rel('pending')} | {rel('firing')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    raise_on_stop_signals()  # a background job inherits SIGINT ignored: stop cleanly all the same
    try:
        seen, facts = run(args, log)
    except KeyboardInterrupt as exc:
        log("interrupted: everything stopped, no report written")
        return 128 + exc.signum if isinstance(exc, Interrupted) else 130
    text = report(seen, facts, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    log(f"wrote {args.out}")
    return 1 if seen.fired() else 0


if __name__ == "__main__":
    sys.exit(main())

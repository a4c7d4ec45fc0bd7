"""The scaler under a burst: many webhooks at once, each decision read back from the audit log.

A real ``agentwatch scaler`` process (dry run, so the burst changes nothing) with the demo agent
server as its ``agent_server`` target and a ``notify`` target, the policy of the scaler's own
throughput test: every webhook carries one ``Mem`` alert that two rules act on (lower the agent
server's maxConcurrency, page). ``webhooks`` posts, ``in_flight`` at a time, cycle through
``distinct`` alert instances, so most are duplicates of an instance decided a moment before.
Decision latency is what the scaler reports per webhook (``decision_latency_seconds``: from the
parsed payload to durable decisions, the agent server's status read included), measured after
``WARM_UP`` webhooks have warmed the process up (a scaler runs for days, and its first requests pay
for the connection to the agent server and lazily built state); a second, serial run of fresh
alerts is the reference.

Checked, not assumed: every webhook answered 200; every distinct alert instance acted on exactly
once per rule (none lost, none doubled) and every other webhook skipped as a duplicate, counted
from the audit log the scaler wrote.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agentwatch.local.pack import KEY, KEY_ENV, DemoProcess
from agentwatch.local.scaler import ScalerProcess
from bench.procstat import cpu_seconds
from bench.scrape import percentile

TOKEN = "bench-scaler-token-0123456789"
RULES = ("lower", "page")
#: Webhooks sent one at a time before measuring, about alert instances of their own.
WARM_UP = 20


def policy(agent_server_url: str) -> dict[str, Any]:
    return {
        "dry_run": True, "log_level": "warning", "rate_limit": {"max_actions": 100_000, "per_seconds": 60},
        "targets": {"srv": {"kind": "agent_server", "url": agent_server_url, "api_key_env": KEY_ENV},
                    "chat": {"kind": "notify", "url_env": "AW_BENCH_NO_CHAT"}},
        "rules": [{"name": "lower", "alertname": "Mem", "action": "set_concurrency", "target": "srv",
                   "priority": 10, "cooldown_seconds": 0},
                  {"name": "page", "alertname": "Mem", "action": "notify", "target": "chat", "cooldown_seconds": 0}],
    }


def _payload(instance: int) -> dict[str, Any]:
    alert = {"status": "firing", "labels": {"alertname": "Mem", "host": f"h{instance}"}, "annotations": {},
             "startsAt": "2024-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"f{instance}"}
    return {"version": "4", "status": "firing", "receiver": "scaler", "groupKey": "{}:{}", "alerts": [alert],
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am"}


@dataclass
class BurstFigures:
    webhooks: int
    in_flight: int
    distinct: int
    wall_s: float
    latency_p50_s: float
    latency_p99_s: float
    latency_max_s: float
    acted: int
    duplicates: int
    lost: int
    doubled: int
    answered_ok: int
    scaler_cpu_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _post_all(url: str, webhooks: int, in_flight: int, offset: int,
                    distinct: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    ok = 0
    gate = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}, connector=connector) as session:
        async def one(i: int) -> None:
            nonlocal ok
            async with gate, session.post(url + "/webhook", json=_payload(offset + i % distinct)) as resp:
                body = await resp.json()
                if resp.status == 200:
                    ok += 1
                    latencies.append(float(body["decision_latency_seconds"]))
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(webhooks))), timeout=600)
        return time.perf_counter() - start, latencies, ok


def _audit(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.exists():  # nothing decided yet
        return out
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "decision":
            out.append(record)
    return out


def _run(scaler: ScalerProcess, webhooks: int, in_flight: int, offset: int, distinct: int) -> BurstFigures:
    """One burst; lost/doubled are counted from the audit lines of this burst's alert instances."""
    before = len(_audit(scaler.dir / "audit.jsonl"))
    assert scaler.proc is not None
    cpu0 = cpu_seconds(scaler.proc.pid)
    wall, latencies, ok = asyncio.run(_post_all(scaler.url, webhooks, in_flight, offset, distinct))
    cpu1 = cpu_seconds(scaler.proc.pid)
    deadline = time.monotonic() + 30  # the audit batch of the last turn may still be on its way
    while time.monotonic() < deadline:
        records = _audit(scaler.dir / "audit.jsonl")[before:]
        if len(records) >= 2 * ok:
            break
        time.sleep(0.1)
    acted = Counter((r["rule"], r["fingerprint"]) for r in records if r.get("outcome") == "act")
    duplicates = sum(1 for r in records if r.get("reason") == "duplicate")
    expected = {(rule, f"f{offset + k}") for rule in RULES for k in range(min(distinct, webhooks))}
    lost = len(expected - set(acted))
    doubled = sum(n - 1 for n in acted.values() if n > 1) + len(set(acted) - expected)
    return BurstFigures(webhooks=webhooks, in_flight=in_flight, distinct=distinct, wall_s=wall,
                        latency_p50_s=statistics.median(latencies) if latencies else 0.0,
                        latency_p99_s=percentile(latencies, 99) if latencies else 0.0,
                        latency_max_s=max(latencies, default=0.0), acted=sum(acted.values()),
                        duplicates=duplicates, lost=lost, doubled=doubled, answered_ok=ok,
                        scaler_cpu_s=cpu1 - cpu0)


def measure(webhooks: int = 1000, in_flight: int = 50, distinct: int = 400, serial: int = 200,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """The burst and the serial reference against one scaler and one demo agent server (both stopped)."""
    workdir = Path(tempfile.mkdtemp(prefix="aw-bench-scaler-"))
    try:
        with DemoProcess(workdir=workdir / "demo") as demo, \
                ScalerProcess(policy(demo.url), TOKEN, workdir=workdir / "scaler", env={KEY_ENV: KEY}) as scaler:
            _run(scaler, WARM_UP, 1, 900_000, WARM_UP)  # first requests pay for connections and lazy set-up
            burst = _run(scaler, webhooks, in_flight, 0, distinct)
            log(f"  scaler burst: {webhooks} webhooks, {in_flight} in flight: decision latency p99 "
                f"{burst.latency_p99_s * 1000:.1f} ms, {burst.lost} lost, {burst.doubled} doubled")
            reference = _run(scaler, serial, 1, 100_000, serial)
            log(f"  scaler serial: {serial} webhooks one at a time: p99 {reference.latency_p99_s * 1000:.1f} ms")
        return {"burst": burst.to_json(), "serial": reference.to_json()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

"""``python -m bench.insights_cost``: what one insights turn costs per collection cycle.

Feeds the real ``InsightService`` (memory monitor, death bookkeeping, health scores, the SQLite
store's summary query) with synthetic readings of N containers and M agent groups, the way the
collectors publish them, until every window is full (``window_seconds / interval`` samples), then
times further turns. A tenth of the containers leak, so fits, projections and threshold states are
all exercised. CPU time of the calling thread per turn is the figure: the turn runs in the insights
collector's own worker thread, beside the other collectors.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from agentwatch.insights.memory import MonitorSettings
from agentwatch.insights.service import InsightService, InsightSettings
from agentwatch.insights.store import InsightStore
from agentwatch.readings import Batch, ContainerReading, GroupReading

MiB = 1 << 20


def readings(n: int, at: float, rng: random.Random, start: float) -> list[ContainerReading]:
    out = []
    for i in range(n):
        leak = i % 10 == 0
        ws = (200 + (at - start) * (0.05 if leak else 0.0)) * MiB + rng.gauss(0, 2 * MiB)
        out.append(ContainerReading(
            id=f"{i:064x}", labels=(f"agent-{i}", "agent:local", "fleet", "worker"), state="running", running=True,
            working_set=ws, limit=2048.0 * MiB, started_at=start - 10, finished_at=0.0, exit_code=0,
            oom_killed=False, restart_count=0, restart_policy="on-failure", max_retries=3, health="healthy",
            command="node /app/agent.js"))
    return out


def measure(containers: int, groups: int, interval: float, window: float, turns: int, db: Path) -> dict[str, float]:
    settings = InsightSettings(monitor=MonitorSettings(window_seconds=window, max_samples=int(window / interval) + 10))
    service = InsightService(settings, InsightStore(str(db)))
    rng = random.Random(1)
    start = time.time() - window - turns * interval
    warm = int(window / interval)
    times: list[float] = []
    for k in range(warm + turns):
        at = start + k * interval
        batch = Batch(containers=readings(containers, at, rng, start), containers_at=at,
                      groups=[GroupReading(f"group-{g}", 4, 4.0 * 500 * MiB) for g in range(groups)], groups_at=at,
                      host_memory=(64.0 * 1024 * MiB, 20.0 * 1024 * MiB), events_attached=True)
        t0 = time.thread_time()
        service.turn(batch, now=at)
        if k >= warm:
            times.append(time.thread_time() - t0)
    service.store.close()
    samples = max(len(s.points) for s in service.containers_mon.series.values())
    return {"containers": containers, "samples_per_window": samples, "turns": turns,
            "median_ms": statistics.median(times) * 1000, "p95_ms": sorted(times)[int(0.95 * len(times))] * 1000,
            "per_container_us": statistics.median(times) / max(1, containers) * 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.insights_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", default="10,100,500", help="container counts (default 10,100,500)")
    p.add_argument("--groups", type=int, default=4, help="agent process groups (default 4)")
    p.add_argument("--interval", type=float, default=5.0, help="collection interval, seconds (default 5)")
    p.add_argument("--window", type=float, default=600.0, help="insights.window_seconds (default 600)")
    p.add_argument("--turns", type=int, default=50, help="timed turns after the windows fill (default 50)")
    args = p.parse_args(argv)
    print("| containers | samples per window | median ms per cycle | p95 ms | µs per container |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.containers.split(",") if v.strip()):
            r = measure(n, args.groups, args.interval, args.window, args.turns, Path(tmp) / f"db-{n}")
            print(f"| {n} | {r['samples_per_window']:.0f} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | "
                  f"{r['per_container_us']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

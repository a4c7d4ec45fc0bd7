"""Measure the real agentwatch exporter (a subprocess) on the current workload.

Collection cost and scrape cost are measured apart. First a quiet window with no scrapes inside
it: CPU seconds of the exporter process over the window divided by the collection cycles the
exporter itself counted (its ``agentwatch_collector_duration_seconds`` count), so idle overhead
between cycles is charged to the cycles. Then the timed scrapes, paced so they overlap collection
the way a real Prometheus does; the CPU they add beyond the cycles that ran meanwhile is reported
as CPU per scrape.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agentwatch.local.pack import ExporterProcess
from agentwatch.local.scrape import Scrape
from bench.procstat import EngineMeter, cpu_seconds, peak_rss_bytes
from bench.scrape import Latency, Target, count_series, timed_scrapes


@dataclass
class AgentwatchFigures:
    """Everything measured on one exporter run."""

    scrape: Latency
    cycle_median_s: float
    collector_mean_s: dict[str, float]
    cycles_in_window: int
    window_s: float
    cpu_per_cycle_s: float
    cpu_per_scrape_s: float
    engine_cpu_per_cycle_s: float | None
    peak_rss_bytes: int
    series: int
    #: Series carrying a ``container`` label (should be N x a constant) or a ``group`` label
    #: (should depend on the agent groups and their label sets only, never on M).
    container_series: int
    group_series: int
    containers_seen: int
    processes_matched: int
    stats_source: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _counts(scrape: Scrape) -> dict[str, tuple[float, float]]:
    """Per collector: (sum, count) of its duration histogram."""
    out = {}
    for labels, total in scrape.series("agentwatch_collector_duration_seconds_sum"):
        count = scrape.value("agentwatch_collector_duration_seconds_count", collector=labels["collector"])
        out[labels["collector"]] = (total, count or 0.0)
    return out


def _cycles(scrape: Scrape) -> float:
    counts = _counts(scrape)
    return max((c for _, c in counts.values()), default=0.0)


def measure(config: dict[str, Any], scrapes: int, window: float, pace: float,
            engine: EngineMeter | None = None, min_cycles: int = 3,
            log: Callable[[str], None] = print) -> AgentwatchFigures:
    """Start the exporter with ``config``, measure it, stop it (always)."""
    exporter = ExporterProcess(config, ready_timeout=120)
    try:
        exporter.start()
        assert exporter.proc is not None
        pid = exporter.proc.pid
        target = Target("127.0.0.1", exporter.port)
        try:
            return _measure_running(pid, target, scrapes, window, pace, engine, min_cycles, log)
        finally:
            target.close()
    finally:
        exporter.stop()
        shutil.rmtree(exporter.dir, ignore_errors=True)


def _measure_running(pid: int, target: Target, scrapes: int, window: float, pace: float,
                     engine: EngineMeter | None, min_cycles: int,
                     log: Callable[[str], None]) -> AgentwatchFigures:
    # Warm up: the first cycles pay for imports, caches and connection set-up.
    first = _cycles(target.read())
    deadline = time.monotonic() + max(30.0, 10 * window)
    while _cycles(target.read()) < first + 2 and time.monotonic() < deadline:
        time.sleep(0.1)

    # Quiet window: no scrape inside it, only one just before and one just after.
    before = target.read()
    if engine:
        engine.refresh()
    cpu0, ecpu0, t0 = cpu_seconds(pid), engine.cpu() if engine else 0.0, time.monotonic()
    cycles = 0.0
    for _ in range(4):  # extend a window that saw too few cycles, at most three times
        time.sleep(window)
        cpu1, ecpu1, t1 = cpu_seconds(pid), engine.cpu() if engine else 0.0, time.monotonic()
        after = target.read()
        cycles = _cycles(after) - _cycles(before)
        if cycles >= min_cycles:
            break
    if cycles < 1:
        raise RuntimeError(f"no collection cycle finished within {t1 - t0:.0f}s")
    c0, c1 = _counts(before), _counts(after)
    collector_mean = {name: (c1[name][0] - c0[name][0]) / max(1.0, c1[name][1] - c0[name][1])
                      for name in c1 if name in c0}
    cpu_per_cycle = (cpu1 - cpu0) / cycles
    engine_per_cycle = engine.excess(ecpu0, ecpu1, t1 - t0) / cycles if engine else None
    log(f"  agentwatch: {cycles:.0f} cycles in {t1 - t0:.1f}s, {cpu_per_cycle * 1000:.1f} ms CPU/cycle")

    # Timed scrapes, Prometheus-style (OpenMetrics, gzip, keep-alive).
    cyc2, cpu2 = _cycles(after), cpu_seconds(pid)
    latencies, bodies = timed_scrapes(target, scrapes, pace)
    cpu3 = cpu_seconds(pid)
    final_text = target.text()
    final = Scrape.parse(final_text)
    cycles_during = max(0.0, _cycles(final) - cyc2)
    cpu_per_scrape = max(0.0, (cpu3 - cpu2) - cycles_during * cpu_per_cycle) / scrapes

    # The cycle gauge of every distinct snapshot the timed scrapes saw.
    cycle_values: dict[float, float] = {}
    for body in bodies:
        parsed = _openmetrics_values(body.decode(), ("agentwatch_snapshot_timestamp_seconds",
                                                     "agentwatch_collection_cycle_duration_seconds"))
        stamp = parsed.get("agentwatch_snapshot_timestamp_seconds")
        if stamp is not None and "agentwatch_collection_cycle_duration_seconds" in parsed:
            cycle_values[stamp] = parsed["agentwatch_collection_cycle_duration_seconds"]
    if not cycle_values:
        raise RuntimeError("the exporter's scrapes carried no agentwatch_collection_cycle_duration_seconds")

    source = next((lbl["source"] for lbl, v in final.series("agentwatch_docker_stats_source") if v == 1), None)
    return AgentwatchFigures(
        scrape=Latency.of(latencies),
        cycle_median_s=statistics.median(cycle_values.values()),
        collector_mean_s=collector_mean,
        cycles_in_window=int(cycles),
        window_s=t1 - t0,
        cpu_per_cycle_s=cpu_per_cycle,
        cpu_per_scrape_s=cpu_per_scrape,
        engine_cpu_per_cycle_s=engine_per_cycle,
        peak_rss_bytes=peak_rss_bytes(pid),
        series=count_series(final_text),
        container_series=sum(1 for _, labels, _ in final.samples if "container" in labels),
        group_series=sum(1 for _, labels, _ in final.samples if "group" in labels),
        containers_seen=len(final.series("agentwatch_container_info")),
        processes_matched=int(sum(v for _, v in final.series("agentwatch_process_group_processes"))),
        stats_source=source,
        extra={"cycles_during_scrapes": int(cycles_during), "distinct_snapshots_scraped": len(cycle_values)},
    )


def _openmetrics_values(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Values of unlabelled gauges, read from the body without parsing all of it."""
    out = {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out

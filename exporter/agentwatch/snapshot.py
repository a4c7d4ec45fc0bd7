"""The collection loop and the snapshot ``/metrics`` serves.

Every interval all collectors run concurrently, each under its own timeout. Their families and
the self-metrics are rendered once (in a worker thread, every encoding) and swapped in as one immutable
``Snapshot``; ``/metrics`` only ever returns those bytes, so scrape latency does not depend on how
many containers or processes there are. A collector that fails or times out loses its own
families for that cycle (and says so in ``agentwatch_collector_success``), never the others'.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from agentwatch import __version__, catalog
from agentwatch.collectors.base import Collector
from agentwatch.histogram import Histogram
from agentwatch.log import OnceLogger
from agentwatch.periodic import run_every

log = logging.getLogger("agentwatch.snapshot")


class _Families:
    """Adapter so prometheus_client's encoders can render a plain list of families."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


@dataclass(frozen=True)
class Snapshot:
    """One collection, rendered once in every encoding a scraper may ask for.

    Prometheus asks for gzipped OpenMetrics, curl for plain text: all four bodies are made when
    the snapshot is, in a worker thread, so a scrape only ever copies bytes.
    """

    families: Sequence[Metric]
    text: bytes
    timestamp: float
    _openmetrics: bytes
    _gzipped: dict[bool, bytes]

    @classmethod
    def render(cls, families: Sequence[Metric], timestamp: float) -> Snapshot:
        text = generate_latest(_Families(families))
        om = generate_openmetrics(_Families(families))
        gz = {False: gzip.compress(text, compresslevel=5), True: gzip.compress(om, compresslevel=5)}
        return cls(families, text, timestamp, om, gz)

    def openmetrics(self) -> bytes:
        return self._openmetrics

    def gzipped(self, openmetrics: bool = False) -> bytes:
        return self._gzipped[openmetrics]


@dataclass
class _CollectorStats:
    duration: Histogram
    success: int = 0
    errors: int = 0
    last_success: float = 0.0


class CollectionLoop:
    """Runs the collectors on an interval and holds the latest snapshot."""

    def __init__(self, collectors: Sequence[Collector], interval: float) -> None:
        self.collectors = list(collectors)
        self.interval = interval
        self.snapshot: Snapshot | None = None
        self.ready = asyncio.Event()
        self.cycles = 0
        self._stats = {
            c.name: _CollectorStats(Histogram(catalog.DURATION_BUCKETS)) for c in self.collectors
        }
        self._last_cycle = 0.0
        self._once = OnceLogger(log)

    async def _run_one(self, collector: Collector) -> list[Metric]:
        stats = self._stats[collector.name]
        start = time.perf_counter()
        try:
            families = await asyncio.wait_for(collector.collect(), timeout=collector.timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._failed(collector, stats, f"timed out after {collector.timeout:g}s")
            families = []
        except Exception as exc:
            self._failed(collector, stats, f"{type(exc).__name__}: {exc}")
            families = []
        else:
            stats.success = 1
            stats.last_success = time.time()
            self._once.cleared(collector.name, "collector %s recovered", collector.name, collector=collector.name)
        stats.duration.observe(time.perf_counter() - start)
        return families

    def _failed(self, collector: Collector, stats: _CollectorStats, reason: str) -> None:
        stats.success = 0
        stats.errors += 1
        self._once.problem(collector.name, "collector %s failed: %s", collector.name, reason,
                           collector=collector.name)

    def _self_families(self) -> list[Metric]:
        build = catalog.family("agentwatch_build_info")
        build.add_metric([__version__, platform.python_version()], 1)
        duration = catalog.family("agentwatch_collector_duration_seconds")
        success = catalog.family("agentwatch_collector_success")
        errors = catalog.family("agentwatch_collector_errors_total")
        last = catalog.family("agentwatch_collector_last_success_timestamp_seconds")
        for name, stats in self._stats.items():
            duration.add_metric([name], *stats.duration.samples())
            success.add_metric([name], stats.success)
            errors.add_metric([name], stats.errors)
            last.add_metric([name], stats.last_success)
        cycle = catalog.family("agentwatch_collection_cycle_duration_seconds")
        cycle.add_metric([], self._last_cycle)
        stamp = catalog.family("agentwatch_snapshot_timestamp_seconds")
        stamp.add_metric([], time.time())
        return [build, duration, success, errors, last, cycle, stamp]

    async def collect_once(self) -> Snapshot:
        """Run every collector once, render, and swap the snapshot in."""
        start = time.perf_counter()
        results = await asyncio.gather(*(self._run_one(c) for c in self.collectors))
        self._last_cycle = time.perf_counter() - start
        families: list[Metric] = [f for batch in results for f in batch]
        families.extend(self._self_families())
        snap = await asyncio.to_thread(Snapshot.render, families, time.time())
        self.snapshot = snap
        self.cycles += 1
        self.ready.set()
        return snap

    async def run(self) -> None:
        """Collect forever, one cycle per interval (a slow cycle delays the next, never overlaps)."""
        await run_every(self.interval, self.collect_once, self._cycle_failed)

    @staticmethod
    def _cycle_failed(exc: Exception) -> None:  # rendering bug: keep serving the previous snapshot
        log.error("collection cycle failed; serving the previous snapshot", exc_info=exc)

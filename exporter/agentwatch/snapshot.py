"""The collection loop and the snapshot ``/metrics`` serves.

Every interval all collectors run, in stages (``Collector.stage``), each under its own timeout.
Their families and the self-metrics are rendered once (in a worker thread, in the formats scrapers
asked for lately) and swapped in as one ``Snapshot``; ``/metrics`` returns those bytes, so scrape
latency does not depend on how many containers or processes there are. A collector that fails loses
its own families for that cycle (and says so in ``agentwatch_collector_success``), never the
others'; one that times out is counted the same way but still serves what it knows without asking
its source (``Collector.known``: the container collector reports the engine down and its containers'
last-known series).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import threading
import time
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import Metric

from agentwatch import __version__, catalog, exposition
from agentwatch.collectors.base import Collector
from agentwatch.log import OnceLogger
from agentwatch.periodic import run_every

log = logging.getLogger("agentwatch.snapshot")

#: The longest the collectors of one stage (``Collector.stage``) hold the next stage back.
HEAD_START_SECONDS = 0.5


#: gzip's compression level for the bodies.
GZIP_LEVEL = 5

#: The format Prometheus asks for (OpenMetrics): rendered with every snapshot.
OPENMETRICS = True
#: How long a format a scraper asked for keeps being rendered with every snapshot: this many
#: seconds, or three collection intervals if that is longer. A scraper that asks more often than
#: that gets it pre-rendered; one that asks now and then (curl) waits for one rendering.
ASKED_LATELY_SECONDS = 30.0


class Formats:
    """Which formats (OpenMetrics or the classic text) scrapers asked for lately (the handlers
    write, the loop reads; both on the event loop). The loop renders those with each snapshot, in
    its worker thread, so such a scrape only copies bytes; rendering every encoding every cycle was
    most of the exporter's CPU (issue 14: about 12 µs per series per encoding), though Prometheus
    only ever asks for one."""

    def __init__(self, keep_seconds: float = ASKED_LATELY_SECONDS) -> None:
        self.keep_seconds = keep_seconds
        self._asked: dict[bool, float] = {}

    def asked(self, openmetrics: bool) -> None:
        self._asked[openmetrics] = time.monotonic()

    def wanted(self) -> set[bool]:
        now = time.monotonic()
        return {OPENMETRICS} | {f for f, at in self._asked.items() if now - at < self.keep_seconds}


class Snapshot:
    """One collection: its families and, per format rendered so far, its body gzipped.

    Bodies are kept gzipped only, rendered and compressed a family at a time
    (``exposition.encode_gzipped``): Prometheus asks for gzip, and rendering a 0.9 MB text body
    whole, then keeping it beside the next snapshot's, was what a curl added to the exporter's peak
    memory (3.5 MiB, issue 14). A scrape without gzip gets the body unzipped piece by piece as the
    server sends it (about 1 ms of CPU for 0.9 MB). The formats scrapers asked for lately are
    rendered when the snapshot is made, the other on its first request, then kept.
    """

    __slots__ = ("_families", "_gzipped", "_lock", "timestamp")

    def __init__(self, families: Iterable[Metric], timestamp: float) -> None:
        self.timestamp = timestamp
        self._families = list(families)
        self._gzipped: dict[bool, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def render(cls, families: Iterable[Metric], timestamp: float, formats: Iterable[bool] = (OPENMETRICS,)) -> Snapshot:
        snap = cls(families, timestamp)
        for openmetrics in sorted(formats):
            snap.gzipped(openmetrics)
        return snap

    def ready(self, openmetrics: bool) -> bytes | None:
        """The gzipped body if this format is rendered already (no lock: a dict read is atomic)."""
        return self._gzipped.get(openmetrics)

    def gzipped(self, openmetrics: bool) -> bytes:
        """The gzipped body in this format, rendered now if it is not yet (blocking)."""
        body = self._gzipped.get(openmetrics)
        if body is None:
            with self._lock:
                body = self._gzipped.get(openmetrics)
                if body is None:
                    body = exposition.encode_gzipped(self._families, openmetrics, GZIP_LEVEL)
                    self._gzipped[openmetrics] = body
        return body


class SelfMetrics:
    """The loop's own metrics, as prometheus_client objects in a private registry."""

    def __init__(self, collectors: Iterable[str]) -> None:
        self.registry = catalog.PrivateRegistry()
        reg = self.registry
        catalog.metric("agentwatch_build_info", reg, Gauge).labels(__version__, platform.python_version()).set(1)
        self.duration = catalog.metric("agentwatch_collector_duration_seconds", reg, Histogram)
        self.success = catalog.metric("agentwatch_collector_success", reg, Gauge)
        self.errors = catalog.metric("agentwatch_collector_errors_total", reg, Counter)
        self.last_success = catalog.metric("agentwatch_collector_last_success_timestamp_seconds", reg, Gauge)
        self.cycle = catalog.metric("agentwatch_collection_cycle_duration_seconds", reg, Gauge)
        self.stamp = catalog.metric("agentwatch_snapshot_timestamp_seconds", reg, Gauge)
        for name in collectors:  # every collector's series exist from the first cycle, at 0
            for labelled in (self.duration, self.success, self.errors, self.last_success):
                labelled.labels(name)

    def succeeded(self, collector: str) -> None:
        self.success.labels(collector).set(1)
        self.last_success.labels(collector).set(time.time())

    def failed(self, collector: str) -> None:
        self.success.labels(collector).set(0)
        self.errors.labels(collector).inc()

    def families(self, cycle_seconds: float) -> list[Metric]:
        self.cycle.set(cycle_seconds)
        self.stamp.set(time.time())
        return list(self.registry.collect())


class CollectionLoop:
    """Runs the collectors on an interval and holds the latest snapshot."""

    def __init__(self, collectors: Sequence[Collector], interval: float) -> None:
        self.collectors = list(collectors)
        self.interval = interval
        self.snapshot: Snapshot | None = None
        self.ready = asyncio.Event()
        self.cycles = 0
        self.self_metrics = SelfMetrics(c.name for c in self.collectors)
        self.formats = Formats(max(ASKED_LATELY_SECONDS, 3 * interval))
        self._once = OnceLogger(log)

    async def _run_one(self, collector: Collector) -> list[Metric]:
        start = time.perf_counter()
        try:
            families = await asyncio.wait_for(collector.collect(), timeout=collector.timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._failed(collector, f"timed out after {collector.timeout:g}s")
            families = self._known(collector)
        except Exception as exc:
            self._failed(collector, f"{type(exc).__name__}: {exc}")
            families = []
        else:
            self.self_metrics.succeeded(collector.name)
            self._once.cleared(collector.name, "collector %s recovered", collector.name, collector=collector.name)
        self.self_metrics.duration.labels(collector.name).observe(time.perf_counter() - start)
        return families

    @staticmethod
    def _known(collector: Collector) -> list[Metric]:
        try:
            return collector.known()
        except Exception:  # a bug there must not end the cycle: serve nothing of this collector
            log.exception("collector %s could not say what it knows after a timeout", collector.name)
            return []

    def _failed(self, collector: Collector, reason: str) -> None:
        self.self_metrics.failed(collector.name)
        self._once.problem(collector.name, "collector %s failed: %s", collector.name, reason,
                           collector=collector.name)

    async def collect_once(self) -> Snapshot:
        """Run every collector once, render, and swap the snapshot in."""
        start = time.perf_counter()
        runs: dict[int, asyncio.Future[list[Metric]]] = {}
        try:
            stages = sorted({c.stage for c in self.collectors})
            for stage in stages:  # each stage gets a head start over the next (``Collector.stage``)
                batch = {i: asyncio.ensure_future(self._run_one(c))
                         for i, c in enumerate(self.collectors) if c.stage == stage}
                runs.update(batch)
                if stage != stages[-1]:
                    await asyncio.wait(batch.values(), timeout=HEAD_START_SECONDS)
            results = await asyncio.gather(*(runs[i] for i in range(len(self.collectors))))
        except BaseException:
            for run in runs.values():
                run.cancel()
            raise
        families: list[Metric] = [f for batch in results for f in batch]
        families.extend(self.self_metrics.families(time.perf_counter() - start))
        snap = await asyncio.to_thread(Snapshot.render, families, time.time(), self.formats.wanted())
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

"""The insights collector: memory trends, crash insights and health scores as metric families.

It reads what the other collectors published on the shared ``Readings`` board (it imports none of
them). It runs in the cycle's last stage, after them, so it judges what they read this cycle (a
collector that overran its head start publishes in time for the next cycle), and its own work
never competes with theirs for the interpreter lock. Each
turn runs in this collector's single worker thread (the store's SQLite calls block), so turns never
overlap. The latest ``Report`` and the store also serve ``/api/health`` and ``/api/crashes``.
"""

from __future__ import annotations

import logging

import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily, Metric

from agentwatch import catalog
from agentwatch.collectors.base import STAGE_DERIVED, Collector
from agentwatch.config import ExporterConfig, InsightsConfig
from agentwatch.insights.crashes import CAUSES, CrashSettings
from agentwatch.insights.health import HealthSettings
from agentwatch.insights.memory import THRESHOLD_STATES, TRENDS, MonitorSettings, Thresholds
from agentwatch.insights.service import InsightService, InsightSettings, Report
from agentwatch.insights.store import STORE_ERRORS, InsightStore
from agentwatch.readings import Readings

log = logging.getLogger("agentwatch.insights")


def settings_of(config: ExporterConfig) -> InsightSettings:
    """The service's settings from the config's ``insights:`` (and docker) sections."""
    ic: InsightsConfig = config.insights
    thresholds = Thresholds(warning=ic.warning_ratio, critical=ic.critical_ratio, oom_imminent=ic.oom_imminent_ratio)
    return InsightSettings(
        monitor=MonitorSettings(window_seconds=ic.window_seconds, min_samples=ic.min_samples,
                                min_slope=ic.min_slope_bytes_per_second, max_samples=ic.max_samples,
                                reset_drop_ratio=ic.reset_drop_ratio, thresholds=thresholds,
                                imminent_seconds=ic.imminent_seconds),
        crash=CrashSettings(warning_ratio=ic.warning_ratio, leak_min_seconds=ic.leak_min_seconds,
                            spike_rise_ratio=ic.spike_rise_ratio, limit_margin_ratio=ic.limit_margin_ratio,
                            pattern_window_seconds=ic.pattern_window_seconds, repeat_count=ic.repeat_count,
                            agents_lookback_seconds=ic.agents_lookback_seconds,
                            agent_memory_bytes=tuple(ic.agent_memory_bytes.model_dump().items()),
                            agent_size=ic.agent_size),
        health=HealthSettings(thresholds=thresholds, horizon_seconds=ic.horizon_seconds,
                              pattern_window_seconds=ic.pattern_window_seconds),
        # an exit 137 waits this long for its oom event; a polled death for its die event
        settle_seconds=max(2.0, 2 * config.interval_seconds + 1.0),
        max_containers=config.docker.max_containers,
        label_allowlist=tuple(config.docker.label_allowlist),
    )


class InsightsCollector(Collector):
    """Feeds the insight service from the readings board and renders its report."""

    name = "insights"
    stage = STAGE_DERIVED  # after the collectors whose readings it takes: it judges this cycle's

    def __init__(self, config: ExporterConfig, readings: Readings) -> None:
        super().__init__(timeout=config.insights.timeout_seconds, max_workers=1)
        self.config = config.insights
        self.readings = readings
        self.settings = settings_of(config)
        self.registry = catalog.PrivateRegistry()
        self._store_errors = catalog.metric("agentwatch_insights_store_errors_total", self.registry, prom.Counter)
        for reason in STORE_ERRORS:
            self._store_errors.labels(reason)
        self.service: InsightService | None = None

    def _store_error(self, reason: str) -> None:
        self._store_errors.labels(reason).inc()

    def _open(self) -> InsightService:
        ic = self.config
        store = InsightStore(ic.db_path, max_bytes=ic.db_max_bytes, max_records=ic.db_max_records,
                             retention_seconds=ic.retention_days * 86400, on_error=self._store_error)
        if store.persistent:
            log.info("insights stored in %s (%d records)", store.path, store.records())
        elif ic.db_path is None:
            log.info("insights kept in memory; set insights.db_path to keep them across restarts")
        return InsightService(self.settings, store)

    async def start(self) -> None:
        if self.service is None:
            self.service = await self.run_sync(self._open)

    async def stop(self) -> None:
        service, self.service = self.service, None
        if service is not None:
            await self.run_sync(service.store.close)
        await super().stop()

    def _turn(self) -> Report:
        if self.service is None:
            self.service = self._open()
        return self.service.turn(self.readings.take())

    async def collect(self) -> list[Metric]:
        report = await self.run_sync(self._turn)
        return [*families(report), *self.registry.collect()]


def families(report: Report) -> list[Metric]:
    """The insight metric families of one report."""
    extra = list(report.extra_label_names)
    n = len(extra)

    def fam(name: str) -> GaugeMetricFamily:
        return catalog.gauge(name, extra)

    watermark = fam("agentwatch_container_memory_high_watermark_bytes")
    trend = fam("agentwatch_container_memory_trend")
    slope = fam("agentwatch_container_memory_slope_bytes_per_second")
    to_limit = fam("agentwatch_container_memory_projected_seconds_to_limit")
    threshold = fam("agentwatch_container_memory_threshold_state")
    score = fam("agentwatch_container_health_score")
    crashes = catalog.counter("agentwatch_container_crashes_total", extra)
    for row in report.containers:
        labels = list(row.reading.labels)
        if len(labels) != 4 + n:  # readings from before a config change: pad or cut to the names
            labels = (labels + [""] * (4 + n))[: 4 + n]
        base, tail = labels[:4], labels[4:]
        score.add_metric(labels, float(row.score.score))
        view = row.view
        if view is None:  # not running: no working set to judge
            continue
        watermark.add_metric(labels, view.watermark)
        for t in TRENDS:
            trend.add_metric([*base, t, *tail], 1.0 if view.trend == t else 0.0)
        slope.add_metric(labels, view.slope)
        if view.seconds_to_limit is not None:
            to_limit.add_metric(labels, view.seconds_to_limit)
        for s in THRESHOLD_STATES:
            threshold.add_metric([*base, s, *tail], 1.0 if view.threshold == s else 0.0)
    for key, counts in report.crash_counts:
        labels = (list(key) + [""] * (4 + n))[: 4 + n]
        for cause, count in zip(CAUSES, counts, strict=True):
            crashes.add_metric([*labels[:4], cause, *labels[4:]], float(count))
    g_watermark = catalog.gauge("agentwatch_process_group_memory_high_watermark_bytes")
    g_trend = catalog.gauge("agentwatch_process_group_memory_trend")
    g_slope = catalog.gauge("agentwatch_process_group_memory_slope_bytes_per_second")
    for g in report.groups:
        g_watermark.add_metric([g.group], g.view.watermark)
        for t in TRENDS:
            g_trend.add_metric([g.group, t], 1.0 if g.view.trend == t else 0.0)
        g_slope.add_metric([g.group], g.view.slope)
    host = catalog.gauge("agentwatch_host_health_score")
    host.add_metric([], float(report.host.score))
    return [watermark, trend, slope, to_limit, threshold, score, crashes, g_watermark, g_trend, g_slope, host]

"""Insights: why containers die and what comes next: watermarks, trends, time to limit, crash causes, health scores."""

from __future__ import annotations

import re

from grafana_foundation_sdk.models.dashboard import Dashboard

from agentwatch.config import InsightsConfig
from agentwatch.insights.health import MEMORY_PENALTY
from agentwatch_dashboards.panels import (
    BLUE,
    CONTAINERS,
    GREEN,
    ORANGE,
    RED,
    Kit,
    Look,
    Query,
    Row,
    Steps,
    board,
    falling,
    flat,
    increase,
    job_and_instance,
    query_variable,
    rising,
    sel,
    service_and_container,
)
from agentwatch_dashboards.thresholds import Thresholds, ThresholdsError

UID = "agentwatch-insights"
GROUP = 'group=~"$group"'
NOT_CLEAN = 'cause!="clean"'
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as ``1h30m`` (the thresholds file's windows)."""
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ThresholdsError(f"{duration!r}: not a Prometheus duration")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


def score_steps() -> Steps:
    """Score bands from the exporter's scoring model: below 100 - (a memory warning's penalty) something
    needs a look; at or below 100 - (an imminent OOM's penalty) it is as bad as an OOM about to happen."""
    warning, imminent = MEMORY_PENALTY["warning"], MEMORY_PENALTY["oom_imminent"]
    return falling(100 - warning + 1, 100 - imminent + 1)


def build(t: Thresholds) -> Dashboard:
    kit = Kit(t)
    warn, crit = t.number("container_memory_warning_ratio"), t.number("container_memory_critical_ratio")
    # Red: the exporter calls it oom_imminent; orange: inside the suspected-leak alert's horizon.
    to_limit: Steps = ((None, RED), (InsightsConfig().imminent_seconds, ORANGE),
                       (seconds(t.text("leak_horizon")), GREEN))

    def c(metric: str, *matchers: str) -> str:
        return sel(metric, *CONTAINERS, *matchers)

    limit = f"({c('agentwatch_container_memory_limit_bytes')} > 0)"
    watermark = c("agentwatch_container_memory_high_watermark_bytes")
    scores = Row("Health scores", [
        kit.gauge(Look(
            "Host health score", "0-100 for the host: 100 less the penalties for memory, container scores, "
            "crashes and leaks (GET /api/health explains each part).", "none",
            [Query(sel("agentwatch_host_health_score"), "{{instance}}")],
            score_steps(), width=6, minimum=0, maximum=100)),
        kit.bars(Look(
            "Worst container scores", "The ten containers with the lowest health score (state, memory, trend, "
            "crashes); agentwatch health and the fleet page show why.", "none",
            [Query(f"bottomk(10, {c('agentwatch_container_health_score')})", "{{container}}")],
            score_steps(), width=9, minimum=0, maximum=100)),
        kit.bars(Look(
            "Containers by memory state", "How many containers are normal, warning, critical or oom_imminent "
            "(past the OOM-imminent ratio, or projected to reach the limit soon).", "short",
            [Query(f"sum by (state) ({c('agentwatch_container_memory_threshold_state')})", "{{state}}")], flat(BLUE),
            width=9)),
    ])
    memory = Row("Watermarks and trends", [
        kit.timeseries(Look(
            "High watermark against limit", "The highest working set seen over the memory limit: past the dashed "
            "lines a restart alone will not help; raise the limit to the watermark plus a margin.",
            "percentunit", [Query(f"{watermark} / on (instance, container) {limit}", "{{container}}")],
            rising(warn, crit), "AgentContainerMemoryNearLimit", width=12, minimum=0), lines=True,
            legend_table=True),
        kit.timeseries(Look(
            "High watermark", "Highest working set per container since agentwatch first saw it (restarts "
            "included), next to the limit.", "bytes",
            [Query(watermark, "{{container}}"), Query(limit, "{{container}} limit")], width=12)),
        kit.timeseries(Look(
            "Memory slope", "Least-squares slope of the working set over the insights window: a steady positive "
            "slope is a leak.", "binBps",
            [Query(c("agentwatch_container_memory_slope_bytes_per_second"), "{{container}}")], width=12)),
        kit.table(Look(
            "Trend now", "Each container's memory trend now: growing, stable or shrinking.", "short",
            [Query(f"{c('agentwatch_container_memory_trend')} == 1", "{{trend}}")], width=12),
            hide=("Time", "__name__", "job", "image", "compose_project", "Value")),
    ])
    limit_row = Row("Time to limit", [
        kit.timeseries(Look(
            "Projected time to limit", "Seconds until the working set reaches the limit at the current slope "
            "(only growing, limited containers). Below the leak horizon for long fires the suspected-leak "
            "alert; below the OOM-imminent projection the container is about to be killed.", "s",
            [Query(c("agentwatch_container_memory_projected_seconds_to_limit"), "{{container}}")], to_limit,
            "AgentContainerMemoryLeakSuspected", width=12, minimum=0), lines=True),
        kit.bars(Look(
            "Soonest to reach the limit", "The ten containers projected to reach their memory limit first.", "s",
            [Query(f"bottomk(10, {c('agentwatch_container_memory_projected_seconds_to_limit')})", "{{container}}")],
            to_limit, "AgentContainerMemoryLeakSuspected", width=12, minimum=0, no_value="nothing growing")),
    ])
    crashes = Row("Crashes", [
        kit.timeseries(Look(
            "Crashes by cause", "Deaths by the cause agentwatch classified (oom, memory_leak, memory_spike, "
            "signal, error, clean), per container; agentwatch crashes gives the evidence and what to change.",
            "short", [Query(f"sum by (container, cause) "
                            f"({increase('agentwatch_container_crashes_total', *CONTAINERS, NOT_CLEAN)})",
                            "{{container}} {{cause}}")], flat(RED), "AgentContainerOOMKilled", width=12),
            stack=True, bars=True),
        kit.table(Look(
            "Crashes in the time range", "Crashes per container and cause over the dashboard's time range.",
            "short", [Query(f"sum by (container, cause) (increase({c('agentwatch_container_crashes_total')}"
                            "[$__range])) > 0", "{{cause}}")], rising(1), width=12, no_value="no crashes"),
            hide=("Time",)),
    ])
    groups = Row("Agent process groups", [
        kit.timeseries(Look(
            "Group RSS watermark", "Highest RSS sum seen per agent process group.", "bytes",
            [Query(sel("agentwatch_process_group_memory_high_watermark_bytes", GROUP), "{{group}}")],
            width=8)),
        kit.timeseries(Look(
            "Group RSS slope", "Least-squares slope of each group's RSS sum.", "binBps",
            [Query(sel("agentwatch_process_group_memory_slope_bytes_per_second", GROUP), "{{group}}")],
            width=8)),
        kit.table(Look(
            "Group trend now", "Each group's memory trend.", "short",
            [Query(f"{sel('agentwatch_process_group_memory_trend', GROUP)} == 1", "{{trend}}")],
            width=8), hide=("Time", "__name__", "job", "Value")),
        kit.timeseries(Look(
            "Insights store errors", "Problems with the insights database: corrupt (set aside, started fresh), "
            "locked (kept in memory instead), write, read. Insights survive a restart only while this stays 0.",
            "short", [Query(f"sum by (reason) ({increase('agentwatch_insights_store_errors_total')})", "{{reason}}")],
            flat(RED), width=24, height=6), bars=True),
    ], collapsed=True)
    return board(t, UID, "agentwatch: insights",
                 "Why containers die and what comes next: memory watermarks, trends and time to limit, crash causes, "
                 "health scores.",
                 ["insights"],
                 [*job_and_instance("agentwatch_build_info"), *service_and_container(),
                  query_variable("group", "Process group",
                                 'label_values(agentwatch_process_group_memory_trend{job=~"$job", '
                                 'instance=~"$instance"}, group)', ".*", "A process group of the exporter config.")],
                 [scores, memory, limit_row, crashes, groups])

"""Fleet overview: the dashboard an SRE keeps open: states, memory against limits, crashes, alerts, capacity."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from agentwatch_dashboards.panels import (
    CONTAINERS,
    RED,
    Kit,
    Look,
    Query,
    Row,
    board,
    falling,
    flat,
    increase,
    job_and_instance,
    rate,
    rising,
    sel,
    service_and_container,
)
from agentwatch_dashboards.thresholds import Thresholds

UID = "agentwatch-fleet"


def build(t: Thresholds) -> Dashboard:
    kit = Kit(t)
    warn, crit = t.number("container_memory_warning_ratio"), t.number("container_memory_critical_ratio")
    host = rising(t.number("host_memory_warning_ratio"), t.number("host_memory_critical_ratio"),
                  t.number("host_memory_exhausted_ratio"))
    window = t.text("crash_loop_window")

    def c(metric: str, *matchers: str) -> str:
        return sel(metric, *CONTAINERS, *matchers)

    ratio = c("agentwatch_container_memory_working_set_ratio")
    # What the exporter of each host sees (an agent server scraped directly is its own instance).
    host_only = f"and on (instance) {sel('agentwatch_build_info')}"
    now = Row("Now", [
        kit.bars(Look(
            "Containers by state", "How many containers are in each engine state now (exited and dead ones "
            "included while the exporter keeps them).", "short",
            [Query(f"sum by (state) ({c('agentwatch_container_state')})", "{{state}}")], flat(), width=6)),
        kit.stat(Look(
            "Firing alerts", "agentwatch alerts firing now, by severity (pending ones are in the table below).",
            "short", [Query('count by (severity) (ALERTS{alertname=~"Agent.*", alertstate="firing"})',
                            "{{severity}}")], rising(1), width=6, no_value="0")),
        kit.gauge(Look(
            "Host memory used", "1 - available / total. The lines are the host memory alerts' levels: past "
            "them new agents risk OOM kills.", "percentunit",
            [Query(sel("agentwatch_host_memory_used_ratio"), "{{instance}}")], host, "AgentHostMemoryHigh",
            width=6, minimum=0, maximum=1)),
        kit.stat(Look(
            "Docker engine up", "1 while the engine answered the last collection: container panels are blank "
            "without it.", "bool", [Query(sel("agentwatch_docker_up"), "{{instance}}")], falling(1),
            "AgentwatchDockerDown", width=6)),
    ])
    memory = Row("Memory", [
        kit.timeseries(Look(
            "Memory against limit", "Working set / memory limit per container: what the OOM killer compares. "
            "The dashed lines are the warning and critical alert levels.", "percentunit",
            [Query(ratio, "{{container}}")], rising(warn, crit), "AgentContainerMemoryNearLimit",
            width=12, height=9, minimum=0), lines=True, legend_table=True),
        kit.bars(Look(
            "Top containers by memory ratio", "The ten containers closest to their memory limit now, coloured "
            "by the alert levels.", "percentunit", [Query(f"topk(10, {ratio})", "{{container}}")],
            rising(warn, crit), "AgentContainerMemoryCritical", width=12, height=9, minimum=0, maximum=1)),
        kit.timeseries(Look(
            "Working set and limit", "Working set in bytes next to each container's limit (unlimited "
            "containers show no limit line).", "bytes",
            [Query(c("agentwatch_container_memory_working_set_bytes"), "{{container}}"),
             Query(f"{c('agentwatch_container_memory_limit_bytes')} > 0", "{{container}} limit")])),
        kit.timeseries(Look(
            "Host memory available", "Memory available to new processes without swapping, per host.", "bytes",
            [Query(sel("agentwatch_host_memory_available_bytes"), "{{instance}}")])),
        kit.timeseries(Look(
            "CPU used / limit", "CPU time used over the CPU limit: sustained above the line, lower the agents' "
            "concurrency.", "percentunit",
            [Query(f"{rate('agentwatch_container_cpu_usage_seconds_total', *CONTAINERS)} / on (instance, container) "
                   f"({c('agentwatch_container_cpu_limit_cores')} > 0)", "{{container}}")],
            rising(t.number("cpu_warning_ratio")), "AgentContainerCPUHigh", minimum=0), lines=True),
    ])
    crashes = Row("Crashes and restarts", [
        kit.timeseries(Look(
            "Crash causes over time", "Container deaths by cause as agentwatch classified them: oom, memory_leak, "
            "memory_spike, signal, error, clean. Every known container starts at 0, so the first crash shows.",
            "short", [Query(f"sum by (cause) ({increase('agentwatch_container_crashes_total', *CONTAINERS)})",
                            "{{cause}}")], flat(RED), "AgentContainerOOMKilled", width=12), stack=True, bars=True),
        kit.timeseries(Look(
            f"Restarts and dies ({window})", f"Restarts and die events over the crash-loop window ({window}), "
            "as the crash-loop alert counts them; the line is its threshold.", "short",
            [Query(f'container:agentwatch_container_restarts:increase{window}{{instance=~"$instance", '
                   'compose_service=~"$service", container=~"$container"}', "{{container}} restarts"),
             Query(f'container:agentwatch_container_dies:increase{window}{{instance=~"$instance", '
                   'compose_service=~"$service", container=~"$container"}', "{{container}} dies")],
            rising(t.number("crash_loop_restarts_count")), "AgentContainerCrashLooping", width=12), lines=True),
        kit.timeseries(Look(
            "OOM kills", "OOM events from the engine and kernel OOM kills in each container's cgroup (a child "
            "agent killed in a container that survives counts too).", "short",
            [Query(f"sum by (container) ({increase('agentwatch_container_oom_events_total', *CONTAINERS)})",
                   "{{container}} oom events"),
             Query(f"sum by (container) ({increase('agentwatch_container_memory_oom_kills_total', *CONTAINERS)})",
                   "{{container}} cgroup kills")], flat(RED), "AgentContainerOOMKilled", width=12), bars=True),
        kit.table(Look(
            "Last exit", "Each container's last exit code (137: SIGKILL, often the OOM killer) and whether that "
            "run ended in an OOM kill.", "short",
            [Query(c("agentwatch_container_last_exit_code"), "exit code"),
             Query(c("agentwatch_container_oom_killed"), "oom killed")], flat(), "AgentContainerRetriesExhausted",
            width=12), hide=("Time", "__name__", "job", "image", "compose_project")),
    ])
    alerts = Row("Alerts", [
        kit.table(Look(
            "Firing and pending alerts", "Every agentwatch alert Prometheus holds now (ALERTS), with its labels. "
            "Each alert's runbook is linked from its annotations and from this dashboard's Runbooks link.",
            "short", [Query('ALERTS{alertname=~"Agent.*"}', "{{alertname}}")], flat(), width=24, height=7),
            hide=("Time", "__name__", "Value")),
    ])
    capacity = Row("Capacity", [
        kit.timeseries(Look(
            "Recommended concurrency against agents running", "Agents running on each host against the "
            "recommended maximum (the memory the agents could use over the per-agent RSS quantile, less the "
            "safety margin) and the servers' configured maximum, as each host's exporter sees them.", "short",
            [Query(f"sum by (instance) ({sel('agentwatch_agents_running')} {host_only})", "running {{instance}}"),
             Query('instance:agentwatch_agent_concurrency:recommended_max{instance=~"$instance"}',
                   "recommended max {{instance}}"),
             Query(f"sum by (instance) ({sel('agentwatch_app_max_concurrency')} {host_only})",
                   "configured max {{instance}}")],
            flat(), "AgentConcurrencyAboveRecommended", width=12, minimum=0)),
        kit.timeseries(Look(
            "CPU throttled", "Share of CFS periods in which the container was throttled: it wanted more CPU than "
            "its limit.", "percentunit",
            [Query(f"{rate('agentwatch_container_cpu_throttled_periods_total', *CONTAINERS)} / on (instance, "
                   f"container) ({rate('agentwatch_container_cpu_periods_total', *CONTAINERS)} > 0)",
                   "{{container}}")], width=12, minimum=0)),
    ])
    io = Row("Network and disk", [
        kit.timeseries(Look(
            "Network", "Bytes per second received (positive) and sent, all interfaces but lo.", "Bps",
            [Query(rate("agentwatch_container_network_receive_bytes_total", *CONTAINERS), "{{container}} rx"),
             Query(rate("agentwatch_container_network_transmit_bytes_total", *CONTAINERS), "{{container}} tx")],
            width=12)),
        kit.timeseries(Look(
            "Block IO", "Bytes per second read from and written to block devices.", "Bps",
            [Query(rate("agentwatch_container_blkio_read_bytes_total", *CONTAINERS), "{{container}} read"),
             Query(rate("agentwatch_container_blkio_write_bytes_total", *CONTAINERS), "{{container}} write")],
            width=12)),
    ], collapsed=True)
    exporter = Row("agentwatch itself", [
        kit.timeseries(Look(
            "Collector success", "1 when the collector's last collection succeeded: a 0 means the panels fed by "
            "it are stale.", "bool", [Query(sel("agentwatch_collector_success"), "{{collector}}")],
            falling(1), "AgentwatchCollectorFailing", width=6, minimum=0, maximum=1)),
        kit.timeseries(Look(
            "Collector duration (mean)", "Mean time one collection took, per collector.", "s",
            [Query(f"{rate('agentwatch_collector_duration_seconds_sum')} / "
                   f"({rate('agentwatch_collector_duration_seconds_count')} > 0)", "{{collector}}")], width=6)),
        kit.timeseries(Look(
            "Collection cycle", "Wall time of the last full collection cycle (all collectors, concurrently).", "s",
            [Query(sel("agentwatch_collection_cycle_duration_seconds"), "{{instance}}")], width=6)),
        kit.stat(Look(
            "Event stream connected", "1 while the engine's event stream is connected: the die and oom counters "
            "need it.", "bool", [Query(sel("agentwatch_docker_events_up"), "{{instance}}")], falling(1),
            "AgentwatchDockerEventsDown", width=6)),
    ], collapsed=True)
    return board(t, UID, "agentwatch: fleet overview",
                 "Containers, memory against limits, crashes and their causes, firing alerts and capacity, per host.",
                 ["fleet", "docker"], [*job_and_instance("agentwatch_build_info"), *service_and_container()],
                 [now, memory, crashes, alerts, capacity, io, exporter])

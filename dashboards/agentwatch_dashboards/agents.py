"""Agents: what each agent costs and how runs go: per-agent RSS, run durations, stuck agents, process groups."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from agentwatch_dashboards.panels import (
    RED,
    Kit,
    Look,
    Query,
    Row,
    board,
    flat,
    increase,
    job_and_instance,
    once,
    quantile,
    query_variable,
    rate,
    rising,
    sel,
    server_variables,
)
from agentwatch_dashboards.thresholds import Thresholds

UID = "agentwatch-agents"
SERVER = 'server=~"$server"'
GROUP = 'group=~"$group"'
RUNS = "agentwatch_agent_run_duration_seconds"


def build(t: Thresholds) -> Dashboard:
    kit = Kit(t)
    q = t.number("agent_memory_quantile")
    pct = f"p{q * 100:g}"
    rss = "agentwatch_process_group_process_rss_bytes"
    running = Row("Running agents", [
        kit.timeseries(Look(
            "Agents running by model", "Agents each server lists as running, by model.", "short",
            [Query(once(sel("agentwatch_agents_running", SERVER), "server, model"), "{{server}} {{model}}")],
            width=8, minimum=0),
            stack=True),
        kit.timeseries(Look(
            "Running against max concurrency", "Agents running on each server next to its maximum of concurrent "
            "agents (what the scaler lowers under memory pressure).", "short",
            [Query(f"sum by (server) ({once(sel('agentwatch_agents_running', SERVER), 'server, model')})",
                   "running {{server}}"),
             Query(once(sel("agentwatch_app_max_concurrency", SERVER), "server"), "max {{server}}")],
            width=8, minimum=0)),
        kit.stat(Look(
            "Stuck agents", "Agents listed as running whose process or container is gone (typically after an OOM "
            "kill): they hold a concurrency slot forever.", "short",
            [Query(f"sum by (server) ({once(sel('agentwatch_agents_stuck_running', SERVER), 'server, model')})",
                   "{{server}}")],
            rising(1), "AgentStuckRunning", width=4)),
        kit.stat(Look(
            "Oldest running agent", "Age of the oldest agent each server lists as running.", "s",
            [Query(once(sel("agentwatch_agent_oldest_running_seconds", SERVER), "server"), "{{server}}")], flat(),
            width=4,
            ), background=False),
        kit.timeseries(Look(
            "Agent containers' memory against limit", "Working set / limit of the containers the selected servers "
            "run in (service and container variables); the dashed lines are the memory alert levels.",
            "percentunit", [Query(sel("agentwatch_container_memory_working_set_ratio", 'compose_service=~"$service"',
                                      'container=~"$container"'), "{{container}}")],
            rising(t.number("container_memory_warning_ratio"), t.number("container_memory_critical_ratio")),
            "AgentContainerMemoryNearLimit", width=24, height=7, minimum=0), lines=True),
    ])
    runs = Row("Runs", [
        kit.timeseries(Look(
            "Runs finished by outcome", "Agent runs that finished per interval, by outcome (error, killed and "
            "timeout runs lost their work).", "short",
            [Query(f"sum by (outcome) "
                   f"({once(increase('agentwatch_agent_runs_total', SERVER), 'server, model, outcome')})",
                   "{{outcome}}")],
            width=8), stack=True, bars=True),
        kit.timeseries(Look(
            "Run duration p50 / p95", "How long finished runs took, per model.", "s",
            [Query(quantile(0.5, RUNS, "model", SERVER, once="server, model"), "p50 {{model}}"),
             Query(quantile(0.95, RUNS, "model", SERVER, once="server, model"), "p95 {{model}}")],
            width=8)),
        kit.heatmap(Look(
            "Run durations", "Finished runs per duration bucket over time: a band moving up means agents take "
            "longer.", "s",
            [Query(f"sum by (le) ({once(increase(RUNS + '_bucket', SERVER), 'server, model, le')})", "{{le}}")],
            width=8)),
    ])
    memory = Row("Memory per agent", [
        kit.heatmap(Look(
            "Per-agent RSS", "How many agent processes hold how much resident memory, now and over time (from "
            "the per-process gauge histogram): the basis of the recommended concurrency.", "bytes",
            [Query(f"sum by (le) ({sel(rss + '_bucket', GROUP)})", "{{le}}")], width=12)),
        kit.timeseries(Look(
            f"Per-agent RSS {pct} by group", f"The {pct} of one agent process's resident memory, per group: the "
            "quantile the recommended-concurrency rule divides by.", "bytes",
            [Query(f"histogram_quantile({q:g}, sum by (group, le) ({sel(rss + '_bucket', GROUP)}))",
                   "{{group}}")], width=6)),
        kit.timeseries(Look(
            "Mean RSS per agent by model", "Resident memory per agent process, averaged per group and model "
            "(about 2 GB for small models, 4-5 GB mid-size, 6 GB the largest).", "bytes",
            [Query(f"sum by (group, model) ({sel(rss + '_gsum', GROUP)}) / "
                   f"(sum by (group, model) ({sel(rss + '_gcount', GROUP)}) > 0)", "{{group}} {{model}}")],
            width=6)),
    ])
    groups = Row("Process groups", [
        kit.timeseries(Look(
            "Processes by group", "Agent processes in each group (the process matchers of the exporter config).",
            "short", [Query(sel("agentwatch_process_group_processes", GROUP), "{{group}} {{model}}")],
            width=8, minimum=0)),
        kit.timeseries(Look(
            "RSS by group", "Resident memory of each group's processes, summed.", "bytes",
            [Query(sel("agentwatch_process_group_memory_rss_bytes", GROUP), "{{group}} {{model}}")], width=8),
            stack=True),
        kit.timeseries(Look(
            "CPU by group", "CPU cores each group's live processes use.", "short",
            [Query(rate("agentwatch_process_group_cpu_seconds_total", GROUP), "{{group}} {{model}}")], width=8)),
        kit.timeseries(Look(
            "Oldest process age", "Age of each group's oldest process: an agent older than its longest run is "
            "likely stuck.", "s",
            [Query(sel("agentwatch_process_group_oldest_age_seconds", GROUP), "{{group}} {{model}}")], width=8)),
        kit.timeseries(Look(
            "Open files and threads", "File descriptors and threads of each group's processes: a steady climb is "
            "a leak.", "short",
            [Query(sel("agentwatch_process_group_open_fds", GROUP), "{{group}} fds"),
             Query(sel("agentwatch_process_group_threads", GROUP), "{{group}} threads")], width=8)),
        kit.timeseries(Look(
            "Scan skips", "Processes or reads skipped during scans, by reason (vanished is normal churn; "
            "access_denied means the exporter lacks permissions).", "short",
            [Query(f"sum by (reason) ({increase('agentwatch_process_scan_skipped_total')})", "{{reason}}")],
            flat(RED), width=8), bars=True),
    ])
    return board(t, UID, "agentwatch: agents",
                 "What one agent costs and how runs go: per-agent memory, run durations and outcomes, stuck "
                 "agents, agent process groups.",
                 ["agents"],
                 [*job_and_instance("agentwatch_build_info", "agentwatch_app_info"), *server_variables(),
                  query_variable("group", "Process group",
                                 'label_values(agentwatch_process_group_processes{job=~"$job", '
                                 'instance=~"$instance"}, group)', ".*", "A process group of the exporter config.")],
                 [running, runs, memory, groups])

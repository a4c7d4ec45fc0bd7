"""Agent server: is each probed server healthy, fast and keeping up: sub-checks, probes, requests, queue, pools."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from agentwatch_dashboards.panels import (
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
    once,
    quantile,
    rate,
    rising,
    sel,
    server_variables,
)
from agentwatch_dashboards.thresholds import Thresholds

UID = "agentwatch-server"
SERVER = 'server=~"$server"'
POOL = "server, pool"
LATENCY = "agentwatch_app_request_duration_seconds"


def build(t: Thresholds) -> Dashboard:
    kit = Kit(t)
    health = Row("Health", [
        kit.table(Look(
            "Health sub-checks", "The current status of each sub-check the servers report (database, model API, "
            "memory, pools...). unhealthy for long fires AgentHealthCheckFailing.", "short",
            [Query(f"{once(sel('agentwatch_app_health_status', SERVER), 'server, check, status')} == 1", "{{check}}")],
            flat(),
            "AgentHealthCheckFailing", width=8), hide=("Time", "Value")),
        kit.timeseries(Look(
            "Probe success", "1 when the last probe of the endpoint answered in time with a usable body: 0 for "
            "long is an unresponsive server.", "bool",
            [Query(sel("agentwatch_probe_success", SERVER), "{{server}} {{endpoint}}")], falling(1),
            "AgentServerUnresponsive", width=8, minimum=0, maximum=1)),
        kit.stat(Look(
            "Live, ready, draining", "Liveness and readiness endpoints (1 = OK) and whether the server is draining "
            "(1 = draining: not ready on purpose).", "short",
            [Query(once(sel("agentwatch_app_live", SERVER), "server"), "live {{server}}"),
             Query(once(sel("agentwatch_app_ready", SERVER), "server"), "ready {{server}}"),
             Query(once(sel("agentwatch_app_draining", SERVER), "server"), "draining {{server}}")], flat(),
            "AgentServerNotReady", width=8)),
        kit.timeseries(Look(
            "Event loop lag", "Event loop lag the server measured; the line is the alert level (a blocked loop "
            "stalls every agent on the server).", "s",
            [Query(once(sel("agentwatch_app_event_loop_lag_seconds", SERVER), "server"), "{{server}}")],
            rising(t.number("event_loop_lag_seconds")), "AgentEventLoopLagHigh", width=12, minimum=0),
            lines=True),
        kit.timeseries(Look(
            "Dependency latency", "Latency of each dependency as the server reports it in its health sub-checks; "
            "the line is the alert level.", "s",
            [Query(once(sel("agentwatch_app_dependency_latency_seconds", SERVER), "server, check"),
                   "{{server}} {{check}}")],
            rising(t.number("dependency_latency_seconds")), "AgentDependencySlow", width=12, minimum=0),
            lines=True),
    ])
    requests = Row("Requests and queue", [
        kit.timeseries(Look(
            "Request rate", "Requests per second each server handled.", "reqps",
            [Query(once(rate("agentwatch_app_requests_total", SERVER), "server"), "{{server}}")],
            width=6, minimum=0)),
        kit.timeseries(Look(
            "Error ratio", "Share of requests that ended in a server error (5xx); the line is the alert level.",
            "percentunit",
            [Query(f"{once(rate('agentwatch_app_request_errors_total', SERVER), 'server')} / "
                   f"({once(rate('agentwatch_app_requests_total', SERVER), 'server')} > 0)", "{{server}}")],
            rising(t.number("error_warning_ratio")), "AgentErrorRatioHigh", width=6, minimum=0), lines=True),
        kit.timeseries(Look(
            "Request duration p50 / p95", "Time the server took to answer, from its own latency histogram.", "s",
            [Query(quantile(0.5, LATENCY, "server", SERVER, once="server"), "p50 {{server}}"),
             Query(quantile(0.95, LATENCY, "server", SERVER, once="server"), "p95 {{server}}")],
            width=6)),
        kit.timeseries(Look(
            "Queue depth", "Agents waiting for a free slot; above the line for long the fleet is short of "
            "replicas (AgentQueueBacklog, the scale-out signal).", "short",
            [Query(once(sel("agentwatch_app_queue_depth", SERVER), "server"), "{{server}}")],
            rising(t.number("queue_backlog_count")), "AgentQueueBacklog", width=6, minimum=0), lines=True),
    ])
    probes = Row("Probes", [
        kit.timeseries(Look(
            "Probe latency p50 / p99", "Round trip of agentwatch's probes per endpoint (timeouts count as the "
            "timeout).", "s",
            [Query(quantile(0.5, "agentwatch_probe_duration_seconds", "server, endpoint", SERVER),
                   "p50 {{server}} {{endpoint}}"),
             Query(quantile(0.99, "agentwatch_probe_duration_seconds", "server, endpoint", SERVER),
                   "p99 {{server}} {{endpoint}}")], width=12)),
        kit.timeseries(Look(
            "Probe failures by reason", "Failed probes per interval: timeout, connect, auth, http_status, "
            "not_json, too_large, missing_field (a field mapping to fix), bad_type, error.", "short",
            [Query(f"sum by (server, reason) ({increase('agentwatch_probe_failures_total', SERVER)})",
                   "{{server}} {{reason}}")], flat(RED), "AgentServerUnresponsive", width=12), bars=True),
    ])
    pools = Row("Pools", [
        kit.timeseries(Look(
            "Pool utilisation", "Clients checked out over the pool's maximum; the line is the alert level "
            "(exhausted with waiters is the scale-out signal).", "percentunit",
            [Query(f"{once(sel('agentwatch_pool_in_use', SERVER), POOL)} / "
                   f"({once(sel('agentwatch_pool_max_size', SERVER), POOL)} > 0)", "{{server}} {{pool}}")],
            rising(t.number("pool_utilization_warning_ratio")), "AgentPoolUtilizationHigh", width=6, minimum=0),
            lines=True),
        kit.timeseries(Look(
            "Pool waiting", "Callers waiting for a client: any for long means the pool is exhausted.", "short",
            [Query(once(sel("agentwatch_pool_waiting", SERVER), POOL), "{{server}} {{pool}}")], rising(1),
            "AgentPoolExhausted", width=6, minimum=0)),
        kit.timeseries(Look(
            "Pool wait p95", "How long callers waited for a client.", "s",
            [Query(quantile(0.95, "agentwatch_pool_wait_seconds", POOL, SERVER, once=POOL), "{{server}} {{pool}}")],
            width=6)),
        kit.timeseries(Look(
            "Pool size and evictions", "Clients open per pool, and clients evicted per interval (LRU or idle "
            "cleanup: a high churn costs reconnects).", "short",
            [Query(once(sel("agentwatch_pool_size", SERVER), POOL), "open {{server}} {{pool}}"),
             Query(once(increase("agentwatch_pool_evictions_total", SERVER), POOL), "evicted {{server}} {{pool}}")],
            width=6)),
    ])
    where = Row("Where the servers run", [
        kit.table(Look(
            "Servers and their containers", "Each probed server with the container and compose service it runs "
            "in (from the probe config): the join between the server alerts and the container panels.", "short",
            [Query(once(sel("agentwatch_app_info", SERVER, 'compose_service=~"$service"', 'container=~"$container"'),
                        "server, container, compose_service"), "{{server}}")], width=24, height=6),
            hide=("Time", "Value")),
    ], collapsed=True)
    return board(t, UID, "agentwatch: agent server",
                 "Each probed agent server: health sub-checks, probes, request rate, errors and latency, queue "
                 "depth, client pools.",
                 ["agent-server"], [*job_and_instance("agentwatch_app_info"), *server_variables()],
                 [health, requests, probes, pools, where])

"""Instrumentation for Python agent servers: export the probe metrics' names directly.

An aiohttp or ASGI agent server creates one ``AgentMetrics(server="name")`` and gets, in a
``CollectorRegistry`` it owns (never the global one), the same families the exporter's probe
collector builds from probing it: running agents, run durations and outcomes, pool figures,
requests, errors and their latency, queue depth, event-loop lag, health sub-checks, and the
``agentwatch_app_info`` series that names the server's container. Names, help texts and buckets
come from ``agentwatch.catalog``, and every series carries the constant ``server`` label, so alert
rules and dashboards work whichever path a server uses::

    metrics = AgentMetrics(server="agents-1", compose_service="agent")   # where it runs: agentwatch_app_info
    app = web.Application(middlewares=[metrics.aiohttp_middleware])   # requests, 5xx, latency histogram
    pool = metrics.pool("mcp", max_size=20)
    lag = LoopLagMonitor(metrics)                    # start() in a cleanup context
    app.router.add_get("/metrics", metrics.metrics_handler)
    app.router.add_get("/api/health", metrics.health_handler({"db": check_db}, lag_threshold=1.0))

    async with metrics.agent_run("sonnet") as run:   # running gauge, duration, outcome
        ...
    metrics.queue_depth = len(queued)                # agents waiting for a slot

The modules: ``metrics`` (AgentMetrics), ``runs`` (one agent run), ``pool`` (a client pool's
figures), ``health`` (checks into a health body), ``lag`` (event-loop lag), ``http`` (aiohttp and
ASGI glue).
"""

from __future__ import annotations

from agentwatch.instrument.lag import LoopLagMonitor
from agentwatch.instrument.metrics import OTHER, AgentMetrics
from agentwatch.instrument.pool import PoolMetrics
from agentwatch.instrument.runs import RUN_OUTCOMES, AgentRun

__all__ = ["OTHER", "RUN_OUTCOMES", "AgentMetrics", "AgentRun", "LoopLagMonitor", "PoolMetrics"]

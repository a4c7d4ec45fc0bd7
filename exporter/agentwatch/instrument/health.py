"""Run a server's health checks and fold them, with the event-loop lag, into one health body."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agentwatch.vocabulary import health_state

Check = Callable[[], Awaitable[Any]]


async def _one(fn: Check, check_timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        result = await asyncio.wait_for(fn(), timeout=check_timeout)
    except TimeoutError:
        result = {"status": "unhealthy", "error": f"no answer within {check_timeout:g}s"}
    except Exception as exc:
        result = {"status": "unhealthy", "error": type(exc).__name__}
    item = dict(result) if isinstance(result, dict) else {"status": result}
    item["status"] = health_state(item.get("status"))
    item.setdefault("latency_ms", round((time.perf_counter() - start) * 1000, 3))
    return item


async def evaluate(checks: Mapping[str, Check], lag: float, lag_threshold: float,
                   check_timeout: float) -> tuple[str, dict[str, dict[str, Any]]]:
    """(overall status, one dict per check): the checks run concurrently, each under ``check_timeout``;
    raising or timing out makes a check unhealthy, and so does a lag above ``lag_threshold``."""
    names = list(checks)
    results = await asyncio.gather(*(_one(checks[n], check_timeout) for n in names))
    out: dict[str, dict[str, Any]] = dict(zip(names, results, strict=True))
    out["event_loop"] = {"status": "unhealthy" if lag > lag_threshold else "healthy",
                         "lag_seconds": round(lag, 6), "threshold_seconds": lag_threshold}
    states = {c["status"] for c in out.values()}
    overall = ("unhealthy" if "unhealthy" in states
               else "degraded" if states & {"degraded", "unknown"} else "healthy")
    return overall, out

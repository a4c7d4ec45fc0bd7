"""The JSON of ``GET /api/crashes`` and ``GET /api/health`` (schema: docs/insights.md).

Pure functions from the service's state and the query string to (status, body); the server's
handlers only call them. A bad parameter is a 400 with one line saying which and why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from agentwatch.insights.crashes import CAUSES
from agentwatch.insights.service import ContainerRow, InsightService

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
DISABLED = {"error": "insights are disabled (insights.enabled: false, or no docker or processes collector)"}


class BadQuery(ValueError):
    """A query parameter the API cannot use; the message is the 400 body's error."""


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadQuery(f"limit: expected an integer from 1 to {MAX_LIMIT} (got {raw[:40]!r})")
    return int(raw)


def _since(query: Mapping[str, str]) -> float | None:
    raw = query.get("since")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BadQuery(f"since: expected Unix seconds (got {raw[:40]!r})")
    return value


def _cause(query: Mapping[str, str]) -> str | None:
    raw = query.get("cause")
    if raw is not None and raw not in CAUSES:
        raise BadQuery(f"cause: expected one of {', '.join(CAUSES)} (got {raw[:40]!r})")
    return raw


def _container(query: Mapping[str, str]) -> str | None:
    raw = query.get("container")
    if raw is not None and not 0 < len(raw) <= 256:
        raise BadQuery("container: expected a container name of 1 to 256 characters")
    return raw


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null, in nested values too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def crashes_payload(service: InsightService | None, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Recent crash insights, newest first (runs SQLite queries: call it off the event loop)."""
    if service is None:
        return 503, DISABLED
    try:
        limit, since, cause, container = _limit(query), _since(query), _cause(query), _container(query)
    except BadQuery as exc:
        return 400, {"error": str(exc)}
    store = service.store
    crashes = [i.as_json() for i in service.recent(limit, container, cause, since)]
    return 200, finite({"generated_at": time.time(),
                        "store": {"persistent": store.persistent, "path": store.path, "records": store.records()},
                        "crashes": crashes})


def _container_json(row: ContainerRow) -> dict[str, Any]:
    r, view = row.reading, row.view
    labels = (*r.labels, "", "", "", "")[:4]
    memory = {
        "working_set_bytes": view.value if view else None,
        "limit_bytes": r.limit if r.limit > 0 else None,
        "ratio": round(view.ratio, 4) if view and view.ratio is not None else None,
        "watermark_bytes": view.watermark if view else None,
        "trend": view.trend if view else "stable",
        "slope_bytes_per_second": round(view.slope, 3) if view else 0.0,
        "seconds_to_limit": round(view.seconds_to_limit, 1) if view and view.seconds_to_limit is not None else None,
        "threshold": view.threshold if view else "normal",
    }
    last = row.last_crash
    return {"container": labels[0], "container_id": r.id[:12], "image": labels[1], "compose_project": labels[2],
            "compose_service": labels[3], "state": r.state, "health": r.health, "score": row.score.score,
            "parts": [p.as_json() for p in row.score.parts], "memory": memory, "crashes_in_window": row.crashes,
            "last_crash": {"at": last[0], "cause": last[1], "exit_code": last[2]} if last else None}


def health_payload(service: InsightService | None, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Scores of the host, every container (worst first) and the agent groups, from the last turn."""
    if service is None:
        return 503, DISABLED
    try:
        container = _container(query)
    except BadQuery as exc:
        return 400, {"error": str(exc)}
    report = service.report
    if report is None:
        return 200, {"generated_at": time.time(), "host": None, "containers": [], "process_groups": []}
    total, available = report.host_memory if report.host_memory else (None, None)
    host = {"score": report.host.score, "parts": [p.as_json() for p in report.host.parts],
            "memory_total_bytes": total, "memory_available_bytes": available,
            "memory_used_ratio": round(1 - available / total, 4) if total and available is not None else None}
    rows = [_container_json(r) for r in report.containers if container is None or r.reading.name == container]
    groups = [{"group": g.group, "processes": g.processes, "rss_bytes": g.rss, "watermark_bytes": g.view.watermark,
               "trend": g.view.trend, "slope_bytes_per_second": round(g.view.slope, 3)} for g in report.groups]
    return 200, finite({"generated_at": report.at, "host": host, "containers": rows, "process_groups": groups})

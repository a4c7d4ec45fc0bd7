"""Answers shaped like the exporter's /api/crashes and /api/health (docs/insights.md), for the
renderers and the loopback stand-in; ``EVIL`` strings stand where the engine's untrusted ones go."""

from __future__ import annotations

import copy
from typing import Any

MiB = 1 << 20
NOW = 1718000000.0
#: Would run, colour a terminal or break out of an attribute if it were not escaped.
EVIL_PROJECT = "<script>document.title='pwned'</script>\"'&"
EVIL_SERVICE = "\"><img src=x onerror=alert(1)><i id=\"pwned\">[bold red]x[/]"
EVIL_NAME = "evil-\x1b[31mred\x1b[0m-1"

_LEAK = {
    "id": 42, "at": NOW - 250, "container": "agents-worker-1", "container_id": "0123456789ab",
    "image": "agent:local", "compose_project": "agents", "compose_service": "worker",
    "exit_code": 137, "signal": 9, "oom": True, "cause": "memory_leak",
    "summary": "OOM-killed after its working set grew 1.2 MiB/s for 4m10s",
    "evidence": {"limit_bytes": 64 * MiB, "watermark_bytes": 63 * MiB, "last_working_set_bytes": 62 * MiB,
                 "last_ratio": 0.969, "samples": 50, "trend": "growing", "slope_bytes_per_second": 1258291.2,
                 "growing_seconds": 250.0, "last_rise_bytes": MiB, "restart_policy": "on-failure",
                 "max_retries": 3, "restart_count": 1, "agents_before": 2, "agents_at_crash": 5},
    "patterns": [{"kind": "repeated", "detail": "3rd memory_leak crash of agents-worker-1 in 1h", "count": 3}],
    "recommendations": [
        {"action": "raise_memory_limit", "value": 80 * MiB,
         "text": "raise the memory limit from 64 MiB to 80 MiB (highest working set 63 MiB plus 25%)"},
        {"action": "find_leak", "value": None, "text": "find the leak: the working set grew for 4m10s"}],
}
_ERROR = {
    "id": 41, "at": NOW - 3700, "container": EVIL_NAME, "container_id": "fedcba987654", "image": "agent:local",
    "compose_project": EVIL_PROJECT, "compose_service": EVIL_SERVICE, "exit_code": 1, "signal": None, "oom": False,
    "cause": "error", "summary": f"exited 1 ({EVIL_SERVICE})",
    "evidence": {k: None for k in _LEAK["evidence"]},
    "patterns": [], "recommendations": [{"action": "read_logs", "value": None, "text": "read its logs"}],
}

CRASHES: dict[str, Any] = {
    "generated_at": NOW,
    "store": {"persistent": True, "path": "/var/lib/agentwatch/insights.sqlite3", "records": 2},
    "crashes": [_LEAK, _ERROR],
}


def _container(name: str, score: int, ws: float | None, limit: float | None, threshold: str, trend: str,
               slope: float, to_limit: float | None, project: str = "agents", service: str = "worker",
               crashes: int = 0) -> dict[str, Any]:
    ratio = ws / limit if ws is not None and limit else None
    return {"container": name, "container_id": "0123456789ab", "image": "agent:local", "compose_project": project,
            "compose_service": service, "state": "running" if ws is not None else "exited", "health": "none",
            "score": score,
            "parts": [{"part": "state", "penalty": 0, "detail": "running"},
                      {"part": "memory", "penalty": 100 - score, "detail": f"working set {threshold}"},
                      {"part": "trend", "penalty": 0, "detail": trend},
                      {"part": "crashes", "penalty": 0, "detail": "no crash in the last 1h"}],
            "memory": {"working_set_bytes": ws, "limit_bytes": limit, "ratio": ratio, "watermark_bytes": ws,
                       "trend": trend, "slope_bytes_per_second": slope, "seconds_to_limit": to_limit,
                       "threshold": threshold},
            "crashes_in_window": crashes,
            "last_crash": {"at": NOW - 250, "cause": "memory_leak", "exit_code": 137} if crashes else None}


HEALTH: dict[str, Any] = {
    "generated_at": NOW,
    "host": {"score": 82,
             "parts": [{"part": "memory", "penalty": 10, "detail": "host memory 84% used (warning at 80%)"},
                       {"part": "containers", "penalty": 5, "detail": "mean container score 90"},
                       {"part": "crashes", "penalty": 3, "detail": "1 crash in the last 1h"},
                       {"part": "leaks", "penalty": 0, "detail": "nothing projected to reach its limit within 1h"}],
             "memory_total_bytes": 8192 * MiB, "memory_available_bytes": 1311 * MiB, "memory_used_ratio": 0.84},
    "containers": [
        _container("agents-worker-1", 55, 59 * MiB, 64 * MiB, "critical", "growing", 1258291.2, 240.0, crashes=1),
        _container(EVIL_NAME, 70, 26 * MiB, 32 * MiB, "warning", "stable", 0.0, None, EVIL_PROJECT, EVIL_SERVICE),
        _container("agents-steady-1", 100, 16 * MiB, None, "normal", "stable", 0.0, None),
        _container("agents-gone-1", 90, None, 64 * MiB, "normal", "stable", 0.0, None),
    ],
    "process_groups": [{"group": "claude-code", "processes": 3, "rss_bytes": 1536 * MiB, "watermark_bytes": 1600 * MiB,
                        "trend": "stable", "slope_bytes_per_second": 0.0}],
}


def crashes() -> dict[str, Any]:
    return copy.deepcopy(CRASHES)


def health() -> dict[str, Any]:
    return copy.deepcopy(HEALTH)

"""The words agent servers use for health and run outcomes, and the states agentwatch exports.

Shared by the probe collector (which reads servers' bodies) and ``agentwatch.instrument`` (which
agent servers import to serve them), so neither reaches into the other. The normalised health
states are ``catalog.APP_HEALTH_STATES``, the label values of ``agentwatch_app_health_status``.
"""

from __future__ import annotations

from typing import Any

#: The words servers use for each normalised health state (catalog.APP_HEALTH_STATES but unknown).
_HEALTH_WORDS = {
    "healthy": {"ok", "healthy", "up", "pass", "passed", "passing", "green", "true", "good", "ready", "available",
                "alive", "operational", "online"},
    "degraded": {"degraded", "warn", "warning", "yellow", "partial", "slow", "partially_available"},
    "unhealthy": {"unhealthy", "down", "fail", "failed", "failing", "error", "critical", "red", "false", "bad",
                  "unavailable", "dead", "offline", "timeout"},
}
#: Outcomes of finished agent runs; ``lost`` is added by the collector for agents that were stuck.
OUTCOMES = ("success", "error", "cancelled", "lost", "unknown")
_OUTCOME_WORDS = {
    "success": {"success", "succeeded", "successful", "completed", "complete", "done", "finished", "ok", "exited"},
    "error": {"error", "errored", "failed", "failure", "crashed", "killed", "oom", "oom_killed", "oomkilled",
              "timeout", "timed_out", "timedout"},
    "cancelled": {"cancelled", "canceled", "stopped", "aborted", "interrupted", "terminated"},
    "lost": {"lost", "orphaned", "stuck", "vanished"},
}


def _classify(value: Any, words: dict[str, set[str]], true: str, false: str) -> str:
    """The key of ``words`` whose set holds the status word (any case, - or space for _); bools map to
    ``true``/``false``; anything else is unknown."""
    if isinstance(value, bool):
        return true if value else false
    if isinstance(value, str):
        word = value.strip().lower().replace("-", "_").replace(" ", "_")
        for name, names in words.items():
            if word in names:
                return name
    return "unknown"


def health_state(value: Any) -> str:
    """A server's status word (or bool) as one of healthy, degraded, unhealthy, unknown."""
    return _classify(value, _HEALTH_WORDS, "healthy", "unhealthy")


def outcome_of(value: Any) -> str:
    """A finished run's status word (or bool) as one of ``OUTCOMES``."""
    return _classify(value, _OUTCOME_WORDS, "success", "error")

"""Health scores, 0 to 100, explained by their parts.

A score starts at 100 and each part takes a penalty off it, with a sentence saying why, so the
number is never a mystery. Container parts, in order:

- ``state``: running 0; paused 10; running but its healthcheck unhealthy 25; restarting 30;
  exited with a non-zero (or unknown) code, or dead, 40; exited 0 or created 0;
- ``memory``: threshold state normal 0, warning 10, critical 25, oom_imminent 40;
- ``trend``: growing with the limit projected inside the horizon 15, growing without a limit 5;
- ``crashes``: 10 per non-clean crash inside the pattern window, at most 30.

Host parts: ``memory`` (the host's used ratio against the same thresholds, same penalties),
``containers`` (half of what the mean container score lacks of 100), ``crashes`` (5 per non-clean
crash in the window, at most 25), ``leaks`` (5 per container or group projected to reach its limit
inside the horizon, at most 15).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentwatch.insights.crashes import human_bytes, human_seconds
from agentwatch.insights.memory import MemoryView, Thresholds

MEMORY_PENALTY = {"normal": 0, "warning": 10, "critical": 25, "oom_imminent": 40}


@dataclass(frozen=True, slots=True)
class HealthSettings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    horizon_seconds: float = 3600.0
    pattern_window_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class Part:
    part: str
    penalty: int
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"part": self.part, "penalty": self.penalty, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Score:
    score: int
    parts: tuple[Part, ...]

    @classmethod
    def of(cls, parts: Sequence[Part]) -> Score:
        return cls(max(0, 100 - sum(p.penalty for p in parts)), tuple(parts))


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def state_part(state: str, health: str, exit_code: int | None) -> Part:
    if state == "running":
        if health == "unhealthy":
            return Part("state", 25, "running, but its healthcheck says unhealthy")
        return Part("state", 0, "running" + (f", healthcheck {health}" if health not in ("none", "") else ""))
    if state == "paused":
        return Part("state", 10, "paused")
    if state == "restarting":
        return Part("state", 30, "restarting (waiting out the restart policy's backoff)")
    if state in ("exited", "dead"):
        if state == "exited" and exit_code == 0:
            return Part("state", 0, "exited cleanly (exit 0)")
        code = "an unknown code" if exit_code is None else f"code {exit_code}"
        return Part("state", 40, f"{state}, last exit with {code}")
    return Part("state", 0, state or "unknown")


def memory_part(view: MemoryView | None, settings: HealthSettings) -> Part:
    if view is None or view.value is None:
        return Part("memory", 0, "not running: no working set")
    ratio = view.ratio
    if ratio is None:
        return Part("memory", 0, f"working set {human_bytes(view.value)}, no memory limit")
    at = settings.thresholds.level(view.threshold)
    if view.threshold == "oom_imminent" and ratio < settings.thresholds.oom_imminent \
            and view.seconds_to_limit is not None:
        why = f" (limit projected in {human_seconds(view.seconds_to_limit)})"
    elif at is not None:
        why = f" ({view.threshold.replace('_', ' ')} at {_pct(at)})"
    else:
        why = ""
    return Part("memory", MEMORY_PENALTY[view.threshold], f"working set {_pct(ratio)} of the limit{why}")


def trend_part(view: MemoryView | None, settings: HealthSettings) -> Part:
    if view is None or view.trend != "growing":
        return Part("trend", 0, "not growing" if view is None else view.trend)
    rate = f"growing {human_bytes(view.slope)}/s"
    if view.seconds_to_limit is not None:
        if view.seconds_to_limit <= settings.horizon_seconds:
            return Part("trend", 15, f"{rate}; limit in {human_seconds(view.seconds_to_limit)}")
        return Part("trend", 0, f"{rate}; limit in {human_seconds(view.seconds_to_limit)}, beyond the horizon")
    if view.limit <= 0:
        return Part("trend", 5, f"{rate}, no memory limit to stop it")
    return Part("trend", 0, rate)


def crashes_part(count: int, last_cause: str | None, settings: HealthSettings) -> Part:
    window = human_seconds(settings.pattern_window_seconds)
    if count <= 0:
        return Part("crashes", 0, f"no crash in the last {window}")
    plural = "crash" if count == 1 else "crashes"
    return Part("crashes", min(30, 10 * count), f"{count} {plural} in the last {window} (last: {last_cause})")


def container_score(state: str, health: str, exit_code: int | None, view: MemoryView | None, crashes: int,
                    last_cause: str | None, settings: HealthSettings) -> Score:
    return Score.of([state_part(state, health, exit_code), memory_part(view, settings), trend_part(view, settings),
                     crashes_part(crashes, last_cause, settings)])


def host_score(used_ratio: float | None, container_scores: Sequence[int], crashes: int, leaking: int,
               settings: HealthSettings) -> Score:
    if used_ratio is None:
        memory = Part("memory", 0, "host memory not read (processes collector off)")
    else:
        state = settings.thresholds.state(used_ratio)
        limit = settings.thresholds.level(state)
        memory = Part("memory", MEMORY_PENALTY[state], f"host memory {_pct(used_ratio)} used"
                      + (f" ({state.replace('_', ' ')} at {_pct(limit)})" if limit is not None else ""))
    if container_scores:
        mean = sum(container_scores) / len(container_scores)
        containers = Part("containers", round((100 - mean) / 2), f"mean container score {mean:.0f} "
                          f"over {len(container_scores)}")
    else:
        containers = Part("containers", 0, "no containers")
    window = human_seconds(settings.pattern_window_seconds)
    crash = Part("crashes", min(25, 5 * crashes), f"{crashes} crash{'es' if crashes != 1 else ''} in the last {window}")
    horizon = human_seconds(settings.horizon_seconds)
    leaks = Part("leaks", min(15, 5 * leaking), f"{leaking} projected to reach a memory limit within {horizon}"
                 if leaking else f"nothing projected to reach its limit within {horizon}")
    return Score.of([memory, containers, crash, leaks])

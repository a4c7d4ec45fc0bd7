"""Why a container died, whether it keeps happening, and what to change: pure functions over evidence.

Classification (``classify``), from what the engine said and the samples before the death:

- ``oom``: exit 137 with the engine's OOMKilled flag, or an ``oom`` event for the container right
  before the death, when the samples cannot say more (none were taken, or they neither grew nor rose);
- ``memory_leak``: an OOM after the working set grew without a break for ``leak_min_seconds``, on a
  line that reaches the warning ratio of the limit by the death (or had samples above it): the
  growth explains the kill, where a small slope after a start and then one big allocation does not;
- ``memory_spike``: an OOM after a sharp rise in the last samples (``spike_rise_ratio`` of the
  limit, and more than twice what the slope before it predicts: a steady leak sampled sparsely
  rises in big steps too), or with no sample above the warning ratio: a real OOM can fill 32 MiB
  between two 5-second samples, so "never near the limit" means the end came at once;
- ``signal``: killed by another signal (exit 128+n, or 137 without any OOM evidence);
- ``error``: any other non-zero exit;
- ``clean``: exit 0.

Patterns (``find_patterns``): the same container dying repeatedly of the same cause; a death that
follows a rise in running agents; an ``on-failure`` restart budget used up. Recommendations
(``recommend``) follow the evidence; every insight carries at least one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from agentwatch.insights.memory import RunSummary

CAUSES = ("oom", "memory_leak", "memory_spike", "signal", "error", "clean")
OOM_CAUSES = frozenset({"oom", "memory_leak", "memory_spike"})
PATTERN_KINDS = ("repeated", "agents_rise", "budget_exhausted")

MiB = 1024 * 1024
GB = 1_000_000_000
#: Round recommended limits up to this step.
LIMIT_STEP = 16 * MiB
_NODE = re.compile(r"(?:^|[\s/])(?:node|nodejs|npm|npx)(?:\s|$)")
_SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV",
                 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM"}


@dataclass(frozen=True, slots=True)
class CrashSettings:
    """The knobs of classification and advice (``insights:`` in the config)."""

    warning_ratio: float = 0.80
    leak_min_seconds: float = 300.0
    spike_rise_ratio: float = 0.20
    limit_margin_ratio: float = 0.25
    pattern_window_seconds: float = 3600.0
    repeat_count: int = 3
    agents_lookback_seconds: float = 600.0
    #: Memory one agent needs, by model size (the field figures: ~2 GB, 4-5 GB, 6 GB).
    agent_memory_bytes: tuple[tuple[str, float], ...] = (("small", 2 * GB), ("mid", 4.5 * GB), ("large", 6 * GB))
    agent_size: str = "mid"

    @property
    def per_agent_bytes(self) -> float:
        return dict(self.agent_memory_bytes).get(self.agent_size, 4.5 * GB)


@dataclass(frozen=True, slots=True)
class Death:
    """One end of a container run, as the engine reported it."""

    container_id: str
    #: container, image, compose_project, compose_service, then ``label_*`` values
    labels: tuple[str, ...]
    at: float
    exit_code: int
    #: An ``oom`` event came for the container just before, or the engine's OOMKilled flag was set.
    oom: bool

    @property
    def name(self) -> str:
        return self.labels[0]


@dataclass(frozen=True, slots=True)
class Context:
    """What else was known when the container died."""

    restart_policy: str = "no"
    max_retries: int = 0
    restart_count: int = 0
    command: str = ""
    image: str = ""
    host_memory_total: float | None = None
    agents_before: int | None = None
    agents_at: int | None = None
    #: Earlier crashes of this container with the same cause inside the pattern window.
    same_cause_before: int = 0


@dataclass
class Insight:
    """One classified death with its evidence, patterns and recommendations (a stored record)."""

    at: float
    container: str
    container_id: str
    image: str
    compose_project: str
    compose_service: str
    exit_code: int | None
    signal: int | None
    oom: bool
    cause: str
    summary: str
    evidence: dict[str, Any]
    patterns: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The /api/crashes object (see docs and /work/brief/insights-api.md)."""
        return {"id": self.id, "at": self.at, "container": self.container, "container_id": self.container_id,
                "image": self.image, "compose_project": self.compose_project,
                "compose_service": self.compose_service, "exit_code": self.exit_code, "signal": self.signal,
                "oom": self.oom, "cause": self.cause, "summary": self.summary, "evidence": self.evidence,
                "patterns": self.patterns, "recommendations": self.recommendations}


def signal_of(exit_code: int | None) -> int | None:
    """n for an exit code of 128+n (1 <= n <= 64, what a shell or the engine reports), else None."""
    if exit_code is None or not 129 <= exit_code <= 192:
        return None
    return exit_code - 128


def leak_explains(run: RunSummary, at: float, settings: CrashSettings) -> bool:
    """Sustained growth that reaches the limit's warning ratio by the death at ``at`` (if limited)."""
    if run.trend != "growing" or run.growing_seconds < settings.leak_min_seconds:
        return False
    if run.limit <= 0:
        return True
    reach = (run.last_value or 0.0) + run.slope * max(0.0, at - (run.last_at or at))
    return max(reach, run.max_value or 0.0) >= settings.warning_ratio * run.limit


def classify(exit_code: int, oom: bool, run: RunSummary | None, settings: CrashSettings,
             at: float | None = None) -> str:
    """The cause of one death at ``at`` (see the module docstring for the rules and their order)."""
    if not oom:
        if exit_code == 0:
            return "clean"
        return "signal" if signal_of(exit_code) is not None else "error"
    if run is None or run.samples == 0:
        return "oom"
    if sharp_rise(run, settings):
        return "memory_spike"
    if leak_explains(run, run.last_at or 0.0 if at is None else at, settings):
        return "memory_leak"
    if run.limit > 0 and (run.max_ratio or 0.0) < settings.warning_ratio:
        return "memory_spike"
    return "oom"


def sharp_rise(run: RunSummary, settings: CrashSettings) -> bool:
    """The last samples jumped by ``spike_rise_ratio`` of the limit, far above the earlier slope."""
    if run.limit <= 0 or run.last_rise < settings.spike_rise_ratio * run.limit:
        return False
    return run.last_rise > 2 * max(0.0, run.slope_before_last) * run.last_rise_seconds


def evidence_of(run: RunSummary | None, watermark: float | None, ctx: Context) -> dict[str, Any]:
    """The /api/crashes ``evidence`` object: every key present, null when unknown."""
    limit = run.limit if run is not None and run.limit > 0 else None
    return {
        "limit_bytes": limit,
        "watermark_bytes": watermark,
        "last_working_set_bytes": run.last_value if run else None,
        "last_ratio": _round(run.last_ratio) if run else None,
        "samples": run.samples if run else 0,
        "trend": run.trend if run else None,
        "slope_bytes_per_second": _round(run.slope) if run else None,
        "growing_seconds": _round(run.growing_seconds) if run else None,
        "last_rise_bytes": run.last_rise if run else None,
        "restart_policy": ctx.restart_policy,
        "max_retries": ctx.max_retries,
        "restart_count": ctx.restart_count,
        "agents_before": ctx.agents_before,
        "agents_at_crash": ctx.agents_at,
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n:.0f} B"


def human_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s" if s < 600 else f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}".rstrip("0").rstrip(".") + "h"


def summary_of(cause: str, exit_code: int, run: RunSummary | None) -> str:
    """A one-line human summary of the death."""
    sig = signal_of(exit_code)
    if cause == "memory_leak" and run is not None:
        return (f"OOM-killed after its working set grew {human_bytes(run.slope)}/s for "
                f"{human_seconds(run.growing_seconds)}")
    if cause == "memory_spike" and run is not None:
        peak = f"{(run.max_ratio or 0) * 100:.0f}%" if run.limit > 0 else human_bytes(run.max_value or 0)
        return f"OOM-killed by a sudden allocation (highest sample {peak} of the limit)"
    if cause == "oom":
        return "OOM-killed" + (" with no memory samples of that run" if run is None or not run.samples else "")
    if cause == "signal" and sig is not None:
        return f"killed by {_SIGNAL_NAMES.get(sig, f'signal {sig}')} (exit {exit_code}), not by the OOM killer"
    if cause == "error":
        return f"exited with error code {exit_code}"
    return "exited cleanly (exit 0)"


def find_patterns(cause: str, death: Death, ctx: Context, settings: CrashSettings,
                  running_after: bool | None) -> list[dict[str, Any]]:
    """The patterns this death is part of (see the module docstring)."""
    found: list[dict[str, Any]] = []
    count = ctx.same_cause_before + 1
    if cause != "clean" and count >= settings.repeat_count:
        found.append({"kind": "repeated", "count": count,
                      "detail": f"{_ordinal(count)} {cause} crash of {death.name} in "
                                f"{human_seconds(settings.pattern_window_seconds)}"})
    if agents_rose(ctx.agents_before, ctx.agents_at):
        found.append({"kind": "agents_rise", "count": ctx.agents_at,
                      "detail": f"running agents rose from {ctx.agents_before} to {ctx.agents_at} in the "
                                f"{human_seconds(settings.agents_lookback_seconds)} before"})
    if budget_exhausted(death.exit_code, ctx, running_after):
        found.append(budget_pattern(ctx.max_retries))
    return found


def budget_pattern(max_retries: int) -> dict[str, Any]:
    return {"kind": "budget_exhausted", "count": max_retries,
            "detail": f"on-failure:{max_retries} used up; the engine will not restart it"}


def agents_rose(before: int | None, at: int | None) -> bool:
    """A rise worth naming: at least one more agent, and at least a quarter more."""
    return before is not None and at is not None and at - before >= max(1, math.ceil(0.25 * before))


def budget_exhausted(exit_code: int, ctx: Context, running_after: bool | None) -> bool:
    """An on-failure policy whose retries are all spent, and the container left stopped."""
    return (ctx.restart_policy == "on-failure" and ctx.max_retries > 0 and exit_code != 0
            and ctx.restart_count >= ctx.max_retries and running_after is False)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _rec(action: str, text: str, value: float | None = None) -> dict[str, Any]:
    return {"action": action, "text": text, "value": value}


def recommended_limit(limit: float, watermark: float | None, margin: float) -> float:
    """The observed high (the limit itself after an OOM) plus the margin, rounded up."""
    base = max(limit, watermark or 0.0)
    return math.ceil(base * (1 + margin) / LIMIT_STEP) * LIMIT_STEP


def is_node(ctx: Context) -> bool:
    return bool(_NODE.search(ctx.command)) or "node" in ctx.image.rsplit("/", 1)[-1].split(":")[0]


def recommend(cause: str, death: Death, run: RunSummary | None, watermark: float | None, ctx: Context,
              patterns: list[dict[str, Any]], settings: CrashSettings) -> list[dict[str, Any]]:
    """Advice that follows the evidence; never empty."""
    recs: list[dict[str, Any]] = []
    kinds = {p["kind"] for p in patterns}
    limit = run.limit if run is not None else 0.0
    name = death.name
    if cause == "memory_leak" and run is not None:
        to_limit = (f"; at {human_bytes(run.slope)}/s a limit twice as large lasts about "
                    f"{human_seconds(limit / run.slope)} more") if limit > 0 and run.slope > 0 else ""
        recs.append(_rec("find_leak", f"its memory grew without a break for {human_seconds(run.growing_seconds)} "
                         f"before the kill: a leak, which a larger limit only postpones{to_limit}; profile the "
                         "process (a heap snapshot) and restart it on a schedule before it reaches the limit"))
    if cause in OOM_CAUSES and limit > 0:
        new = recommended_limit(limit, watermark, settings.limit_margin_ratio)
        seen = human_bytes(max(watermark or 0.0, limit))
        recs.append(_rec("raise_memory_limit",
                         f"raise the memory limit of {name} from {human_bytes(limit)} to {human_bytes(new)} "
                         f"(highest working set seen {seen}, the limit itself after an OOM, plus "
                         f"{settings.limit_margin_ratio * 100:.0f}%)", new))
    elif cause in OOM_CAUSES:
        recs.append(_rec("raise_memory_limit", f"{name} has no memory limit, so the host ran out: give it a limit "
                         "that fits next to the other containers, and lower the concurrency on this host"))
    if cause in OOM_CAUSES and ("agents_rise" in kinds or (ctx.agents_at or 0) > 0):
        capacity = limit if limit > 0 else (ctx.host_memory_total or 0.0)
        per_agent = settings.per_agent_bytes
        fits = max(1, int(capacity // per_agent)) if capacity > 0 else 1
        value = min(fits, max(1, (ctx.agents_at or fits + 1) - 1))
        where = f"{human_bytes(capacity)} fits {fits}" if capacity > 0 else "one agent at a time until a limit is set"
        recs.append(_rec("lower_max_concurrency",
                         f"lower maxConcurrency to {value}: plan about 2 GB per agent for small models, 4-5 GB "
                         f"for mid-size and 6 GB for the largest; {where} at {human_bytes(per_agent)} each"
                         + (f" (agents rose from {ctx.agents_before} to {ctx.agents_at} just before)"
                            if "agents_rise" in kinds else ""), value))
    if cause in OOM_CAUSES and is_node(ctx) and limit > 0:
        heap = int(limit * 0.75 // MiB)
        recs.append(_rec("set_node_max_old_space_size",
                         f"it runs Node: set NODE_OPTIONS=--max-old-space-size={heap} (MiB, 75% of the limit) so "
                         "V8 collects garbage hard before the kernel kills the container", heap))
    if cause == "memory_leak" or cause == "signal":
        why = ("restart it on your schedule before the projected limit instead of letting the kernel kill it"
               if cause == "memory_leak" else
               "a signal other than the OOM killer stopped it (docker stop/kill, a deploy, or a stop that ran out "
               "of its grace period)")
        recs.append(_rec("drain_before_restart",
                         f"{why}: drain the agent server before a restart (stop new work, wait for running agents) "
                         "and give the stop a grace period longer than the longest agent run "
                         "(docker stop -t, stop_grace_period)"))
    if cause == "error":
        repeat = (" It failed the same way on each start, so it is a configuration or dependency problem, "
                  "not a transient one." if "repeated" in kinds else "")
        recs.append(_rec("read_logs", f"the application exited with code {death.exit_code}: read "
                         f"`docker logs --tail 100 {name}` for the error.{repeat}"))
    if "budget_exhausted" in kinds:
        recs.append(_rec("fix_then_start", f"the on-failure:{ctx.max_retries} restart budget is used up and the "
                         f"engine will not restart {name}: fix the cause, then `docker start {name}`"))
    if cause == "clean":
        recs.append(_rec("none", "exit 0: no action if the stop was expected; if it should keep running, find what "
                         "told it to stop (its logs, a deploy) and use restart policy unless-stopped"))
    if not recs:  # an oom with nothing else to say
        recs.append(_rec("raise_memory_limit", f"{name} was OOM-killed: give it more memory or run fewer agents in it"))
    return recs


def insight_of(death: Death, run: RunSummary | None, watermark: float | None, ctx: Context,
               settings: CrashSettings, running_after: bool | None) -> Insight:
    """Classify one death and attach its evidence, patterns and recommendations."""
    cause = classify(death.exit_code, death.oom, run, settings, death.at)
    patterns = find_patterns(cause, death, ctx, settings, running_after)
    labels = (*death.labels, "", "", "", "")[:4]
    return Insight(at=death.at, container=labels[0], container_id=death.container_id[:12], image=labels[1],
                   compose_project=labels[2], compose_service=labels[3], exit_code=death.exit_code,
                   signal=signal_of(death.exit_code), oom=death.oom, cause=cause,
                   summary=summary_of(cause, death.exit_code, run), evidence=evidence_of(run, watermark, ctx),
                   patterns=patterns,
                   recommendations=recommend(cause, death, run, watermark, ctx, patterns, settings))

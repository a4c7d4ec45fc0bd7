"""The answers of ``/api/crashes`` and ``/api/health`` as typed, read-only models.

The CLI validates what an exporter answers against these (a wrong shape is one clear line, not a
traceback); the fleet page renders from them too. Unknown keys are ignored so a newer exporter's
additions do not break an older CLI. Vocabulary fields (cause, trend, threshold...) stay plain
strings for the same reason: the views colour the words they know and show others as they are.
"""

from __future__ import annotations

from typing import Any

from agentwatch.schema import Field, Model, ValidationError


class Answer(Model, extra="ignore"):
    """Base of the answers: unknown keys are ignored, values never change."""


class Evidence(Answer):
    limit_bytes: float | None = None
    watermark_bytes: float | None = None
    last_working_set_bytes: float | None = None
    last_ratio: float | None = None
    samples: int | None = None
    trend: str | None = None
    slope_bytes_per_second: float | None = None
    growing_seconds: float | None = None
    restart_policy: str | None = None
    max_retries: int | None = None
    restart_count: int | None = None
    agents_before: int | None = None
    agents_at_crash: int | None = None


class Pattern(Answer):
    kind: str
    detail: str
    count: int | None = None


class Recommendation(Answer):
    action: str
    text: str
    value: float | None = None


class Crash(Answer):
    id: int
    at: float
    container: str
    container_id: str = ""
    image: str = ""
    compose_project: str = ""
    compose_service: str = ""
    exit_code: int | None = None
    signal: int | None = None
    oom: bool = False
    cause: str
    summary: str = ""
    evidence: Evidence = Field(default_factory=Evidence)
    patterns: list[Pattern] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)


class Store(Answer):
    persistent: bool = False
    path: str | None = None
    records: int | None = None


class CrashesAnswer(Answer):
    generated_at: float
    store: Store = Field(default_factory=Store)
    crashes: list[Crash]


class Part(Answer):
    part: str
    penalty: int
    detail: str = ""


class Host(Answer):
    score: int
    parts: list[Part] = Field(default_factory=list)
    memory_total_bytes: float | None = None
    memory_available_bytes: float | None = None
    memory_used_ratio: float | None = None


class Memory(Answer):
    working_set_bytes: float | None = None
    limit_bytes: float | None = None
    ratio: float | None = None
    watermark_bytes: float | None = None
    trend: str = "stable"
    slope_bytes_per_second: float | None = None
    seconds_to_limit: float | None = None
    threshold: str = "normal"


class LastCrash(Answer):
    at: float
    cause: str
    exit_code: int | None = None


class ContainerHealth(Answer):
    container: str
    container_id: str = ""
    image: str = ""
    compose_project: str = ""
    compose_service: str = ""
    state: str = ""
    health: str = ""
    score: int
    parts: list[Part] = Field(default_factory=list)
    memory: Memory = Field(default_factory=Memory)
    crashes_in_window: int = 0
    last_crash: LastCrash | None = None


class ProcessGroup(Answer):
    group: str
    processes: int = 0
    rss_bytes: float | None = None
    watermark_bytes: float | None = None
    trend: str = "stable"
    slope_bytes_per_second: float | None = None


class HealthAnswer(Answer):
    generated_at: float
    host: Host | None = None  # null until the first collection turn
    containers: list[ContainerHealth]
    process_groups: list[ProcessGroup] = Field(default_factory=list)


class BadAnswer(ValueError):
    """An answer that is not what the API documents; the message is one line naming the field."""


def first_problem(exc: ValidationError) -> str:
    """The first validation problem as ``dotted.path: message`` (the rest counted)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first.loc) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.msg}{more}"


def parse_crashes(data: Any) -> CrashesAnswer:
    try:
        return CrashesAnswer.model_validate(data)
    except ValidationError as exc:
        raise BadAnswer(first_problem(exc)) from None


def parse_health(data: Any) -> HealthAnswer:
    try:
        return HealthAnswer.model_validate(data)
    except ValidationError as exc:
        raise BadAnswer(first_problem(exc)) from None

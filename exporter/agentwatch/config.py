"""Typed configuration for the exporter, validated on load.

Every model forbids unknown keys, so a typo is an error rather than a silent default. Errors
name the file, the dotted key and what was expected (see ``ConfigError``). The scaler keeps its
policy models in ``agentwatch.scaler.config`` and loads them through ``load_model`` here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, key and expectation."""


class Strict(BaseModel):
    """Base for config models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def parse_listen(value: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 as [::1]:PORT); raise ValueError with what was expected."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as {DEFAULT_LISTEN}, got {value!r}")
    return host.strip("[]"), int(port)


class DockerConfig(Strict):
    """Where the engine is and how container stats are read."""

    enabled: bool = True
    #: Engine address; None means DOCKER_HOST or the default socket.
    host: str | None = None
    #: auto: cgroup files when visible, else one-shot stats through the API.
    stats_source: Literal["auto", "cgroup", "api"] = "auto"
    cgroup_root: str = "/sys/fs/cgroup"
    proc_root: str = "/proc"
    #: Container labels exported as metric labels (label_<name>); keep this list short.
    label_allowlist: list[str] = Field(default_factory=list, max_length=10)
    #: Only containers whose name matches this regex (None: all).
    name_filter: str | None = None
    include_stopped: bool = True
    timeout_seconds: float = Field(default=4.0, gt=0, le=300)
    #: Concurrent engine calls (inspect, one-shot stats) in the bounded executor.
    max_concurrency: int = Field(default=8, ge=1, le=64)
    #: Cap on containers exported, to bound cardinality.
    max_containers: int = Field(default=500, ge=1, le=10000)
    events: bool = True

    _regex = field_validator("name_filter")(_check_regex)


class ProcessMatcher(Strict):
    """One agent group: processes matching all the given conditions."""

    name: str = Field(min_length=1, pattern=r"^[a-zA-Z_][a-zA-Z0-9_.-]*$")
    #: Exact process name (psutil's name(), the kernel's comm truncated to 15 chars).
    process_name: str | None = None
    #: Regex searched in the space-joined cmdline; named groups become labels (bounded).
    cmdline: str | None = None
    #: Regex the parent process's name must match.
    parent: str | None = None
    #: Only processes inside a container (True), outside (False), or either (None).
    in_container: bool | None = None

    _regex = field_validator("cmdline", "parent")(_check_regex)

    @model_validator(mode="after")
    def _needs_a_condition(self) -> ProcessMatcher:
        if not (self.process_name or self.cmdline):
            raise ValueError("a process group needs process_name or cmdline")
        return self


def default_process_groups() -> list[ProcessMatcher]:
    """Common agent runtimes, so the exporter is useful with no config file."""
    return [
        ProcessMatcher(name="claude-code", cmdline=r"(^|/)(claude|claude-code)(\s|$)"),
        ProcessMatcher(name="python-agent", cmdline=r"python[0-9.]*\s.*\bagent[\w-]*(\.py)?\b(.*--model[= ](?P<model>[\w.-]+))?"),
        ProcessMatcher(name="node-agent", cmdline=r"node\s.*\bagent[\w-]*(\.[cm]?js)?\b(.*--model[= ](?P<model>[\w.-]+))?"),
    ]


class PerProcessConfig(Strict):
    enabled: bool = False
    max_series: int = Field(default=100, ge=1, le=10000)


class ProcessesConfig(Strict):
    enabled: bool = True
    groups: list[ProcessMatcher] = Field(default_factory=default_process_groups)
    per_process: PerProcessConfig = Field(default_factory=PerProcessConfig)
    #: Read USS (needs /proc/<pid>/smaps_rollup; costs more). Off by default for large fleets.
    uss: bool = False
    #: Cap on label sets per group from regex named groups, to bound cardinality.
    max_label_sets_per_group: int = Field(default=50, ge=1, le=1000)
    timeout_seconds: float = Field(default=4.0, gt=0, le=300)
    proc_root: str = "/proc"

    @model_validator(mode="after")
    def _unique_names(self) -> ProcessesConfig:
        names = [g.name for g in self.groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"process group names must be unique, repeated: {', '.join(dupes)}")
        return self


class ProbeEndpoints(Strict):
    """Paths (None disables one) and the JMESPath expressions that pick fields out of the JSON."""

    health: str | None = "/api/health"
    live: str | None = "/live"
    ready: str | None = "/ready"
    running: str | None = "/api/agents/running"
    deploy_status: str | None = "/api/deploy/status"
    pools: str | None = "/api/pools"
    metrics_fields: dict[str, str] = Field(default_factory=dict)


class ProbeTarget(Strict):
    """One agent server the exporter probes."""

    name: str = Field(min_length=1, pattern=r"^[a-zA-Z0-9_.:-]+$")
    url: str = Field(pattern=r"^https?://")
    #: Environment variable holding the API key (sent as X-API-Key; never logged).
    api_key_env: str | None = None
    #: File holding the API key (first line).
    api_key_file: str | None = None
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    endpoints: ProbeEndpoints = Field(default_factory=ProbeEndpoints)
    #: JMESPath expressions, by field name; see the README's probe section.
    fields: dict[str, str] = Field(default_factory=dict)

    def api_key(self) -> str | None:
        """The key from the environment or a file; None when neither is set."""
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if value:
                return value.strip()
        if self.api_key_file:
            try:
                return Path(self.api_key_file).read_text().splitlines()[0].strip()
            except (OSError, IndexError):
                return None
        return None


class ExporterConfig(Strict):
    """The whole exporter config file."""

    listen: str = DEFAULT_LISTEN
    interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    docker: DockerConfig = Field(default_factory=DockerConfig)
    processes: ProcessesConfig = Field(default_factory=ProcessesConfig)
    probes: list[ProbeTarget] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value


M = TypeVar("M", bound=BaseModel)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``file: key: what was expected (got ...)``."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        key = _dotted(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and not isinstance(err["input"], dict | list):
                msg += f" (got {err['input']!r})"
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def load_model(path: str | os.PathLike[str] | None, model: type[M]) -> M:
    """Read a YAML file into a model; None gives the model's defaults."""
    if path is None:
        return model()
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load(path: str | os.PathLike[str] | None) -> ExporterConfig:
    """The exporter config from a file, or the documented defaults."""
    return load_model(path, ExporterConfig)

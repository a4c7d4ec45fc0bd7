"""The exporter's config models: docker, processes, probes and the top level.

Loading, error messages, secrets, listen addresses and flag overrides live in
``agentwatch.configfile``, shared with the scaler's policy models.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from agentwatch.configfile import ListenAddress, Strict, check_regex, load_model, read_secret, require_unique_names
from agentwatch.schema import Field, field_validator, model_validator

DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
#: Bounds on the lists a config may hold: each group is matched against every process each cycle,
#: each probe server has its own task and connections.
MAX_PROCESS_GROUPS = 256
MAX_PROBE_SERVERS = 100


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
    #: Follow the engine's event stream for die/oom counters (a daemon thread, reconnects by itself).
    events: bool = True
    #: While the engine does not answer, the containers' series from the last collection it answered
    #: are kept this long (their last_seen timestamp shows their age), so container alerts do not
    #: resolve because the engine hung; 0 drops them at once.
    keep_last_known_seconds: float = Field(default=900.0, ge=0, le=86400)

    _regex = field_validator("name_filter")(check_regex)

    @staticmethod
    def metric_label(label: str) -> str:
        """The metric label a container label is exported as: ``agent.tier`` -> ``label_agent_tier``."""
        return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)

    @field_validator("label_allowlist")
    @classmethod
    def _distinct_labels(cls, labels: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for label in labels:
            if not label:
                raise ValueError("container label names cannot be empty")
            name = cls.metric_label(label)
            if name in seen:
                raise ValueError(f"{seen[name]!r} and {label!r} would both be exported as {name}")
            seen[name] = label
        return labels


#: Label names a cmdline regex's named groups may not take: they are already on the families.
RESERVED_PROCESS_LABELS = frozenset({"group", "pid", "le"})
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ProcessMatcher(Strict):
    """One agent group: processes matching all the given conditions."""

    name: str = Field(min_length=1, pattern=r"^[a-zA-Z_][a-zA-Z0-9_.-]*$")
    #: Exact process name (the kernel's comm; names longer than 15 chars compare on the first 15).
    process_name: str | None = None
    #: Regex searched in the space-joined cmdline; named groups become labels (bounded).
    cmdline: str | None = None
    #: Regex the parent process's name must match as a whole (narrows process_name/cmdline).
    parent: str | None = None
    #: Only processes inside a container (True), outside (False), or either (None).
    in_container: bool | None = None

    _regex = field_validator("cmdline", "parent")(check_regex)

    @field_validator("cmdline")
    @classmethod
    def _label_names(cls, value: str | None) -> str | None:
        for name in re.compile(value).groupindex if value else ():
            if name in RESERVED_PROCESS_LABELS or name.startswith("__") or not _LABEL_NAME.match(name):
                raise ValueError(f"named group {name!r} cannot be a label name (reserved: "
                                 f"{', '.join(sorted(RESERVED_PROCESS_LABELS))}, and names starting with __)")
        return value

    @model_validator(mode="after")
    def _needs_a_condition(self) -> ProcessMatcher:
        if not (self.process_name or self.cmdline):
            raise ValueError("a process group needs process_name or cmdline (parent and in_container only narrow it)")
        return self


# Pieces of the default matchers: an optional directory, interpreter options, and the --model flag.
_DIR = r"(?:\S*/)?"
_OPTS = r"(?:\s+-\S+)*"
_END = r"(?=\s|$)"
_MODEL = r"(?:.*?\s--model[= ](?P<model>[\w.:@/-]+))?"


def default_process_groups() -> list[ProcessMatcher]:
    """Common agent runtimes, so the exporter is useful with no config file.

    Each matcher anchors on the executable (or the script an interpreter runs), so a shell or a
    ``grep`` that merely mentions an agent is not counted; agentwatch itself and pytest never match.
    """
    node = rf"{_DIR}(?:node(?:js)?|bun|deno){_OPTS}\s+"
    return [
        ProcessMatcher(name="claude-code", cmdline=(
            rf"^(?:(?:{node})?{_DIR}claude(?:-code)?{_END}|{node}\S*@anthropic-ai/claude-code/\S*){_MODEL}")),
        ProcessMatcher(name="agent-cli", cmdline=(
            rf"^(?:{node}|{_DIR}python[0-9.]*{_OPTS}\s+)?{_DIR}"
            rf"(?P<runtime>codex|gemini|aider|goose|opencode|openhands|cursor-agent){_END}{_MODEL}")),
        ProcessMatcher(name="python-agent", cmdline=(
            rf"^{_DIR}python[0-9.]*{_OPTS}\s+{_DIR}(?![\w.-]*agentwatch)[\w.-]*agent[\w.-]*{_END}{_MODEL}")),
        ProcessMatcher(name="node-agent", cmdline=(
            rf"^{node}{_DIR}(?![\w.-]*agentwatch)[\w.@-]*agent[\w.-]*{_END}{_MODEL}")),
    ]


class PerProcessConfig(Strict):
    """Per-process series (``agentwatch_process_memory_rss_bytes{group,pid}``): off by default, capped."""

    enabled: bool = False
    #: At most this many series; the processes with the largest RSS are kept.
    max_series: int = Field(default=100, ge=1, le=10000)


class ProcessesConfig(Strict):
    """The agent-process collector: groups of processes read from /proc."""

    enabled: bool = True
    #: A process joins the first group that matches (every process is matched each cycle: bounded).
    groups: list[ProcessMatcher] = Field(default_factory=default_process_groups, max_length=MAX_PROCESS_GROUPS)
    per_process: PerProcessConfig = Field(default_factory=PerProcessConfig)
    #: Read USS (needs /proc/<pid>/smaps_rollup; costs more). Off by default for large fleets.
    uss: bool = False
    #: Cap on label sets per group from regex named groups, to bound cardinality.
    max_label_sets_per_group: int = Field(default=50, ge=1, le=1000)
    timeout_seconds: float = Field(default=4.0, gt=0, le=300)
    proc_root: str = "/proc"

    @field_validator("groups")
    @classmethod
    def _unique_names(cls, groups: list[ProcessMatcher]) -> list[ProcessMatcher]:
        return require_unique_names(groups, "process group")


def _check_jmespath(value: str | None) -> str | None:
    if value is not None:
        import jmespath
        from jmespath.exceptions import JMESPathError

        try:
            jmespath.compile(value)
        except JMESPathError as exc:
            raise ValueError(f"not a valid JMESPath expression: {str(exc).splitlines()[0]}") from None
    return value


def _check_path(value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise ValueError("expected a path starting with / (or null to disable the endpoint)")
    return value


class ProbeEndpoints(Strict):
    """Paths probed on the server, relative to its URL; null disables one."""

    health: str | None = "/api/health"
    live: str | None = "/live"
    ready: str | None = "/ready"
    running: str | None = "/api/agents/running"
    deploy_status: str | None = "/api/deploy/status"
    pools: str | None = "/api/pools"
    #: Optional endpoint with request and error counters (they are also looked for in health).
    stats: str | None = None

    _paths = field_validator("*")(_check_path)


class ProbeFields(Strict):
    """JMESPath expressions that pick fields out of the JSON bodies; the defaults fit common shapes.

    ``*_checks``, ``running_agents``, ``finished_agents`` and ``pools`` select a collection (a list of
    objects, or an object keyed by name); the ``check_*``, ``agent_*`` and ``pool_*`` expressions are
    then applied to each item.
    """

    # /api/health
    health_status: str = "not_null(status, state, health)"
    health_checks: str = "not_null(checks, components, dependencies, details)"
    check_name: str = "not_null(name, id)"
    check_status: str = "not_null(status, state, health)"
    check_latency_seconds: str = "not_null(latency_seconds, latencySeconds)"
    check_latency_ms: str = "not_null(latency_ms, latencyMs, response_time_ms, responseTimeMs)"
    event_loop_lag_seconds: str = "not_null(event_loop_lag_seconds, eventLoopLagSeconds, checks.event_loop.lag_seconds)"
    info_container: str = "not_null(container, container_name, containerName)"
    info_compose_service: str = "not_null(compose_service, composeService)"
    # /api/agents/running
    running_agents: str = "not_null(agents, running, items, data, @)"
    finished_agents: str = "not_null(recent, finished)"
    agent_id: str = "not_null(id, agent_id, agentId, session_id, sessionId)"
    agent_model: str = "not_null(model, model_name, modelName)"
    agent_started_at: str = "not_null(started_at, startedAt, start_time, startTime, created_at, createdAt)"
    agent_finished_at: str = "not_null(finished_at, finishedAt, ended_at, endedAt)"
    agent_outcome: str = "not_null(outcome, status, state, result)"
    agent_pid: str = "not_null(pid, process_id, processId)"
    agent_container: str = "not_null(container, container_id, containerId)"
    # /api/deploy/status
    draining: str = "not_null(draining, isDraining, is_draining)"
    max_concurrency: str = "not_null(maxConcurrency, max_concurrency, concurrency.max)"
    # deploy status (then health): a number, or a list of the queued items
    queue_depth: str = "not_null(queue_depth, queueDepth, queued, queue.depth)"
    # /api/pools
    pools: str = "not_null(pools, @)"
    pool_name: str = "not_null(name, id)"
    pool_max_size: str = "not_null(max_size, maxSize, max)"
    pool_size: str = "not_null(size, total, open)"
    pool_in_use: str = "not_null(in_use, inUse, active, busy, checked_out)"
    pool_idle: str = "not_null(idle, available, free)"
    pool_waiting: str = "not_null(waiting, pending, queued)"
    pool_evictions: str = "not_null(evictions, evicted, evictions_total)"
    # stats (then health)
    requests_total: str = "not_null(requests_total, requestsTotal, stats.requests_total, stats.requests)"
    errors_total: str = "not_null(errors_total, errorsTotal, stats.errors_total, stats.errors)"
    # {buckets: {le: cumulative count}, sum, count}
    request_duration: str = "not_null(request_duration_seconds, requestDurationSeconds, stats.request_duration_seconds)"

    _jmespath = field_validator("*")(_check_jmespath)


class ContainerCheck(Strict):
    """Ask a Docker engine whether a running agent's container still runs (stuck-running check)."""

    enabled: bool = False
    #: Engine address; None means DOCKER_HOST or the default socket.
    docker_host: str | None = None


class ProbeTarget(Strict):
    """One agent server the exporter probes."""

    name: str = Field(min_length=1, pattern=r"^[a-zA-Z0-9_.:-]+$")
    url: str = Field(pattern=r"^https?://[^/\s]+")
    #: Environment variable holding the API key (sent as X-API-Key; never logged).
    api_key_env: str | None = None
    #: File holding the API key (first line).
    api_key_file: str | None = None
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: Bodies larger than this are cut off and counted as too_large (protects the exporter's memory).
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    endpoints: ProbeEndpoints = Field(default_factory=ProbeEndpoints)
    fields: ProbeFields = Field(default_factory=ProbeFields)
    #: Cardinality caps: models beyond this fold into model="_other"; pools and checks beyond
    #: their caps are dropped (and counted in agentwatch_probe_series_dropped_total).
    max_models: int = Field(default=20, ge=1, le=500)
    max_pools: int = Field(default=20, ge=1, le=500)
    max_checks: int = Field(default=30, ge=1, le=500)
    #: Agents read from one running list; the rest are ignored (and counted as dropped).
    max_agents: int = Field(default=5000, ge=1, le=100_000)
    #: Check that a running agent's pid is alive. Needs the exporter in the server's pid namespace,
    #: so "auto" checks only servers on a loopback address.
    check_pids: bool | Literal["auto"] = "auto"
    containers: ContainerCheck = Field(default_factory=ContainerCheck)
    #: The container and compose service the server runs in, exported on agentwatch_app_info so
    #: its alerts can join their container; unset: what its health body reports, else empty.
    container: str | None = Field(default=None, min_length=1, max_length=128)
    compose_service: str | None = Field(default=None, min_length=1, max_length=128)

    def api_key(self) -> str | None:
        """The key from the environment or a file; None when neither is set."""
        return read_secret(self.api_key_env, self.api_key_file)


class AgentMemory(Strict):
    """Memory one agent needs, by model size (the field figures: about 2 GB, 4-5 GB and 6 GB)."""

    small: int = Field(default=2_000_000_000, ge=1_000_000, le=1 << 40)
    mid: int = Field(default=4_500_000_000, ge=1_000_000, le=1 << 40)
    large: int = Field(default=6_000_000_000, ge=1_000_000, le=1 << 40)


class InsightsConfig(Strict):
    """Memory trends, crash insights and health scores (agentwatch.insights); see docs/insights.md."""

    enabled: bool = True
    #: Least-squares window of the memory trend, and the samples it may hold.
    window_seconds: float = Field(default=600.0, gt=0, le=7 * 86400)
    min_samples: int = Field(default=5, ge=2, le=100_000)
    max_samples: int = Field(default=720, ge=10, le=100_000)
    #: Slope at or above which the trend is growing (below its negative: shrinking).
    min_slope_bytes_per_second: float = Field(default=8192.0, gt=0)
    #: A drop by more than this share of the value starts a new window (a restart inside).
    reset_drop_ratio: float = Field(default=0.5, gt=0, lt=1)
    warning_ratio: float = Field(default=0.80, gt=0, le=1)
    critical_ratio: float = Field(default=0.90, gt=0, le=1)
    oom_imminent_ratio: float = Field(default=0.97, gt=0, le=1)
    #: oom_imminent also when the limit is projected within this many seconds.
    imminent_seconds: float = Field(default=300.0, ge=0, le=86400)
    #: A growing container whose limit is projected within this horizon costs health.
    horizon_seconds: float = Field(default=3600.0, gt=0, le=30 * 86400)
    #: Growth without a break for this long before an OOM makes it a memory_leak.
    leak_min_seconds: float = Field(default=300.0, gt=0, le=30 * 86400)
    #: A rise over the last samples of this share of the limit before an OOM makes it a memory_spike.
    spike_rise_ratio: float = Field(default=0.20, gt=0, le=1)
    #: Recommended memory limit: the observed high (or the limit after an OOM) plus this share.
    limit_margin_ratio: float = Field(default=0.25, ge=0, le=10)
    #: Crash patterns (repeats) and the health score's crash part look this far back.
    pattern_window_seconds: float = Field(default=3600.0, gt=0, le=30 * 86400)
    repeat_count: int = Field(default=3, ge=2, le=1000)
    #: A crash "follows a rise in running agents" when they rose within this many seconds before.
    agents_lookback_seconds: float = Field(default=600.0, gt=0, le=86400)
    agent_memory_bytes: AgentMemory = Field(default_factory=AgentMemory)
    #: The model size the concurrency advice assumes.
    agent_size: Literal["small", "mid", "large"] = "mid"
    #: SQLite file that keeps the insights across restarts; null keeps them in memory only.
    db_path: str | None = Field(default=None, min_length=1, max_length=4096)
    db_max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=1 << 30)
    db_max_records: int = Field(default=5000, ge=10, le=1_000_000)
    retention_days: float = Field(default=30.0, gt=0, le=3650)
    timeout_seconds: float = Field(default=4.0, gt=0, le=300)

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> InsightsConfig:
        if not self.warning_ratio < self.critical_ratio < self.oom_imminent_ratio:
            raise ValueError("expected warning_ratio < critical_ratio < oom_imminent_ratio (got "
                             f"{self.warning_ratio}, {self.critical_ratio}, {self.oom_imminent_ratio})")
        if self.min_samples > self.max_samples:
            raise ValueError(f"min_samples ({self.min_samples}) is above max_samples ({self.max_samples})")
        return self


class ExporterConfig(Strict):
    """The whole exporter config file."""

    listen: ListenAddress = DEFAULT_LISTEN
    interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    docker: DockerConfig = Field(default_factory=DockerConfig)
    processes: ProcessesConfig = Field(default_factory=ProcessesConfig)
    probes: list[ProbeTarget] = Field(default_factory=list, max_length=MAX_PROBE_SERVERS)
    insights: InsightsConfig = Field(default_factory=InsightsConfig)

    @field_validator("probes")
    @classmethod
    def _unique_probe_names(cls, probes: list[ProbeTarget]) -> list[ProbeTarget]:
        return require_unique_names(probes, "probe server")


def load(path: str | os.PathLike[str] | None) -> ExporterConfig:
    """The exporter config from a file, or the documented defaults."""
    return load_model(path, ExporterConfig)

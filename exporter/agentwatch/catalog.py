"""The one place where agentwatch's metric names live.

Collectors build their metric families from these specs, the README's metric table and
docs/metrics.md are generated from them, the alert-rule tests cross-check every metric a rule
uses against them, and the dashboard checks do the same. Add a metric here first.

Label sets listed here are the base labels. Container metrics also carry the extra labels the
config asks for (``docker.label_allowlist``, exposed as ``label_<sanitised name>``), and process
group metrics carry the named groups of the matchers' cmdline regexes; both are bounded by config.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

Kind = Literal["gauge", "counter", "histogram", "gaugehistogram"]

MiB = 1024 * 1024
GiB = 1024 * MiB

#: Per-process RSS across an agent group: 256 MiB to 16 GiB (one agent costs 2-6 GB).
AGENT_RSS_BUCKETS: tuple[float, ...] = tuple(
    float(b) for b in (256 * MiB, 512 * MiB, 1 * GiB, 2 * GiB, 3 * GiB, 4 * GiB, 6 * GiB, 8 * GiB, 12 * GiB, 16 * GiB)
)
#: Agent run durations: 10 s to 6 h.
AGENT_RUN_BUCKETS: tuple[float, ...] = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600)
#: Probe and collector durations: 5 ms to 30 s.
DURATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Waiting for a pooled client: 1 ms to 30 s.
POOL_WAIT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CONTAINER_LABELS = ("container", "image", "compose_project", "compose_service")
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH_STATES = ("none", "starting", "healthy", "unhealthy")
APP_HEALTH_STATES = ("healthy", "degraded", "unhealthy", "unknown")


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, type, help text and base labels."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    source: str = "exporter"
    buckets: tuple[float, ...] | None = None

    @property
    def exposed_names(self) -> tuple[str, ...]:
        """The series names this family shows in the text format (what PromQL queries)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        if self.kind == "gaugehistogram":
            return (f"{self.name}_bucket", f"{self.name}_gsum", f"{self.name}_gcount")
        return (self.name,)


def _specs(source: str, *specs: tuple) -> list[MetricSpec]:
    out = []
    for spec in specs:
        name, kind, help_, labels, *rest = spec
        extra = rest[0] if rest else {}
        out.append(MetricSpec(name, kind, help_, tuple(labels), source, **extra))
    return out


C = CONTAINER_LABELS

SELF = _specs(
    "self",
    ("agentwatch_build_info", "gauge", "Always 1; labels carry the agentwatch and Python versions.",
     ("version", "python_version")),
    ("agentwatch_collector_duration_seconds", "histogram", "Time one collector took for one collection.",
     ("collector",), {"buckets": DURATION_BUCKETS}),
    ("agentwatch_collector_success", "gauge", "1 if the collector's last collection succeeded, else 0.",
     ("collector",)),
    ("agentwatch_collector_errors_total", "counter", "Collections that failed or timed out, by collector.",
     ("collector",)),
    ("agentwatch_collector_last_success_timestamp_seconds", "gauge",
     "Unix time of the collector's last successful collection.", ("collector",)),
    ("agentwatch_collection_cycle_duration_seconds", "gauge",
     "Wall time of the last full collection cycle (all collectors, concurrently).", ()),
    ("agentwatch_snapshot_timestamp_seconds", "gauge", "Unix time the served snapshot was rendered.", ()),
)

DOCKER = _specs(
    "containers",
    ("agentwatch_docker_up", "gauge", "1 if the Docker engine answered the last collection, else 0.", ()),
    ("agentwatch_docker_stats_source", "gauge",
     "1 for the path container stats were read from: cgroup (cgroupfs and /proc) or api (one-shot stats).",
     ("source",)),
    ("agentwatch_container_info", "gauge", "Always 1; one series per container, carrying its short id.",
     (*C, "container_id")),
    ("agentwatch_container_state", "gauge", "1 for the container's current state, 0 for the others.",
     (*C, "state")),
    ("agentwatch_container_health_status", "gauge",
     "1 for the container's current healthcheck status (none when the image has no healthcheck).",
     (*C, "status")),
    ("agentwatch_container_memory_usage_bytes", "gauge", "Memory usage including page cache.", C),
    ("agentwatch_container_memory_working_set_bytes", "gauge",
     "Working set: usage minus inactive file cache, as cAdvisor computes it (what the OOM killer sees).", C),
    ("agentwatch_container_memory_limit_bytes", "gauge", "Memory limit; 0 when unlimited.", C),
    ("agentwatch_container_memory_working_set_ratio", "gauge",
     "Working set divided by the memory limit; absent when unlimited.", C),
    ("agentwatch_container_memory_rss_bytes", "gauge", "Anonymous resident memory (rss / anon).", C),
    ("agentwatch_container_memory_cache_bytes", "gauge", "Page cache memory (cache / file).", C),
    ("agentwatch_container_cpu_usage_seconds_total", "counter", "CPU time consumed, user plus system.", C),
    ("agentwatch_container_cpu_limit_cores", "gauge", "CPU limit in cores (quota/period or NanoCPUs); 0 when unlimited.", C),
    ("agentwatch_container_cpu_periods_total", "counter", "CFS enforcement periods elapsed.", C),
    ("agentwatch_container_cpu_throttled_periods_total", "counter", "CFS periods in which the container was throttled.", C),
    ("agentwatch_container_cpu_throttled_seconds_total", "counter", "Time the container was throttled.", C),
    ("agentwatch_container_network_receive_bytes_total", "counter", "Bytes received on all interfaces but lo.", C),
    ("agentwatch_container_network_transmit_bytes_total", "counter", "Bytes sent on all interfaces but lo.", C),
    ("agentwatch_container_network_receive_errors_total", "counter", "Receive errors on all interfaces but lo.", C),
    ("agentwatch_container_network_transmit_errors_total", "counter", "Transmit errors on all interfaces but lo.", C),
    ("agentwatch_container_blkio_read_bytes_total", "counter", "Bytes read from block devices.", C),
    ("agentwatch_container_blkio_write_bytes_total", "counter", "Bytes written to block devices.", C),
    ("agentwatch_container_memory_oom_kills_total", "counter",
     "Processes the kernel OOM killer killed in the container's cgroup (memory.oom_control, memory.events), "
     "children of a container that survives included; cgroup path only.", C),
    ("agentwatch_container_pids", "gauge", "Processes and threads in the container.", C),
    ("agentwatch_container_restarts_total", "counter", "Restarts the engine made under the restart policy (RestartCount).", C),
    ("agentwatch_container_last_exit_code", "gauge", "Exit code of the container's last run (137 after a SIGKILL / OOM kill).", C),
    ("agentwatch_container_oom_killed", "gauge", "1 if the container's last run ended in an OOM kill, else 0.", C),
    ("agentwatch_container_start_time_seconds", "gauge", "Unix time the container last started; 0 if never.", C),
    ("agentwatch_container_finish_time_seconds", "gauge", "Unix time the container last finished; 0 if never.", C),
    ("agentwatch_container_last_seen_timestamp_seconds", "gauge",
     "Unix time the engine last reported the container; older than the collection while agentwatch_docker_up "
     "is 0, when the container's series are the last-known values (docker.keep_last_known_seconds).", C),
    ("agentwatch_container_restart_policy", "gauge", "Always 1; the policy label carries the restart policy name.",
     (*C, "policy")),
    ("agentwatch_container_restart_policy_max_retries", "gauge",
     "Maximum retry count of an on-failure restart policy; 0 for unlimited or other policies.", C),
)

EVENTS = _specs(
    "docker_events",
    ("agentwatch_container_dies_total", "counter", "Container die events seen on the engine's event stream.",
     ("container", "compose_service", "exit_code")),
    ("agentwatch_container_oom_events_total", "counter", "Container oom events seen on the engine's event stream.",
     ("container", "compose_service")),
    ("agentwatch_docker_events_up", "gauge", "1 while the engine's event stream is connected, else 0.", ()),
    ("agentwatch_docker_events_reconnects_total", "counter", "Times the event stream was reconnected.", ()),
)

PROCESSES = _specs(
    "processes",
    ("agentwatch_host_memory_total_bytes", "gauge", "Total physical memory of the host.", ()),
    ("agentwatch_host_memory_available_bytes", "gauge", "Memory available to new processes without swapping.", ()),
    ("agentwatch_host_memory_used_ratio", "gauge", "1 - available / total.", ()),
    ("agentwatch_process_group_processes", "gauge", "Processes in the agent group.", ("group",)),
    ("agentwatch_process_group_memory_rss_bytes", "gauge", "Sum of resident memory of the group's processes.", ("group",)),
    ("agentwatch_process_group_memory_uss_bytes", "gauge",
     "Sum of unique memory of the group's processes, where readable.", ("group",)),
    ("agentwatch_process_group_cpu_seconds_total", "counter", "CPU time of the group's live processes.", ("group",)),
    ("agentwatch_process_group_open_fds", "gauge", "Open file descriptors of the group's processes.", ("group",)),
    ("agentwatch_process_group_threads", "gauge", "Threads of the group's processes.", ("group",)),
    ("agentwatch_process_group_oldest_age_seconds", "gauge", "Age of the group's oldest process.", ("group",)),
    ("agentwatch_process_group_process_rss_bytes", "gaugehistogram",
     "Distribution of per-process resident memory across the group, now.", ("group",),
     {"buckets": AGENT_RSS_BUCKETS}),
    ("agentwatch_process_memory_rss_bytes", "gauge",
     "Resident memory of one process (only when per_process is enabled; capped).", ("group", "pid")),
    ("agentwatch_process_scan_skipped_total", "counter",
     "Processes, or one of their reads, skipped during scans, by reason (vanished, access_denied, read_error, fds_denied, uss_denied).", ("reason",)),
    ("agentwatch_process_group_series_dropped_total", "counter",
     "Label sets folded into the _other label set because a group exceeded its cap, summed over collections.", ("group",)),
)

PROBES = _specs(
    "probes",
    ("agentwatch_probe_success", "gauge", "1 if the last probe of the endpoint answered in time with a usable body.",
     ("server", "endpoint")),
    ("agentwatch_probe_duration_seconds", "histogram", "Probe round-trip time; timeouts observe the timeout.",
     ("server", "endpoint"), {"buckets": DURATION_BUCKETS}),
    ("agentwatch_probe_http_responses_total", "counter", "HTTP responses seen by status code.",
     ("server", "endpoint", "code")),
    ("agentwatch_probe_failures_total", "counter",
     "Failed probes by reason (timeout, connect, auth, http_status, not_json, too_large, missing_field, bad_type, error).",
     ("server", "endpoint", "reason")),
    ("agentwatch_probe_series_dropped_total", "counter",
     "Items of a probed body left out by a cardinality cap, by kind (model, pool, check, agent), summed over probes.",
     ("server", "kind")),
    ("agentwatch_app_health_status", "gauge", "1 for the current status of a health sub-check, 0 for the others.",
     ("server", "check", "status")),
    ("agentwatch_app_dependency_latency_seconds", "gauge", "Latency of a dependency as the server reports it.",
     ("server", "check")),
    ("agentwatch_app_live", "gauge", "1 if the liveness endpoint answered OK.", ("server",)),
    ("agentwatch_app_ready", "gauge", "1 if the readiness endpoint answered OK.", ("server",)),
    ("agentwatch_app_draining", "gauge", "1 while the server is draining.", ("server",)),
    ("agentwatch_app_max_concurrency", "gauge", "The server's current maximum of concurrent agents.", ("server",)),
    ("agentwatch_agents_running", "gauge", "Agents the server lists as running, by model.", ("server", "model")),
    ("agentwatch_agent_oldest_running_seconds", "gauge", "Age of the oldest running agent.", ("server",)),
    ("agentwatch_agent_run_duration_seconds", "histogram", "Run time of agents that finished.",
     ("server", "model"), {"buckets": AGENT_RUN_BUCKETS}),
    ("agentwatch_agent_runs_total", "counter", "Agent runs that finished, by outcome.", ("server", "model", "outcome")),
    ("agentwatch_agents_stuck_running", "gauge",
     "Agents listed as running whose process or container is gone (stuck after an OOM kill).", ("server", "model")),
    ("agentwatch_pool_max_size", "gauge", "Configured maximum size of the pool.", ("server", "pool")),
    ("agentwatch_pool_size", "gauge", "Clients currently open in the pool.", ("server", "pool")),
    ("agentwatch_pool_in_use", "gauge", "Clients currently checked out.", ("server", "pool")),
    ("agentwatch_pool_idle", "gauge", "Clients open and idle.", ("server", "pool")),
    ("agentwatch_pool_waiting", "gauge", "Callers waiting for a client.", ("server", "pool")),
    ("agentwatch_pool_evictions_total", "counter", "Clients evicted (LRU or idle cleanup).", ("server", "pool")),
    ("agentwatch_pool_wait_seconds", "histogram", "Time callers waited for a client.", ("server", "pool"),
     {"buckets": POOL_WAIT_BUCKETS}),
    ("agentwatch_app_requests_total", "counter", "Requests the server handled.", ("server",)),
    ("agentwatch_app_request_errors_total", "counter", "Requests that ended in an error (5xx).", ("server",)),
    ("agentwatch_app_event_loop_lag_seconds", "gauge", "Event loop lag the server measured.", ("server",)),
    ("agentwatch_app_info", "gauge",
     "Always 1; joins a server's series to its container and compose service (empty when unknown).",
     ("server", "container", "compose_service")),
    ("agentwatch_app_queue_depth", "gauge", "Work waiting for a free slot (queued agents), as the server reports it.",
     ("server",)),
    ("agentwatch_app_request_duration_seconds", "histogram", "Time the server took to answer a request.",
     ("server",), {"buckets": DURATION_BUCKETS}),
)

SCALER = _specs(
    "scaler",
    ("agentwatch_scaler_webhooks_total", "counter", "Webhook requests by result (accepted, unauthorized, invalid, too_large).",
     ("result",)),
    ("agentwatch_scaler_decisions_total", "counter", "Decisions the policy made, by action and outcome.", ("action", "outcome")),
    ("agentwatch_scaler_actions_total", "counter", "Actions executed by action and result (success, failure, dry_run).",
     ("action", "result")),
    ("agentwatch_scaler_skipped_total", "counter",
     "Decisions skipped by reason (cooldown, duplicate, rate_limit, bounds, host_limit, lower_priority, no_change, "
     "observe_failed, target_unresolved, target_not_allowed, action_not_supported).",
     ("reason",)),
    ("agentwatch_scaler_action_retries_total", "counter", "Failed action attempts that were retried after a backoff.",
     ("action",)),
    ("agentwatch_scaler_persistence_errors_total", "counter",
     "State or audit file problems by reason (state_corrupt: set aside; state_write, audit_write).", ("reason",)),
    ("agentwatch_scaler_cooldown_remaining_seconds", "gauge", "Seconds left in a target's cooldown per action.",
     ("target", "action")),
    ("agentwatch_scaler_action_duration_seconds", "histogram", "Time an action took, retries included.", ("action",),
     {"buckets": DURATION_BUCKETS}),
    ("agentwatch_scaler_decision_latency_seconds", "histogram", "Time from webhook receipt to decision.", (),
     {"buckets": DURATION_BUCKETS}),
)

INSIGHTS = _specs(
    "insights",
    ("agentwatch_container_memory_high_watermark_bytes", "gauge",
     "Highest working set seen since the exporter first saw the container (kept across its restarts).", C),
    ("agentwatch_container_memory_trend", "gauge",
     "1 for the working set's trend over insights.window_seconds (growing, stable, shrinking), 0 for the others.",
     (*C, "trend")),
    ("agentwatch_container_memory_slope_bytes_per_second", "gauge",
     "Least-squares slope of the working set over insights.window_seconds (this run only).", C),
    ("agentwatch_container_memory_projected_seconds_to_limit", "gauge",
     "Seconds until the working set reaches the memory limit at its slope; absent unless growing and limited.", C),
    ("agentwatch_container_memory_threshold_state", "gauge",
     "1 for the container's memory state (normal, warning, critical, oom_imminent: ratio thresholds, or the "
     "limit projected within insights.imminent_seconds), 0 for the others.", (*C, "state")),
    ("agentwatch_container_crashes_total", "counter",
     "Container deaths by cause (oom, memory_leak, memory_spike, signal, error, clean); every cause is 0 from "
     "the first cycle a container is seen.", (*C, "cause")),
    ("agentwatch_container_health_score", "gauge",
     "Health of the container from 0 to 100 (state, memory, trend, crashes; /api/health explains it).", C),
    ("agentwatch_host_health_score", "gauge",
     "Health of the host from 0 to 100 (memory, containers, crashes, leaks; /api/health explains it).", ()),
    ("agentwatch_process_group_memory_high_watermark_bytes", "gauge",
     "Highest RSS sum of the agent group seen since the exporter started.", ("group",)),
    ("agentwatch_process_group_memory_trend", "gauge",
     "1 for the trend of the group's RSS sum (growing, stable, shrinking), 0 for the others.", ("group", "trend")),
    ("agentwatch_process_group_memory_slope_bytes_per_second", "gauge",
     "Least-squares slope of the group's RSS sum over insights.window_seconds.", ("group",)),
    ("agentwatch_insights_store_errors_total", "counter",
     "Insight store problems by reason (corrupt: set aside; locked: kept in memory; write; read).", ("reason",)),
)

ALL: tuple[MetricSpec, ...] = (*SELF, *DOCKER, *EVENTS, *PROCESSES, *PROBES, *SCALER, *INSIGHTS)
BY_NAME: dict[str, MetricSpec] = {s.name: s for s in ALL}


def spec(name: str) -> MetricSpec:
    """Look a metric up by name; a typo fails loudly at import or first use."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not in agentwatch.catalog") from None


def _checked(name: str, *kinds: Kind) -> MetricSpec:
    found = spec(name)
    if found.kind not in kinds:
        raise TypeError(f"metric {name!r} is a {found.kind}, not a {' or '.join(kinds)}")
    return found


# -- families: the values of one collection, built fresh each time ---------------------------------

def gauge(name: str, extra_labels: Sequence[str] = ()) -> GaugeMetricFamily:
    """An empty gauge family for one collection, with the spec's labels plus ``extra_labels``."""
    s = _checked(name, "gauge")
    return GaugeMetricFamily(s.name, s.help, labels=[*s.labels, *extra_labels])


def counter(name: str, extra_labels: Sequence[str] = ()) -> CounterMetricFamily:
    """An empty counter family, for totals a source keeps itself (the kernel's, a server's)."""
    s = _checked(name, "counter")
    return CounterMetricFamily(s.name, s.help, labels=[*s.labels, *extra_labels])


def scalar(name: str, extra_labels: Sequence[str] = ()) -> GaugeMetricFamily | CounterMetricFamily:
    """A gauge or counter family, for code that fills many of either kind the same way."""
    s = _checked(name, "gauge", "counter")
    return gauge(name, extra_labels) if s.kind == "gauge" else counter(name, extra_labels)


def histogram(name: str, extra_labels: Sequence[str] = ()) -> HistogramMetricFamily:
    """An empty histogram family, for cumulative buckets a source reports itself."""
    s = _checked(name, "histogram")
    return HistogramMetricFamily(s.name, s.help, labels=[*s.labels, *extra_labels])


class GaugeHistogram(GaugeHistogramMetricFamily):
    """A gauge histogram whose buckets come from its spec: the distribution of values seen now."""

    def __init__(self, metric: MetricSpec, extra_labels: Sequence[str] = ()) -> None:
        super().__init__(metric.name, metric.help, labels=[*metric.labels, *extra_labels])
        self.bounds = tuple(float(b) for b in metric.buckets or ())
        # repr(), not prometheus_client's Go-style formatting: keeps the le values agentwatch has
        # always exposed (268435456.0, not 2.68435456e+08), so series do not change across versions
        self._le = [repr(b) for b in self.bounds] + ["+Inf"]

    def add_values(self, labels: Sequence[str], values: Iterable[float]) -> None:
        """One series: how many of ``values`` fall in each bucket, and their sum."""
        counts = [0] * len(self._le)
        total = 0.0
        for value in values:
            counts[bisect.bisect_left(self.bounds, value)] += 1
            total += value
        running, buckets = 0, []
        for le, n in zip(self._le, counts, strict=True):
            running += n
            buckets.append((le, float(running)))
        self.add_metric(list(labels), buckets, gsum_value=total)


def gauge_histogram(name: str, extra_labels: Sequence[str] = ()) -> GaugeHistogram:
    """An empty gauge histogram family with the spec's buckets (fill it with ``add_values``)."""
    return GaugeHistogram(_checked(name, "gaugehistogram"), extra_labels)


# -- metric objects: cumulative values kept across collections, in a private registry -------------

class PrivateRegistry(CollectorRegistry):
    """A registry of agentwatch's own metric objects; never the process-wide default one.

    It leaves out the ``_created`` samples prometheus_client adds to counters and histograms:
    agentwatch has never exposed them (the text format shows them as extra gauge families), and
    PromQL does not need them.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=True)

    def collect(self) -> Iterator[Metric]:
        for fam in super().collect():
            created = fam.name + "_created"
            fam.samples = [s for s in fam.samples if s.name != created]
            yield fam


M = TypeVar("M", Counter, Gauge, Histogram)
_KIND_OF: dict[type, Kind] = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}


def metric(name: str, registry: CollectorRegistry, cls: type[M]) -> M:
    """The prometheus_client object for a catalog metric (name, help, labels and buckets from its
    spec), registered in ``registry``; ``cls`` must match the spec's kind."""
    s = _checked(name, _KIND_OF[cls])
    extra: dict[str, Any] = {"buckets": s.buckets or ()} if s.kind == "histogram" else {}
    return cls(s.name, s.help, s.labels, registry=registry, **extra)


def exposed_series_names() -> set[str]:
    """Every series name PromQL can query on an agentwatch target."""
    return {n for s in ALL for n in s.exposed_names}


def markdown_table(specs: Iterable[MetricSpec] = ALL) -> str:
    """The metric table for the README and docs/metrics.md."""
    rows = ["| metric | type | labels | source | help |", "| --- | --- | --- | --- | --- |"]
    for s in specs:
        labels = ", ".join(f"`{lbl}`" for lbl in s.labels) or "-"
        rows.append(f"| `{s.name}` | {s.kind} | {labels} | {s.source} | {s.help} |")
    return "\n".join(rows) + "\n"


BEGIN_MARK = "<!-- BEGIN metrics -->"
END_MARK = "<!-- END metrics -->"


def with_table(document: str) -> str:
    """``document`` with the text between the metrics markers replaced by the current table."""
    head, sep, rest = document.partition(BEGIN_MARK)
    _, sep2, tail = rest.partition(END_MARK)
    if not (sep and sep2):
        raise ValueError(f"document has no {BEGIN_MARK} ... {END_MARK} section")
    return f"{head}{BEGIN_MARK}\n{markdown_table()}{END_MARK}{tail}"

"""Containers on the Docker engine: state, restarts, exit codes, limits and resource usage.

One cycle does what cAdvisor does, because the engine's stats endpoint is slow (about a second
per container) while the kernel's own files answer in microseconds:

1. discovery: one ``/containers/json`` call lists every container (``include_stopped``), filtered
   by ``name_filter`` and capped at ``max_containers`` (running ones first). While the event stream
   runs and has reported no change since the last listing, that listing is reused for up to 60 s
   and a ``/_ping`` alone checks that the engine answers (``engine_changes``);
2. inspect, concurrently in this collector's bounded pool (``max_concurrency`` workers): restart
   count, OOM flag, exit code, start/finish times, health, init pid, limits, restart policy. An
   inspect is reused while the listing's state and status text are unchanged (at most 30 s; or,
   while the event stream runs, until an event names the container, at most 10 minutes), so
   steady containers cost nothing but their line in the listing;
3. stats of running containers: from the cgroup files under ``cgroup_root`` and the init process's
   ``/proc/<pid>/net/dev`` in one worker call (``stats_source: cgroup``, or ``auto`` when they are
   visible), else concurrent one-shot stats calls (``api``, or ``auto``'s per-container fallback).

The engine resets ``ExitCode`` to 0 when it starts a container again (a restart policy), so the
last exit code is remembered per container: from the inspect of a container that is not running,
else, for a run that ended between two cycles, from the engine's own ``die`` event for it (asked
once, in the window between that run's end and the next start). While the engine's event buffer
(its last 256 events) no longer holds that event, a restarted container's exit code is unknown
and ``agentwatch_container_last_exit_code`` is left out for it.

Every engine call runs in the pool, never on the event loop. An engine that does not answer is a
state, not a collector failure: unreachable (nothing listens) or silent (hung, stopped, or too slow:
the cycle's engine calls did not all answer within ``answer_budget`` of the collector's timeout).
Then ``agentwatch_docker_up`` is 0 (one warning until it answers again) and the containers' series
from the last collection the engine answered are served as they were, for at most
``docker.keep_last_known_seconds``: a container alert does not resolve because the engine hung, and
``agentwatch_container_last_seen_timestamp_seconds`` shows how old they are. Any other failure (a
malformed response) raises, so the collection loop counts it in ``agentwatch_collector_errors_total``
while the other collectors carry on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from agentwatch import catalog
from agentwatch.collectors import container_stats_api
from agentwatch.collectors.base import Collector
from agentwatch.collectors.cgroupfs import (
    CgroupTree,
    CgroupUnavailable,
    ContainerCgroup,
    ContainerStats,
    read_net,
)
from agentwatch.collectors.exit_codes import die_exit_code, exit_code_of, is_running
from agentwatch.config import DockerConfig
from agentwatch.engine import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    answer_budget,
    call_timeout,
    engine_host,
    is_local,
    is_silent,
    is_unreachable,
    read_client,
)
from agentwatch.engine_api import EngineClient, NotFound
from agentwatch.engine_changes import ChangeFeed, Mark
from agentwatch.log import OnceLogger
from agentwatch.readings import ContainerReading, Readings

log = logging.getLogger("agentwatch.containers")

SOURCES = ("cgroup", "api")
#: Longest an inspect is reused for a container whose listing entry has not changed (seconds).
INSPECT_MAX_AGE = 30.0
#: The same while the event stream vouches for it (``engine_changes``): only a lost event is left
#: to guard against.
INSPECT_MAX_AGE_WITH_EVENTS = 600.0
#: Longest the container listing is reused while the event stream reports no change (seconds).
LISTING_MAX_AGE = 60.0


def inspect_max_age(container_id: str, bound: float = INSPECT_MAX_AGE) -> float:
    """``bound`` scaled by 0.75 to 1 after the id, so containers discovered together do not all
    need a new inspect in the same cycle (a burst of N engine calls every 30 s)."""
    return bound * (0.75 + 0.25 * zlib.crc32(container_id.encode()) / 2**32)
#: Families about the engine itself, made once per cycle by ``_engine_families``.
ENGINE_FAMILIES = ("agentwatch_docker_up", "agentwatch_docker_stats_source")

#: (state, parenthesised parts of Status, seconds up or since exit as Docker rounds them)
ListingKey = tuple[str, tuple[str, ...], float]
_DURATION_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800,
                   "month": 2_592_000, "year": 31_536_000}
_DURATION = re.compile(
    r"(Less than a second|About an? (second|minute|hour)|(\d+) (second|minute|hour|day|week|month|year)s?)")


def status_seconds(status: str) -> float:
    """The duration in Docker's Status text ("Up 5 minutes", "Exited (1) About an hour ago"), in seconds.

    Docker rounds it (docker/go-units HumanDuration), but it never goes backwards while the
    container keeps running or stays exited; -1 when there is none ("Created").
    """
    m = _DURATION.search(status)
    if not m:
        return -1.0
    if m.group(1) == "Less than a second":
        return 0.0
    if m.group(2):
        return float(_DURATION_UNITS[m.group(2)])
    return float(m.group(3)) * _DURATION_UNITS[m.group(4)]


def listing_key(item: dict[str, Any]) -> ListingKey:
    """What the container listing tells about a container's inspect data changing."""
    status = str(item.get("Status") or "")
    return (str(item.get("State") or ""), tuple(re.findall(r"\(([^)]*)\)", status)), status_seconds(status))
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def docker_time(value: Any) -> float:
    """Unix seconds from the engine's RFC 3339 (nanosecond) timestamps; 0 for its zero time."""
    return _parse_docker_time(value) if isinstance(value, str) else 0.0


@functools.lru_cache(maxsize=4096)
def _parse_docker_time(value: str) -> float:
    """Cached: each container's StartedAt and FinishedAt are parsed several times a cycle, every
    cycle, and rarely change."""
    found = _TIME.match(value)
    if not found or found.group(1).startswith("0001-"):
        return 0.0
    base, frac, zone = found.groups()
    try:
        stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    except ValueError:
        return 0.0
    stamp += float(f"0.{frac}") if frac else 0.0
    return max(0.0, stamp)


def cpu_limit_cores(host_config: dict[str, Any]) -> float:
    """NanoCpus (``--cpus``) or CpuQuota/CpuPeriod (``--cpu-quota``); 0 when unlimited."""
    nano = host_config.get("NanoCpus") or 0
    if nano > 0:
        return nano / 1e9
    quota = host_config.get("CpuQuota") or 0
    period = host_config.get("CpuPeriod") or 100_000  # the kernel's default CFS period
    return quota / period if quota > 0 else 0.0


@dataclass(slots=True)
class _Container:
    """One container's facts for one cycle."""

    id: str
    labels: list[str]
    inspect: dict[str, Any]
    stats: ContainerStats | None = None
    source: str | None = None

    @property
    def pid(self) -> int:
        pid = self.inspect.get("State", {}).get("Pid") or 0
        return pid if isinstance(pid, int) else 0


#: The parts of a listing entry this collector reads; only these are kept while the listing is
#: reused (up to LISTING_MAX_AGE), and of its labels only those it exports. The rest (mounts,
#: networks, ports, compose's dozen labels) is dropped as soon as it is parsed.
LISTING_KEPT = ("Id", "Names", "State", "Status", "Image")


def _check_listing(listing: Any, labels: Collection[str]) -> list[dict[str, Any]]:
    if not isinstance(listing, list) or not all(isinstance(c, dict) and isinstance(c.get("Id"), str)
                                                 for c in listing):
        raise ValueError("/containers/json: expected a list of objects with an Id")
    kept = []
    for item in listing:
        entry = {key: item[key] for key in LISTING_KEPT if key in item}
        tags = item.get("Labels")
        if isinstance(tags, dict):
            entry["Labels"] = {key: value for key, value in tags.items() if key in labels}
        kept.append(entry)
    return kept


#: The parts of an inspect this collector reads; only these are cached (up to INSPECT_MAX_AGE). The
#: rest, Config with the container's environment above all, and a health check's last outputs
#: (up to 20 KB a container), is dropped as soon as it is parsed.
INSPECT_KEPT = ("Id", "State", "HostConfig", "RestartCount", "Path", "Args")
STATE_KEPT = ("Status", "Running", "Restarting", "OOMKilled", "Pid", "ExitCode", "StartedAt", "FinishedAt")
HOST_CONFIG_KEPT = ("RestartPolicy", "Memory", "NanoCpus", "CpuQuota", "CpuPeriod", "NetworkMode")


def _check_inspect(data: Any, container_id: str) -> dict[str, Any]:
    if not (isinstance(data, dict) and isinstance(data.get("State"), dict)
            and isinstance(data.get("HostConfig", {}), dict)):
        raise ValueError(f"/containers/{container_id[:12]}/json: expected an object with State and HostConfig")
    kept = {key: data[key] for key in INSPECT_KEPT if key in data}
    state = data["State"]
    kept["State"] = {key: state[key] for key in STATE_KEPT if key in state}
    health = state.get("Health")
    if isinstance(health, dict) and "Status" in health:
        kept["State"]["Health"] = {"Status": health["Status"]}
    if "HostConfig" in kept:
        kept["HostConfig"] = {key: value for key, value in kept["HostConfig"].items() if key in HOST_CONFIG_KEPT}
    return kept


class _Rows:
    """Samples appended straight to this cycle's families.

    ``add_metric`` builds a label dict per sample; a container's 37 series share one (or, for the
    families with an extra label such as ``state``, one per value), made once per inspect.
    """

    def __init__(self, fams: Mapping[str, Metric], extra: Sequence[str]) -> None:
        self.samples = {name: fam.samples for name, fam in fams.items()}
        #: The sample name each family's series carry (a counter's ends in ``_total``).
        self.names = {name: fam.name + "_total" if fam.type == "counter" else fam.name for name, fam in fams.items()}
        self.label_names = {name: (*catalog.spec(name).labels, *extra) for name in fams}

    def put(self, family: str, labels: dict[str, str], value: float) -> None:
        self.samples[family].append(_sample((self.names[family], labels, value, *_NO_EXTRAS)))

    def sample(self, family: str, values: Sequence[str], value: float) -> Sample:
        return _sample((self.names[family], dict(zip(self.label_names[family], values, strict=True)), value,
                        *_NO_EXTRAS))


#: A Sample made without the namedtuple's Python-level ``__new__`` (a third of the families' cost):
#: name, labels, value, then None for timestamp, exemplar and whatever this prometheus_client adds.
_NO_EXTRAS = (None,) * (len(Sample._fields) - 3)


_sample: Callable[[tuple[Any, ...]], Sample] = functools.partial(tuple.__new__, Sample)


@dataclass(slots=True)
class _StaticRows:
    """A container's samples that only change with its inspect or its listing labels."""

    inspect: dict[str, Any]
    labels: list[str]
    base: dict[str, str]
    rows: list[tuple[str, Sample]]
    inspect_limit: float
    host_network: bool

    @classmethod
    def of(cls, c: _Container, out: _Rows) -> _StaticRows:
        base_values = c.labels
        state = c.inspect["State"]
        host = c.inspect.get("HostConfig") or {}
        status = str(state.get("Status") or "unknown")
        health = str((state.get("Health") or {}).get("Status") or "none")
        policy = host.get("RestartPolicy") or {}
        policy_name = str(policy.get("Name") or "no")
        head, tail = base_values[:4], base_values[4:]
        base = dict(zip(out.label_names["agentwatch_container_restarts_total"], base_values, strict=True))
        rows: list[tuple[str, Sample]] = []

        def add(family: str, value: float, inserted: str | None = None) -> None:
            if inserted is None:
                rows.append((family, _sample((out.names[family], base, value, *_NO_EXTRAS))))
            else:
                rows.append((family, out.sample(family, [*head, inserted, *tail], value)))

        add("agentwatch_container_info", 1, c.id[:12])
        for s in (*catalog.CONTAINER_STATES, *(() if status in catalog.CONTAINER_STATES else (status,))):
            add("agentwatch_container_state", 1 if s == status else 0, s)
        for s in (*catalog.HEALTH_STATES, *(() if health in catalog.HEALTH_STATES else (health,))):
            add("agentwatch_container_health_status", 1 if s == health else 0, s)
        add("agentwatch_container_restart_policy", 1, policy_name)
        add("agentwatch_container_restart_policy_max_retries",
            (policy.get("MaximumRetryCount") or 0) if policy_name == "on-failure" else 0)
        add("agentwatch_container_restarts_total", c.inspect.get("RestartCount") or 0)
        add("agentwatch_container_oom_killed", 1 if state.get("OOMKilled") else 0)
        add("agentwatch_container_start_time_seconds", docker_time(state.get("StartedAt")))
        add("agentwatch_container_finish_time_seconds", docker_time(state.get("FinishedAt")))
        add("agentwatch_container_cpu_limit_cores", cpu_limit_cores(host))
        return cls(c.inspect, list(base_values), base, rows, host.get("Memory") or 0,
                   host.get("NetworkMode") == "host")

    def extend_into(self, out: _Rows) -> None:
        samples = out.samples
        for family, sample in self.rows:
            samples[family].append(sample)


class ContainerCollector(Collector):
    """Container metrics from the engine API (discovery, inspect) and cgroup files (stats)."""

    name = "containers"

    def __init__(self, config: DockerConfig, readings: Readings | None = None,
                 changes: ChangeFeed | None = None) -> None:
        super().__init__(timeout=config.timeout_seconds, max_workers=config.max_concurrency)
        self.config = config
        self.readings = readings  # the insights collector's board, when on
        self.changes = changes  # what the event stream saw change, when it runs
        self.host = engine_host(config.host)
        self._call_timeout = call_timeout(config.timeout_seconds)
        self._budget = answer_budget(config.timeout_seconds)
        #: (monotonic time, the container families) of the last collection the engine answered
        self._last_known: tuple[float, list[Metric]] | None = None
        self._listed_at = 0.0
        #: (monotonic time, the change feed's mark taken before asking, the listing) of the last listing
        self._listing: tuple[float, Mark | None, list[dict[str, Any]]] | None = None
        self._client: EngineClient | None = None
        self._client_lock = threading.Lock()
        self._once = OnceLogger(log)
        self._fallback_logged = False
        self._tree = CgroupTree(config.cgroup_root)
        self._cgroups: dict[str, tuple[int, ContainerCgroup]] = {}
        #: id -> (listing key, monotonic time, inspect, the change feed's mark taken before asking)
        self._inspected: dict[str, tuple[ListingKey, float, dict[str, Any], Mark | None]] = {}
        #: id -> the samples its current inspect and labels give (rebuilt when either changes)
        self._static: dict[str, _StaticRows] = {}
        #: id -> (FinishedAt of the container's last run, its exit code; None when unknown)
        self._exits: dict[str, tuple[str, int | None]] = {}
        self._name_re = re.compile(config.name_filter) if config.name_filter else None
        self._extra = [(label, DockerConfig.metric_label(label)) for label in config.label_allowlist]
        self._listed_labels = frozenset({COMPOSE_PROJECT, COMPOSE_SERVICE, *config.label_allowlist})
        mode = config.stats_source
        self._try_cgroup = mode == "cgroup" or (mode == "auto" and is_local(self.host))

    # --- engine calls (pool threads only) -------------------------------------------------

    def _get_client(self) -> EngineClient:
        with self._client_lock:
            if self._client is None:
                self._client = read_client(self.config.host, self._call_timeout, self.config.max_concurrency + 2)
            return self._client

    def _drop_client(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead connection pool: nothing to save
                pass

    def _list(self) -> list[dict[str, Any]]:
        return _check_listing(self._get_client().containers(all=self.config.include_stopped), self._listed_labels)

    def _ping(self) -> bool:
        return self._get_client().ping()

    def _inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            data = self._get_client().inspect_container(container_id)
        except NotFound:  # removed since the listing
            return None
        return _check_inspect(data, container_id)

    def _die_exit_code(self, container_id: str, state: dict[str, Any]) -> int | None:
        """The exit code of the run before this one; None (not a failed collection) if unknown."""
        since = docker_time(state.get("FinishedAt")) - 0.001
        until = max(docker_time(state.get("StartedAt")), since)
        try:
            code = die_exit_code(self._get_client(), container_id, since, until, self._call_timeout)
        except Exception as exc:
            if is_unreachable(exc):
                raise
            self._once.problem("die-events", "cannot read die events for restarted containers' exit codes "
                               "(%s: %s); their agentwatch_container_last_exit_code is left out",
                               type(exc).__name__, exc)
            return None
        self._once.cleared("die-events", "die events readable again")
        return code

    def _api_stats(self, container_id: str) -> ContainerStats | None:
        try:
            payload = self._get_client().stats(container_id)
        except NotFound:
            return None
        try:
            return container_stats_api.from_payload(payload)
        except ValueError as exc:
            raise ValueError(f"stats of {container_id[:12]}: {exc}") from None

    # --- cgroup path (one pool call for all containers) ----------------------------------

    def _read_known(self) -> dict[str, tuple[int, ContainerStats]]:
        """id -> (pid, stats) of every container whose cgroup an earlier cycle located.

        Runs while the engine answers the listing: these reads need only the pid and directories
        already known, so the two waits overlap instead of adding up. Nothing is changed here; a
        container whose read fails, or whose pid the listing shows has changed, is read again
        after the listing the usual way (``_read_cgroups``).
        """
        out = {}
        for cid, (pid, cgroup) in list(self._cgroups.items()):
            try:
                stats = self._tree.read(cgroup)
                stats.net = read_net(self.config.proc_root, pid, self._tree.files)
            except CgroupUnavailable:
                continue
            out[cid] = (pid, stats)
        return out

    def _read_cgroups(self, containers: Sequence[_Container], live: set[str]) -> dict[str, str]:
        """Fill ``stats`` from cgroup files; return id -> why not, for the ones that failed.

        ``live`` holds every running container's id: the cgroups of the others are forgotten.
        """
        failed: dict[str, str] = {}
        for c in containers:
            try:
                cached = self._cgroups.get(c.id)
                if cached is None or cached[0] != c.pid:
                    cached = (c.pid, self._tree.locate(self.config.proc_root, c.pid, c.id))
                    self._cgroups[c.id] = cached
                stats = self._tree.read(cached[1])
                stats.net = read_net(self.config.proc_root, c.pid, self._tree.files)
            except CgroupUnavailable as exc:
                self._cgroups.pop(c.id, None)
                self._inspected.pop(c.id, None)  # the pid may be stale: inspect again next cycle
                failed[c.id] = str(exc)
                continue
            c.stats, c.source = stats, "cgroup"
        for stale in self._cgroups.keys() - live:
            del self._cgroups[stale]
        return failed

    # --- one cycle ---------------------------------------------------------------------

    def _select(self, listing: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        chosen = []
        for item in listing:
            names = item.get("Names") or []
            name = (names[0] if names and isinstance(names[0], str) else item["Id"][:12]).lstrip("/")
            if self._name_re is None or self._name_re.search(name):
                chosen.append((item, name))
        chosen.sort(key=lambda pair: (pair[0].get("State") != "running", pair[1]))
        cap = self.config.max_containers
        if len(chosen) > cap:
            self._once.problem("capped", "%d containers match, exporting the first %d (docker.max_containers)",
                               len(chosen), cap, containers=len(chosen), max_containers=cap)
            return chosen[:cap]
        self._once.cleared("capped", "containers no longer exceed docker.max_containers (%d)", cap)
        return chosen

    def _labels(self, item: dict[str, Any], name: str) -> list[str]:
        tags = item.get("Labels") or {}
        tags = tags if isinstance(tags, dict) else {}
        image = item.get("Image")
        return [name, image if isinstance(image, str) else "", str(tags.get(COMPOSE_PROJECT, "")),
                str(tags.get(COMPOSE_SERVICE, "")), *(str(tags.get(label, "")) for label, _ in self._extra)]

    async def collect(self) -> list[Metric]:
        try:
            containers = await asyncio.wait_for(self._read_engine(), self._budget)
        except Exception as exc:
            if is_unreachable(exc):
                await asyncio.to_thread(self._drop_client)  # not the pool: hung calls may fill it
                return self._engine_down(f"unreachable: {exc}")
            if is_silent(exc):  # the client stays: a hung daemon's socket still takes connections
                return self._engine_down(f"no answer within {self._budget:g}s")
            raise
        self._once.cleared("engine", "Docker engine reachable again at %s", self.host or "the default socket")
        if self.readings is not None:
            self._publish(containers, self.readings)
        families = self._families(containers)
        self._last_known = (time.monotonic(), [f for f in families if f.name not in ENGINE_FAMILIES])
        return families

    def known(self) -> list[Metric]:
        """After a timed-out collection: the engine as down and the containers' last-known series."""
        return [*self._engine_families(up=False, used=set()), *self._known_containers()]

    async def _read_engine(self) -> list[_Container]:
        early: asyncio.Future[dict[str, tuple[int, ContainerStats]]] | None = None
        if self._cgroups:  # located last cycle: read them while the engine lists (``_read_known``)
            early = asyncio.ensure_future(self.run_sync(self._read_known))
            early.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            containers = await self._discover()
            await self._learn_exit_codes(containers)
            known = await early if early is not None else {}
        finally:
            if early is not None and not early.done():
                early.cancel()
        await self._fill_stats(containers, known)
        return containers

    def _engine_down(self, why: str) -> list[Metric]:
        self._once.problem("engine", "Docker engine at %s does not answer (%s); reporting agentwatch_docker_up 0 "
                           "with the containers' last-known series for up to %gs (docker.keep_last_known_seconds),"
                           " retrying each cycle", self.host or "the default socket", why,
                           self.config.keep_last_known_seconds, docker_host=self.host or "default")
        return self.known()

    def _known_containers(self) -> list[Metric]:
        """The container families of the last collection the engine answered, while not too old."""
        if self._last_known is None:
            return []
        seen, families = self._last_known
        if time.monotonic() - seen > self.config.keep_last_known_seconds:
            self._last_known = None
            log.info("the Docker engine has not answered for over %gs: dropping the containers' last-known series",
                     self.config.keep_last_known_seconds)
            return []
        return families

    async def _listing_now(self, mark: Mark | None) -> list[dict[str, Any]]:
        """The engine's container listing: the last one while the event stream saw no change since it
        was asked for (and the engine answers a ping), else a new one (``engine_changes``). ``mark``
        is the change feed's, taken before asking."""
        now = time.monotonic()
        last = self._listing
        if last is not None and self.changes is not None and self.changes.quiet(last[1]) \
                and now - last[0] < LISTING_MAX_AGE and await self.run_sync(self._ping):
            return last[2]
        listing = await self.run_sync(self._list)
        self._listing = (now, mark, listing)
        return listing

    async def _discover(self) -> list[_Container]:
        mark = self.changes.mark() if self.changes is not None else None
        selected = self._select(await self._listing_now(mark))
        self._listed_at = time.time()  # the engine answered: the containers are as listed
        now = time.monotonic()
        keys = {item["Id"]: listing_key(item) for item, _ in selected}
        for stale in self._inspected.keys() - keys.keys():
            del self._inspected[stale]
        todo = [cid for cid in keys if not self._fresh(cid, keys[cid], now)]
        for cid, data in zip(todo, await asyncio.gather(*(self.run_sync(self._inspect, cid) for cid in todo)),
                             strict=True):
            if data is None:
                self._inspected.pop(cid, None)
            else:
                self._inspected[cid] = (keys[cid], now, data, mark)
        return [_Container(item["Id"], self._labels(item, name), self._inspected[item["Id"]][2])
                for item, name in selected if item["Id"] in self._inspected]

    async def _learn_exit_codes(self, containers: list[_Container]) -> None:
        """Remember each container's last exit code before a restart resets it (see the module doc)."""
        todo = []
        for c in containers:
            state = c.inspect["State"]
            finished = str(state.get("FinishedAt") or "")
            if not is_running(state):
                self._exits[c.id] = (finished, exit_code_of(state))
            elif docker_time(finished) > 0 and self._exits.get(c.id, ("", None))[0] != finished:
                todo.append((c, finished))  # a run ended since the last cycle that saw it stopped
        codes = await asyncio.gather(*(self.run_sync(self._die_exit_code, c.id, c.inspect["State"])
                                       for c, _ in todo))
        for (c, finished), code in zip(todo, codes, strict=True):
            self._exits[c.id] = (finished, code)
        for stale in self._exits.keys() - {c.id for c in containers}:
            del self._exits[stale]

    def _last_exit_code(self, c: _Container) -> int | None:
        """The exit code of the container's last finished run; 0 if it never finished, None if unknown."""
        state = c.inspect["State"]
        if not is_running(state):
            return exit_code_of(state)
        finished, code = self._exits.get(c.id, ("", None))
        if docker_time(state.get("FinishedAt")) == 0:
            return 0
        return code if finished == str(state.get("FinishedAt") or "") else None

    def _fresh(self, cid: str, key: ListingKey, now: float) -> bool:
        """Reuse an inspect while the listing says nothing changed, for at most INSPECT_MAX_AGE
        (INSPECT_MAX_AGE_WITH_EVENTS while the event stream vouches for it, and not at all once an
        event named the container: ``engine_changes``).

        The key holds the state, the parenthesised parts of Status (health, exit code) and how long
        the container has been up or exited. A restart or a new exit shows as a new state or a
        duration that went backwards; the age bound catches what the listing cannot show (a
        ``docker update``). Comparing durations instead of the text keeps the cache hitting while
        "Up 40 seconds" ticks on. The bound is spread by container id (``inspect_max_age``).
        """
        cached = self._inspected.get(cid)
        if cached is None:
            return False
        verdict = self.changes.since(cid, cached[3]) if self.changes is not None else "unknown"
        if verdict == "changed":  # an event named it: updated, restarted, renamed...
            return False
        if verdict == "unknown" and self.changes is not None and self.changes.mark() is not None:
            return False  # asked before the stream (re)connected: once more, vouched for from now on
        bound = INSPECT_MAX_AGE_WITH_EVENTS if verdict == "unchanged" else INSPECT_MAX_AGE
        if now - cached[1] >= inspect_max_age(cid, bound):
            return False
        (state, marks, seconds), (old_state, old_marks, old_seconds) = key, cached[0]
        return state == old_state and marks == old_marks and seconds >= old_seconds

    async def _fill_stats(self, containers: list[_Container],
                          known: dict[str, tuple[int, ContainerStats]] | None = None) -> None:
        """Stats of the running containers: ``known`` (read during the listing) where the pid is
        still the same, the cgroup files for the others, the API for what cgroups cannot give."""
        running = [c for c in containers if c.pid > 0]
        todo = running
        if self._try_cgroup and running and (self.config.stats_source == "cgroup" or self._tree.readable()):
            late = []
            for c in running:
                got = (known or {}).get(c.id)
                if got is not None and got[0] == c.pid:
                    c.stats, c.source = got[1], "cgroup"
                else:
                    late.append(c)
            live = {c.id for c in running}
            if late:
                failed = await self.run_sync(self._read_cgroups, late, live)
            else:
                failed = {}
                for stale in self._cgroups.keys() - live:
                    del self._cgroups[stale]
            self._tree.files.sweep()  # close the files of containers that are gone
            if failed and self.config.stats_source == "cgroup":
                sample = next(iter(failed.items()))
                self._once.problem("cgroup", "cannot read cgroup files of %d containers (stats_source: cgroup), "
                                   "e.g. %s: %s", len(failed), sample[0][:12], sample[1])
                todo = []
            else:
                self._once.cleared("cgroup", "cgroup files readable again")
                todo = [c for c in running if c.id in failed]
                if todo and not self._fallback_logged:
                    self._fallback_logged = True
                    log.info("cgroup files of %d containers not visible; reading their stats through the API "
                             "(e.g. %s)", len(todo), next(iter(failed.values())))
        if todo:
            results = await asyncio.gather(*(self.run_sync(self._api_stats, c.id) for c in todo))
            for c, stats in zip(todo, results, strict=True):
                c.stats, c.source = stats, "api" if stats is not None else None

    # --- families ----------------------------------------------------------------------

    def _engine_families(self, up: bool, used: set[str]) -> list[Metric]:
        docker_up = catalog.gauge("agentwatch_docker_up")
        docker_up.add_metric([], 1 if up else 0)
        if not used:  # nothing read this cycle: show the path that would be used
            used = {"cgroup" if self._try_cgroup and self._tree.readable() else "api"}
        source = catalog.gauge("agentwatch_docker_stats_source")
        for name in SOURCES:
            source.add_metric([name], 1 if name in used else 0)
        return [docker_up, source]

    def _families(self, containers: list[_Container]) -> list[Metric]:
        """This cycle's families, samples appended straight to them (see ``_Rows``)."""
        extra = [metric for _, metric in self._extra]
        fams = {s.name: catalog.scalar(s.name, extra) for s in catalog.DOCKER if s.name not in ENGINE_FAMILIES}
        rows = _Rows(fams, extra)
        static: dict[str, _StaticRows] = {}
        for c in containers:
            cached = self._static.get(c.id)
            if cached is None or cached.inspect is not c.inspect or cached.labels != c.labels:
                cached = _StaticRows.of(c, rows)
            static[c.id] = cached
            cached.extend_into(rows)
            base = cached.base
            put = rows.put
            exit_code = self._last_exit_code(c)
            if exit_code is not None:
                put("agentwatch_container_last_exit_code", base, exit_code)
            put("agentwatch_container_last_seen_timestamp_seconds", base, self._listed_at)
            st = c.stats
            limit = st.memory_limit if st is not None and st.memory_limit is not None else cached.inspect_limit
            put("agentwatch_container_memory_limit_bytes", base, limit)
            if st is None:
                continue
            put("agentwatch_container_memory_usage_bytes", base, st.memory_usage)
            put("agentwatch_container_memory_working_set_bytes", base, st.memory_working_set)
            if limit > 0:
                put("agentwatch_container_memory_working_set_ratio", base, st.memory_working_set / limit)
            put("agentwatch_container_memory_rss_bytes", base, st.memory_rss)
            put("agentwatch_container_memory_cache_bytes", base, st.memory_cache)
            if st.memory_oom_kills is not None:
                put("agentwatch_container_memory_oom_kills_total", base, st.memory_oom_kills)
            put("agentwatch_container_cpu_usage_seconds_total", base, st.cpu_seconds)
            put("agentwatch_container_cpu_periods_total", base, st.cpu_periods)
            put("agentwatch_container_cpu_throttled_periods_total", base, st.cpu_throttled_periods)
            put("agentwatch_container_cpu_throttled_seconds_total", base, st.cpu_throttled_seconds)
            put("agentwatch_container_blkio_read_bytes_total", base, st.blkio_read_bytes)
            put("agentwatch_container_blkio_write_bytes_total", base, st.blkio_write_bytes)
            put("agentwatch_container_pids", base, st.pids)
            if st.net is not None and not cached.host_network:  # the host's counters, not its own
                put("agentwatch_container_network_receive_bytes_total", base, st.net.rx_bytes)
                put("agentwatch_container_network_transmit_bytes_total", base, st.net.tx_bytes)
                put("agentwatch_container_network_receive_errors_total", base, st.net.rx_errors)
                put("agentwatch_container_network_transmit_errors_total", base, st.net.tx_errors)
        self._static = static
        used = {c.source for c in containers if c.source}
        return [*self._engine_families(up=True, used=used), *fams.values()]

    def _publish(self, containers: list[_Container], readings: Readings) -> None:
        """Hand this cycle's facts to the insights collector (see agentwatch.readings)."""
        out = []
        for c in containers:
            state, host = c.inspect["State"], c.inspect.get("HostConfig") or {}
            policy = host.get("RestartPolicy") or {}
            st = c.stats
            limit = st.memory_limit if st is not None and st.memory_limit is not None else (host.get("Memory") or 0)
            args = c.inspect.get("Args")
            args = args if isinstance(args, list) else []
            out.append(ContainerReading(
                id=c.id, labels=tuple(c.labels), state=str(state.get("Status") or "unknown"),
                running=is_running(state), working_set=float(st.memory_working_set) if st is not None else None,
                limit=float(limit), started_at=docker_time(state.get("StartedAt")),
                finished_at=docker_time(state.get("FinishedAt")), exit_code=self._last_exit_code(c),
                oom_killed=bool(state.get("OOMKilled")), restart_count=int(c.inspect.get("RestartCount") or 0),
                restart_policy=str(policy.get("Name") or "no"), max_retries=int(policy.get("MaximumRetryCount") or 0),
                health=str((state.get("Health") or {}).get("Status") or "none"),
                command=" ".join(str(a) for a in [c.inspect.get("Path") or "", *args])[:256]))
        readings.put_containers(out, [metric for _, metric in self._extra], time.time())

    async def stop(self) -> None:
        await asyncio.to_thread(self._drop_client)
        await super().stop()

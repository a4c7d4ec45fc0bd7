"""Containers on the Docker engine: state, restarts, exit codes, limits and resource usage.

One cycle does what cAdvisor does, because the engine's stats endpoint is slow (about a second
per container) while the kernel's own files answer in microseconds:

1. discovery: one ``/containers/json`` call lists every container (``include_stopped``), filtered
   by ``name_filter`` and capped at ``max_containers`` (running ones first);
2. inspect, concurrently in this collector's bounded pool (``max_concurrency`` workers): restart
   count, OOM flag, exit code, start/finish times, health, init pid, limits, restart policy. An
   inspect is reused while the listing's state and status text are unchanged (at most 30 s), so
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

Every SDK call runs in the pool, never on the event loop. An engine that cannot be reached is a
state (``agentwatch_docker_up 0``, one warning, the client re-created on a later cycle); any other
failure (a malformed response, a call that hangs past the SDK timeout) raises, so the collection
loop counts it in ``agentwatch_collector_errors_total`` while the other collectors carry on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker
from prometheus_client.core import Metric

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
    engine_host,
    is_local,
    is_unreachable,
    make_client,
    sdk_timeout,
)
from agentwatch.log import OnceLogger

log = logging.getLogger("agentwatch.containers")

SOURCES = ("cgroup", "api")
#: Longest an inspect is reused for a container whose listing entry has not changed (seconds).
INSPECT_MAX_AGE = 30.0
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
    if not isinstance(value, str):
        return 0.0
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


def _check_listing(listing: Any) -> list[dict[str, Any]]:
    if not isinstance(listing, list) or not all(isinstance(c, dict) and isinstance(c.get("Id"), str)
                                                 for c in listing):
        raise ValueError("/containers/json: expected a list of objects with an Id")
    return listing


def _check_inspect(data: Any, container_id: str) -> dict[str, Any]:
    if not (isinstance(data, dict) and isinstance(data.get("State"), dict)
            and isinstance(data.get("HostConfig", {}), dict)):
        raise ValueError(f"/containers/{container_id[:12]}/json: expected an object with State and HostConfig")
    return data


class ContainerCollector(Collector):
    """Container metrics from the engine API (discovery, inspect) and cgroup files (stats)."""

    name = "containers"

    def __init__(self, config: DockerConfig) -> None:
        super().__init__(timeout=config.timeout_seconds, max_workers=config.max_concurrency)
        self.config = config
        self.host = engine_host(config.host)
        self._sdk_timeout = sdk_timeout(config.timeout_seconds)
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._once = OnceLogger(log)
        self._fallback_logged = False
        self._tree = CgroupTree(config.cgroup_root)
        self._cgroups: dict[str, tuple[int, ContainerCgroup]] = {}
        self._inspected: dict[str, tuple[ListingKey, float, dict[str, Any]]] = {}
        #: id -> (FinishedAt of the container's last run, its exit code; None when unknown)
        self._exits: dict[str, tuple[str, int | None]] = {}
        self._name_re = re.compile(config.name_filter) if config.name_filter else None
        self._extra = [(label, DockerConfig.metric_label(label)) for label in config.label_allowlist]
        mode = config.stats_source
        self._try_cgroup = mode == "cgroup" or (mode == "auto" and is_local(self.host))

    # --- engine calls (pool threads only) -------------------------------------------------

    def _get_client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.config.host, self._sdk_timeout, self.config.max_concurrency + 2)
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
        return _check_listing(self._get_client().api.containers(all=self.config.include_stopped))

    def _inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            data = self._get_client().api.inspect_container(container_id)
        except docker.errors.NotFound:  # removed since the listing
            return None
        return _check_inspect(data, container_id)

    def _die_exit_code(self, container_id: str, state: dict[str, Any]) -> int | None:
        """The exit code of the run before this one; None (not a failed collection) if unknown."""
        since = docker_time(state.get("FinishedAt")) - 0.001
        until = max(docker_time(state.get("StartedAt")), since)
        try:
            code = die_exit_code(self._get_client().api, container_id, since, until, self._sdk_timeout)
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
            payload = container_stats_api.fetch(self._get_client(), container_id)
        except docker.errors.NotFound:
            return None
        try:
            return container_stats_api.from_payload(payload)
        except ValueError as exc:
            raise ValueError(f"stats of {container_id[:12]}: {exc}") from None

    # --- cgroup path (one pool call for all containers) ----------------------------------

    def _read_cgroups(self, containers: Sequence[_Container]) -> dict[str, str]:
        """Fill ``stats`` from cgroup files; return id -> why not, for the ones that failed."""
        failed: dict[str, str] = {}
        live = set()
        for c in containers:
            live.add(c.id)
            try:
                cached = self._cgroups.get(c.id)
                if cached is None or cached[0] != c.pid:
                    cached = (c.pid, self._tree.locate(self.config.proc_root, c.pid, c.id))
                    self._cgroups[c.id] = cached
                stats = self._tree.read(cached[1])
                stats.net = read_net(self.config.proc_root, c.pid)
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
            containers = await self._discover()
            await self._learn_exit_codes(containers)
            await self._fill_stats(containers)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            await self.run_sync(self._drop_client)
            self._once.problem("engine", "Docker engine unreachable at %s (%s); reporting agentwatch_docker_up 0 "
                               "and retrying each cycle", self.host or "the default socket", exc,
                               docker_host=self.host or "default")
            return self._engine_families(up=False, used=set())
        self._once.cleared("engine", "Docker engine reachable again at %s", self.host or "the default socket")
        return self._families(containers)

    async def _discover(self) -> list[_Container]:
        selected = self._select(await self.run_sync(self._list))
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
                self._inspected[cid] = (keys[cid], now, data)
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
        """Reuse an inspect while the listing says nothing changed, for at most INSPECT_MAX_AGE.

        The key holds the state, the parenthesised parts of Status (health, exit code) and how long
        the container has been up or exited. A restart or a new exit shows as a new state or a
        duration that went backwards; the age bound catches what the listing cannot show (a
        ``docker update``). Comparing durations instead of the text keeps the cache hitting while
        "Up 40 seconds" ticks on.
        """
        cached = self._inspected.get(cid)
        if cached is None or now - cached[1] >= INSPECT_MAX_AGE:
            return False
        (state, marks, seconds), (old_state, old_marks, old_seconds) = key, cached[0]
        return state == old_state and marks == old_marks and seconds >= old_seconds

    async def _fill_stats(self, containers: list[_Container]) -> None:
        running = [c for c in containers if c.pid > 0]
        todo = running
        if self._try_cgroup and running and (self.config.stats_source == "cgroup" or self._tree.readable()):
            failed = await self.run_sync(self._read_cgroups, running)
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
        extra = [metric for _, metric in self._extra]
        fams = {s.name: catalog.scalar(s.name, extra) for s in catalog.DOCKER if s.name not in ENGINE_FAMILIES}

        def put(name: str, labels: list[str], value: float) -> None:
            fams[name].add_metric(labels, value)

        for c in containers:
            base = c.labels
            state = c.inspect["State"]
            host = c.inspect.get("HostConfig") or {}
            status = str(state.get("Status") or "unknown")
            health = str((state.get("Health") or {}).get("Status") or "none")
            policy = host.get("RestartPolicy") or {}
            policy_name = str(policy.get("Name") or "no")

            fams["agentwatch_container_info"].add_metric([*base[:4], c.id[:12], *base[4:]], 1)
            for s in (*catalog.CONTAINER_STATES, *(() if status in catalog.CONTAINER_STATES else (status,))):
                fams["agentwatch_container_state"].add_metric([*base[:4], s, *base[4:]], 1 if s == status else 0)
            for s in (*catalog.HEALTH_STATES, *(() if health in catalog.HEALTH_STATES else (health,))):
                fams["agentwatch_container_health_status"].add_metric([*base[:4], s, *base[4:]],
                                                                      1 if s == health else 0)
            fams["agentwatch_container_restart_policy"].add_metric([*base[:4], policy_name, *base[4:]], 1)
            put("agentwatch_container_restart_policy_max_retries", base,
                (policy.get("MaximumRetryCount") or 0) if policy_name == "on-failure" else 0)
            put("agentwatch_container_restarts_total", base, c.inspect.get("RestartCount") or 0)
            exit_code = self._last_exit_code(c)
            if exit_code is not None:
                put("agentwatch_container_last_exit_code", base, exit_code)
            put("agentwatch_container_oom_killed", base, 1 if state.get("OOMKilled") else 0)
            put("agentwatch_container_start_time_seconds", base, docker_time(state.get("StartedAt")))
            put("agentwatch_container_finish_time_seconds", base, docker_time(state.get("FinishedAt")))
            put("agentwatch_container_cpu_limit_cores", base, cpu_limit_cores(host))

            st = c.stats
            limit = st.memory_limit if st is not None and st.memory_limit is not None else (host.get("Memory") or 0)
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
            if st.net is not None and host.get("NetworkMode") != "host":  # the host's counters, not its own
                put("agentwatch_container_network_receive_bytes_total", base, st.net.rx_bytes)
                put("agentwatch_container_network_transmit_bytes_total", base, st.net.tx_bytes)
                put("agentwatch_container_network_receive_errors_total", base, st.net.rx_errors)
                put("agentwatch_container_network_transmit_errors_total", base, st.net.tx_errors)
        used = {c.source for c in containers if c.source}
        return [*self._engine_families(up=True, used=used), *fams.values()]

    async def stop(self) -> None:
        await asyncio.to_thread(self._drop_client)
        await super().stop()

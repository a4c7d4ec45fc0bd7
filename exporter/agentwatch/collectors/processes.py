"""Agent processes on this host, grouped by the config's matchers, plus host memory.

One scan per cycle, in the collector's single worker thread: list ``/proc``, read each process's
``stat`` (name, parent, start time, CPU ticks, threads, RSS), decide its group through the cached
matchers (``procmatch``), and only for processes in a group also count ``fd/`` entries and, when
``uss: true``, read ``smaps_rollup``. Everything is summed per group and per label set from the
cmdline regex's named groups. Processes that vanish or deny access mid-scan are skipped and counted;
label sets beyond ``max_label_sets_per_group`` are folded into one ``_other`` set (totals stay
right) and counted; per-process series only exist when enabled and are capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import prometheus_client as prom
from prometheus_client.core import Metric

from agentwatch import catalog
from agentwatch.collectors import procscan
from agentwatch.collectors.base import STAGE_FIRST, Collector
from agentwatch.collectors.procmatch import NO_GROUP, Matchers
from agentwatch.config import ProcessesConfig
from agentwatch.log import OnceLogger
from agentwatch.readings import GroupReading, Readings

log = logging.getLogger("agentwatch.processes")

#: Reasons the skip counter always carries (present from the first scan, at 0).
SKIP_REASONS = ("vanished", "access_denied", "read_error", "fds_denied", "uss_denied")
#: Label value of the set that collects a group's processes beyond its label-set cap.
OTHER = "_other"


@dataclass(slots=True)
class _Agg:
    """Sums for one (group, label set)."""

    count: int = 0
    rss: int = 0
    uss: int = 0
    uss_seen: int = 0
    cpu_ticks: int = 0
    fds: int = 0
    fds_seen: int = 0
    threads: int = 0
    oldest_start: int | None = None
    rss_each: list[int] = field(default_factory=list)  # for the gauge histogram

    def add(self, rss: int, cpu_ticks: int, threads: int, start: int, fds: int | None, uss: int | None) -> None:
        self.count += 1
        self.rss += rss
        self.cpu_ticks += cpu_ticks
        self.threads += threads
        if self.oldest_start is None or start < self.oldest_start:
            self.oldest_start = start
        if fds is not None:
            self.fds += fds
            self.fds_seen += 1
        if uss is not None:
            self.uss += uss
            self.uss_seen += 1
        self.rss_each.append(rss)

    def merge(self, other: _Agg) -> None:
        self.count += other.count
        self.rss += other.rss
        self.uss += other.uss
        self.uss_seen += other.uss_seen
        self.cpu_ticks += other.cpu_ticks
        self.fds += other.fds
        self.fds_seen += other.fds_seen
        self.threads += other.threads
        if other.oldest_start is not None and (self.oldest_start is None or other.oldest_start < self.oldest_start):
            self.oldest_start = other.oldest_start
        self.rss_each.extend(other.rss_each)


@dataclass
class ScanResult:
    """What one scan saw, before it becomes metric families."""

    aggs: dict[tuple[int, tuple[str, ...]], _Agg]
    per_process: list[tuple[int, int, int]]  # (rss bytes, group index, pid)
    skipped: Counter[str]
    uptime: float
    memory: tuple[int, int] | None
    scanned: int


class ProcessCollector(Collector):
    """Agent process groups from ``/proc`` (see the module docstring for the cost model)."""

    name = "processes"
    stage = STAGE_FIRST  # a /proc scan is Python and system calls: alone, it is not slowed by the others

    def __init__(self, config: ProcessesConfig, readings: Readings | None = None) -> None:
        # One worker: scans never overlap, so the caches need no lock.
        super().__init__(timeout=config.timeout_seconds, max_workers=1)
        self.config = config
        self.readings = readings  # the insights collector's board, when on
        self.root = config.proc_root.rstrip("/") or "/"
        self.matchers = Matchers(config.groups)
        self.ticks = float(os.sysconf("SC_CLK_TCK"))
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.count_fds = procscan.FdCounter(self.root)
        self.stats = procscan.StatReader(self.root)
        self._self_pid = os.getpid() if os.path.realpath(self.root) == "/proc" else None
        # totals kept across scans; the series exist from the first scan, at 0
        self.registry = catalog.PrivateRegistry()
        self._skipped = catalog.metric("agentwatch_process_scan_skipped_total", self.registry, prom.Counter)
        self._dropped = catalog.metric("agentwatch_process_group_series_dropped_total", self.registry, prom.Counter)
        for reason in SKIP_REASONS:
            self._skipped.labels(reason)
        for group in config.groups:
            self._dropped.labels(group.name)
        self._admitted: dict[int, set[tuple[str, ...]]] = {}
        self._once = OnceLogger(log)
        self._inflight: asyncio.Future[list[Metric]] | None = None
        #: Duration and process count of the last scan, for benchmarks and logs.
        self.last_scan_seconds = 0.0
        self.last_scanned = 0

    async def collect(self) -> list[Metric]:
        # A scan that outlived its timeout (a /proc read can block on a busy process) is awaited
        # again rather than started twice: at most one scan thread exists at any time.
        if self._inflight is None or self._inflight.done():
            fut = asyncio.ensure_future(self.run_sync(self.collect_blocking))
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._inflight = fut
        return await asyncio.shield(self._inflight)

    async def stop(self) -> None:
        """Close the stat files kept open between scans (in the worker: never under a running scan)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.run_sync(self.stats.close), self.timeout)
        await super().stop()

    def collect_blocking(self) -> list[Metric]:
        """One scan rendered into families; runs in the worker thread."""
        start = time.perf_counter()
        result = self.scan()
        families = self.render(result)
        if self.readings is not None:
            self._publish(result, self.readings)
        self.last_scan_seconds = time.perf_counter() - start
        self.last_scanned = result.scanned
        return families

    def _publish(self, result: ScanResult, readings: Readings) -> None:
        """Each group's totals (all its label sets) for the insights collector."""
        totals = {i: [0, 0] for i in range(len(self.matchers.groups))}
        for (group, _), agg in result.aggs.items():
            totals[group][0] += agg.count
            totals[group][1] += agg.rss
        groups = [GroupReading(self.matchers.groups[i].name, n, float(rss)) for i, (n, rss) in totals.items()]
        memory = (float(result.memory[0]), float(result.memory[1])) if result.memory is not None else None
        readings.put_groups(groups, memory, time.time())

    # -- reading ------------------------------------------------------------------------------

    def _uptime(self) -> float:
        try:
            return procscan.read_uptime(self.root)
        except (OSError, ValueError, IndexError) as exc:
            self._once.problem("uptime", "cannot read %s/uptime (%s); using the boot time", self.root, exc)
            import psutil  # only here, for a proc tree without uptime: psutil is 1 MB of the exporter's RSS

            return time.time() - psutil.boot_time()

    def _memory(self) -> tuple[int, int] | None:
        try:
            return procscan.read_meminfo(self.root)
        except (OSError, ValueError, IndexError) as exc:
            self._once.problem("meminfo", "cannot read %s/meminfo: %s; host memory not exported", self.root, exc)
            return None

    def scan(self) -> ScanResult:
        """Read every process once and sum the matched ones per group and label set."""
        root, skipped = self.root, Counter[str]()
        uptime = self._uptime()
        try:
            pids = procscan.list_pids(root)
        except OSError as exc:
            raise RuntimeError(f"cannot list processes in {root}: {exc.strerror or exc}") from None
        stats: dict[int, procscan.Stat] = {}
        for pid in pids:
            if pid == self._self_pid:
                continue
            try:
                st = self.stats.read(pid)
            except (OSError, ValueError, IndexError) as exc:
                skipped[procscan.skip_reason(exc)] += 1
                continue
            if not (st.is_kernel_thread or st.is_dead):
                stats[pid] = st
        self.matchers.forget_except(set(stats))
        self.stats.forget_except(set(pids))

        def parent_comm(ppid: int) -> str | None:
            parent = stats.get(ppid)
            if parent is not None:
                return parent.comm
            try:
                return procscan.read_stat(root, ppid).comm if ppid > 0 else None
            except (OSError, ValueError, IndexError):
                return None

        now = time.monotonic()
        aggs: dict[tuple[int, tuple[str, ...]], _Agg] = {}
        per_process: list[tuple[int, int, int]] = []
        want_uss = self.config.uss
        for st in stats.values():
            age = uptime - st.starttime / self.ticks
            try:
                found = self.matchers.match(st, age, now, root, parent_comm)
                if found.group == NO_GROUP:
                    continue
                fds = uss = None
                try:
                    fds = self.count_fds(st.pid)
                except PermissionError:
                    skipped["fds_denied"] += 1
                if want_uss:
                    try:
                        uss = procscan.read_uss(root, st.pid)
                    except PermissionError:
                        skipped["uss_denied"] += 1
            except (OSError, ValueError, IndexError) as exc:
                skipped[procscan.skip_reason(exc)] += 1
                continue
            rss = st.rss_pages * self.page_size
            key = (found.group, found.labels)
            agg = aggs.get(key)
            if agg is None:
                agg = aggs[key] = _Agg()
            agg.add(rss, st.utime + st.stime, st.num_threads, st.starttime, fds, uss)
            per_process.append((rss, found.group, st.pid))
        return ScanResult(aggs, per_process, skipped, uptime, self._memory(), len(stats))

    # -- bounding -----------------------------------------------------------------------------

    def _cap_label_sets(self, aggs: dict[tuple[int, tuple[str, ...]], _Agg]) -> dict[int, dict[tuple[str, ...], _Agg]]:
        """Per group, at most ``max_label_sets_per_group`` label sets plus one ``_other`` set.

        Sets admitted last cycle keep their place, then the most populous win, so series do not
        flap between scans.
        """
        cap = self.config.max_label_sets_per_group
        by_group: dict[int, dict[tuple[str, ...], _Agg]] = {i: {} for i in range(len(self.matchers.groups))}
        for (group, labels), agg in aggs.items():
            by_group[group][labels] = agg
        other_key = (OTHER,) * len(self.matchers.label_names)
        for group, sets in by_group.items():
            if len(sets) > cap:
                previous = self._admitted.get(group, set())
                order = sorted(sets, key=lambda k: (k not in previous, -sets[k].count, k))
                kept = {k: sets[k] for k in order[:cap]}
                overflow = kept.get(other_key, _Agg())
                for k in order[cap:]:
                    overflow.merge(sets[k])
                kept[other_key] = overflow
                name = self.matchers.groups[group].name
                self._dropped.labels(name).inc(len(order) - cap)
                self._once.problem(f"labels:{name}", "process group %s has more than %d label sets; the rest are "
                                   "summed under %s", name, cap, OTHER, group=name)
                by_group[group] = kept
                self._admitted[group] = set(order[:cap])
            else:
                self._admitted[group] = set(sets)
        return by_group

    # -- rendering ----------------------------------------------------------------------------

    def render(self, result: ScanResult) -> list[Metric]:
        """Metric families for one scan; counters carry the totals kept across scans."""
        families: list[Metric] = []
        if result.memory is not None:
            total, available = result.memory
            for name, value in (("agentwatch_host_memory_total_bytes", total),
                                ("agentwatch_host_memory_available_bytes", available),
                                ("agentwatch_host_memory_used_ratio", 1 - available / total if total else 0.0)):
                fam = catalog.gauge(name)
                fam.add_metric([], float(value))
                families.append(fam)
        families.extend(self._group_families(result))
        if self.config.per_process.enabled:
            families.append(self._per_process_family(result))
        for reason, n in result.skipped.items():
            self._skipped.labels(reason).inc(n)
            if n and reason != "vanished":
                self._once.problem(f"skip:{reason}", "process scan skipped reads: %s (counted in "
                                   "agentwatch_process_scan_skipped_total)", reason, reason=reason)
        families.extend(self.registry.collect())
        return families

    def _group_families(self, result: ScanResult) -> list[Metric]:
        extra = self.matchers.label_names
        names = ["agentwatch_process_group_processes", "agentwatch_process_group_memory_rss_bytes",
                 "agentwatch_process_group_open_fds", "agentwatch_process_group_threads",
                 "agentwatch_process_group_oldest_age_seconds"]
        if self.config.uss:
            names.append("agentwatch_process_group_memory_uss_bytes")
        fam = {n: catalog.gauge(n, extra) for n in names}
        cpu = catalog.counter("agentwatch_process_group_cpu_seconds_total", extra)
        rss_each = catalog.gauge_histogram("agentwatch_process_group_process_rss_bytes", extra)
        uss = fam.get("agentwatch_process_group_memory_uss_bytes")
        empty_labels = ("",) * len(extra)
        for group, sets in self._cap_label_sets(result.aggs).items():
            gname = self.matchers.groups[group].name
            if not sets:
                sets = {empty_labels: _Agg()}  # the group is shown, with no processes
            for labels, agg in sorted(sets.items()):
                lv = [gname, *labels]
                fam["agentwatch_process_group_processes"].add_metric(lv, float(agg.count))
                fam["agentwatch_process_group_memory_rss_bytes"].add_metric(lv, float(agg.rss))
                cpu.add_metric(lv, agg.cpu_ticks / self.ticks)
                fam["agentwatch_process_group_threads"].add_metric(lv, float(agg.threads))
                rss_each.add_values(lv, agg.rss_each)
                if agg.fds_seen or not agg.count:
                    fam["agentwatch_process_group_open_fds"].add_metric(lv, float(agg.fds))
                if uss is not None and (agg.uss_seen or not agg.count):
                    uss.add_metric(lv, float(agg.uss))
                if agg.oldest_start is not None:
                    age = max(0.0, result.uptime - agg.oldest_start / self.ticks)
                    fam["agentwatch_process_group_oldest_age_seconds"].add_metric(lv, age)
        return [*fam.values(), cpu, rss_each]

    def _per_process_family(self, result: ScanResult) -> Metric:
        cap = self.config.per_process.max_series
        fam = catalog.gauge("agentwatch_process_memory_rss_bytes")
        rows = sorted(result.per_process, key=lambda r: (-r[0], r[2]))
        if len(rows) > cap:
            self._once.problem("per_process_cap", "more than %d matched processes; per-process series are "
                               "limited to the %d largest by RSS", cap, cap)
        for rss, group, pid in rows[:cap]:
            fam.add_metric([self.matchers.groups[group].name, str(pid)], float(rss))
        return fam

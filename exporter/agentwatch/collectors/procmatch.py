"""Which agent group a process belongs to, decided once per process and cached.

A process joins the first group whose conditions all hold: exact process name, a regex searched in
the space-joined cmdline (its named groups become labels), a regex the parent's name must match as
a whole, and inside/outside a container. Reading a cmdline costs a file read per process, so the
result is cached per (pid, start time) and only re-checked when the process's name or parent
changes (an exec or a re-parenting), while it is young (a fork shows the parent's cmdline until it
execs), or after ``RECHECK_SECONDS`` (a process that rewrites its own title).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentwatch.collectors import procscan
from agentwatch.config import ProcessMatcher

#: Processes younger than this are re-matched every cycle (fork, then exec, keeps pid and start time).
SETTLE_SECONDS = 10.0
#: Cached matches older than this are re-checked, for processes that rewrite their cmdline.
RECHECK_SECONDS = 300.0
#: Label values taken from the cmdline are cut to this length.
MAX_LABEL_VALUE = 128
#: The comm the kernel keeps is cut to 15 bytes.
COMM_LEN = 15

NO_GROUP = -1


@dataclass(frozen=True, slots=True)
class Match:
    """A group index (NO_GROUP for none) and the label values in the order of ``Matchers.label_names``."""

    group: int
    labels: tuple[str, ...] = ()


NO_MATCH = Match(NO_GROUP)


class CompiledMatcher:
    """One group's conditions, compiled."""

    def __init__(self, spec: ProcessMatcher, label_names: Sequence[str]) -> None:
        self.name = spec.name
        self.process_name = spec.process_name
        self.cmdline = re.compile(spec.cmdline) if spec.cmdline else None
        self.parent = re.compile(spec.parent) if spec.parent else None
        self.in_container = spec.in_container
        own = self.cmdline.groupindex if self.cmdline else {}
        #: (position in the union label tuple, regex group name) for this matcher's named groups.
        self.slots = [(label_names.index(n), n) for n in own]

    def name_matches(self, comm: str) -> bool:
        if self.process_name is None:
            return True
        if len(comm) >= COMM_LEN:
            return self.process_name[:COMM_LEN] == comm[:COMM_LEN]
        return self.process_name == comm


@dataclass(slots=True)
class _Entry:
    starttime: int
    comm: str
    ppid: int
    match: Match
    checked_at: float


class Matchers:
    """All groups in config order, plus the per-process cache of their verdicts."""

    def __init__(self, groups: Sequence[ProcessMatcher]) -> None:
        names: set[str] = set()
        for g in groups:
            if g.cmdline:
                names.update(re.compile(g.cmdline).groupindex)
        #: Label names every group family carries after ``group``: the union of named groups, sorted.
        self.label_names: tuple[str, ...] = tuple(sorted(names))
        self.groups = [CompiledMatcher(g, self.label_names) for g in groups]
        self._empty = ("",) * len(self.label_names)
        self._cache: dict[int, _Entry] = {}

    def match(self, stat: procscan.Stat, age: float, now: float, proc_root: str,
              parent_comm: Callable[[int], str | None]) -> Match:
        """The process's group, from the cache when it still applies; may raise OSError/ValueError."""
        entry = self._cache.get(stat.pid)
        if (entry is not None and entry.starttime == stat.starttime and entry.comm == stat.comm
                and entry.ppid == stat.ppid and age >= SETTLE_SECONDS and now - entry.checked_at < RECHECK_SECONDS):
            return entry.match
        result = self._evaluate(stat, proc_root, parent_comm)
        self._cache[stat.pid] = _Entry(stat.starttime, stat.comm, stat.ppid, result, now)
        return result

    def forget_except(self, live: set[int]) -> None:
        """Drop cache entries of processes that are gone, so the cache never outgrows the pid table."""
        for pid in [p for p in self._cache if p not in live]:
            del self._cache[pid]

    def __len__(self) -> int:
        return len(self._cache)

    def _evaluate(self, stat: procscan.Stat, proc_root: str, parent_comm: Callable[[int], str | None]) -> Match:
        cmdline: str | None = None
        in_container: bool | None = None
        for index, g in enumerate(self.groups):
            if not g.name_matches(stat.comm):
                continue
            found = None
            if g.cmdline is not None:
                if cmdline is None:
                    cmdline = procscan.read_cmdline(proc_root, stat.pid)
                found = g.cmdline.search(cmdline)
                if found is None:
                    continue
            if g.parent is not None:
                pname = parent_comm(stat.ppid)
                if pname is None or not g.parent.fullmatch(pname):
                    continue
            if g.in_container is not None:
                if in_container is None:
                    in_container = procscan.container_id(proc_root, stat.pid) is not None
                if in_container != g.in_container:
                    continue
            return Match(index, self._labels(g, found))
        return NO_MATCH

    def _labels(self, g: CompiledMatcher, found: re.Match[str] | None) -> tuple[str, ...]:
        if not g.slots or found is None:
            return self._empty
        values = list(self._empty)
        for pos, name in g.slots:
            values[pos] = (found.group(name) or "")[:MAX_LABEL_VALUE]
        return tuple(values)

"""Plain readers of ``/proc`` files, fast enough to scan thousands of processes every cycle.

psutil builds an object and opens several files per process and per call; with 1,000 agents that
is hundreds of milliseconds of CPU per scrape. These functions open one file each with
``os.open``/``os.read`` and parse only the fields agentwatch exports. They raise ``OSError``
(vanished, access denied) or ``ValueError`` (unparseable) and leave the policy to the caller;
``skip_reason`` turns an exception into the label the skip counter uses. Every path is relative to
a ``proc_root`` so tests and containers can point them at another tree.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import resource
import threading
import weakref
from dataclasses import dataclass
from typing import Any

#: Bytes of a cmdline that are matched; longer ones are cut (argv can be megabytes).
CMDLINE_LIMIT = 32 * 1024
#: The kernel's PF_KTHREAD flag in /proc/<pid>/stat: kernel threads are never agents.
PF_KTHREAD = 0x00200000
_CHUNK = 8192

#: A container id in /proc/<pid>/cgroup under docker, containerd, CRI-O, podman or Kubernetes,
#: for the cgroupfs (``/docker/<id>``) and systemd (``docker-<id>.scope``) drivers alike.
_CONTAINER_ID = re.compile(rb"(?:docker|containerd|kubepods|libpod|crio)[^\n]*?\b([0-9a-f]{64})\b")


@dataclass(slots=True)
class Stat:
    """The fields of /proc/<pid>/stat that agentwatch uses (times in clock ticks, rss in pages)."""

    pid: int
    comm: str
    state: str
    ppid: int
    flags: int
    utime: int
    stime: int
    num_threads: int
    starttime: int
    rss_pages: int

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    @property
    def is_dead(self) -> bool:
        """Zombies and exiting tasks: they hold no memory and are no longer running agents."""
        return self.state in ("Z", "X", "x")


def read_bytes(path: str, limit: int = 1 << 20) -> bytes:
    """The whole file (up to ``limit`` bytes) with one open and usually one read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, min(_CHUNK, limit))
        if len(data) < _CHUNK or len(data) >= limit:
            return data
        parts = [data]
        size = len(data)
        while size < limit:
            chunk = os.read(fd, min(1 << 16, limit - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def list_pids(proc_root: str) -> list[int]:
    """Thread-group ids present under ``proc_root`` (the numeric directory names)."""
    return [int(name) for name in os.listdir(proc_root) if name.isdigit()]


def parse_stat(data: bytes) -> Stat:
    """Parse /proc/<pid>/stat; the name sits in parentheses and may itself hold spaces or ')'.

    Only the first 22 fields after the name are split off (the line has about 50): this runs
    for every process on the host every cycle.
    """
    lpar = data.index(b"(")
    rpar = data.rindex(b")")
    f = data[rpar + 2:].split(None, 22)
    if len(f) < 22:
        raise ValueError(f"stat has {len(f) + 2} fields, expected at least 24")
    return Stat(int(data[:lpar]), data[lpar + 1:rpar].decode("utf-8", "replace"), f[0].decode("ascii", "replace"),
                int(f[1]), int(f[6]), int(f[11]), int(f[12]), int(f[17]), int(f[19]), int(f[21]))


def read_stat(proc_root: str, pid: int) -> Stat:
    """One process's stat line (a few hundred bytes: one open, one read, one close)."""
    fd = os.open(f"{proc_root}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _CHUNK)
    finally:
        os.close(fd)
    return parse_stat(data)


class StatReader:
    """``read_stat`` for a scan every cycle: each process's stat file stays open between scans.

    Reading an open file again (``pread`` at 0) skips the open, its path lookup and the close:
    half the system time per process (issue 14's profile: 10 µs down to 5 µs). The files kept
    open are moved to high descriptor numbers (from half the soft fd limit up), so sockets and
    files opened later still get low numbers (``select()`` cannot watch a descriptor past 1023),
    and all readers of the process together keep at most a quarter of the limit; past that,
    files are opened and closed as ``read_stat`` does. A file whose process has ended fails to
    read and is dropped, then the path is opened again (its pid may be another process's by
    now: the caller compares start times). ``forget_except`` closes the files of processes that
    are gone, ``close`` all of them (also done when the reader is garbage-collected).
    """

    def __init__(self, proc_root: str) -> None:
        self.proc_root = proc_root
        self._open: dict[int, int] = {}
        self._finalizer = weakref.finalize(self, _close_all, self._open)

    def __len__(self) -> int:
        return len(self._open)

    def read(self, pid: int) -> Stat:
        fd = self._open.get(pid)
        if fd is not None:
            try:
                data = os.pread(fd, _CHUNK, 0)
            except OSError:
                data = b""
            if data:
                return parse_stat(data)
            _close_one(self._open, pid)  # the process ended: its pid may name another one now
        fd = os.open(f"{self.proc_root}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, _CHUNK)
            kept = _keep(fd)
        finally:
            os.close(fd)
        if kept is not None:
            self._open[pid] = kept
        return parse_stat(data)

    def forget_except(self, live: set[int]) -> None:
        for pid in [p for p in self._open if p not in live]:
            _close_one(self._open, pid)

    def close(self) -> None:
        _close_all(self._open)


class KeptFiles:
    """Small files read every cycle (cgroup files, ``net/dev``), kept open between reads by path.

    As ``StatReader``: ``pread`` at 0 of a file kept open (at a high descriptor number, within the
    process-wide budget) instead of open, read, close. A read that fails drops the file and opens
    the path again, so a file that was replaced or removed is never read stale; ``sweep`` closes
    the files nobody read since the previous sweep. Safe to share between threads.
    """

    def __init__(self) -> None:
        self._open: dict[str, int] = {}
        self._read: set[str] = set()
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_all, self._open)

    def __len__(self) -> int:
        return len(self._open)

    def read(self, path: str, limit: int = 1 << 20) -> bytes:
        with self._lock:
            self._read.add(path)
            fd = self._open.get(path)
            if fd is not None:
                try:
                    return _pread_all(fd, limit)
                except OSError:
                    _close_one(self._open, path)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = _pread_all(fd, limit)
                kept = _keep(fd)
            finally:
                os.close(fd)
            if kept is not None:
                self._open[path] = kept
            return data

    def sweep(self) -> None:
        with self._lock:
            for path in [p for p in self._open if p not in self._read]:
                _close_one(self._open, path)
            self._read = set()

    def close(self) -> None:
        with self._lock:
            _close_all(self._open)


def _pread_all(fd: int, limit: int) -> bytes:
    """The file from its start, up to ``limit`` bytes; one read for the usual small file."""
    data = os.pread(fd, min(_CHUNK, limit), 0)
    if len(data) < _CHUNK or len(data) >= limit:
        return data
    parts, size = [data], len(data)
    while size < limit:
        chunk = os.pread(fd, min(1 << 16, limit - size), size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


_kept_lock = threading.Lock()
_kept = 0


def _keep(fd: int) -> int | None:
    """A copy of ``fd`` at a high number, counted against the process-wide budget; None if over it."""
    global _kept
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = 65_536 if soft == resource.RLIM_INFINITY else soft
    with _kept_lock:
        if _kept >= min(16_384, soft // 4):
            return None
        try:
            copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, soft // 2)
        except OSError:  # no free number up there
            return None
        _kept += 1
        return copy


def _close_one(kept: dict[Any, int], key: Any) -> None:
    global _kept
    fd = kept.pop(key, None)
    if fd is not None:
        os.close(fd)
        with _kept_lock:
            _kept -= 1


def _close_all(kept: dict[Any, int]) -> None:
    for key in list(kept):
        _close_one(kept, key)


def read_cmdline(proc_root: str, pid: int) -> str:
    """argv joined by spaces (NUL separators, as the kernel keeps them), cut at CMDLINE_LIMIT."""
    raw = read_bytes(f"{proc_root}/{pid}/cmdline", CMDLINE_LIMIT)
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def count_fds(proc_root: str, pid: int) -> int:
    """Open file descriptors; needs the same rights as ptrace, so other users' give PermissionError."""
    return len(os.listdir(f"{proc_root}/{pid}/fd"))


def fd_dir_size_counts(proc_root: str) -> bool:
    """Whether ``stat()`` of ``<proc_root>/<pid>/fd`` gives the number of open fds as its size.

    Linux 6.2 and later do so, which costs one path lookup instead of listing the directory
    (open, getdents, close: about half the scan's time with a thousand agents). Checked on our
    own fd directory: a kernel that does not count reports 0 there, a plain directory (a test's
    fake tree) its block size.
    """
    path = f"{proc_root}/self/fd"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            size = os.stat(path).st_size
            listed = len(os.listdir(path))
        finally:
            os.close(fd)
    except OSError:
        return False
    return size > 0 and 0 <= listed - size <= 1  # listing it opens one more


#: CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: either lets the fd directory of any process be read.
_DAC_CAPS = (1 << 1) | (1 << 2)


def reads_every_fd_dir(proc_root: str) -> bool:
    """Whether this process may list any process's ``fd/`` directory: it holds CAP_DAC_OVERRIDE or
    CAP_DAC_READ_SEARCH in the initial user namespace (where every file's owner maps)."""
    try:
        status = read_bytes(f"{proc_root}/self/status", 1 << 16)
        uid_map = read_bytes(f"{proc_root}/self/uid_map", 4096).split()
    except OSError:
        return False
    caps = next((line.split()[1] for line in status.splitlines() if line.startswith(b"CapEff:")), b"0")
    try:
        effective = int(caps, 16)
    except ValueError:
        return False
    return bool(effective & _DAC_CAPS) and uid_map == [b"0", b"0", b"4294967295"]


class FdCounter:
    """``count_fds`` that asks the kernel for the count when it can (see ``fd_dir_size_counts``).

    ``access()`` first runs the same permission check as listing the directory, so another user's
    process still raises PermissionError exactly as ``count_fds`` does; it is skipped when that
    check cannot fail (``reads_every_fd_dir``).
    """

    def __init__(self, proc_root: str) -> None:
        self.proc_root = proc_root
        self.by_size = fd_dir_size_counts(proc_root)
        self._effective = os.access in os.supports_effective_ids
        #: Whether every fd directory is readable to us anyway (root's capabilities, no user
        #: namespace): then the ``access()`` check would always pass and is skipped.
        self.reads_all = reads_every_fd_dir(proc_root)

    def __call__(self, pid: int) -> int:
        if not self.by_size:
            return count_fds(self.proc_root, pid)
        path = f"{self.proc_root}/{pid}/fd"
        if not self.reads_all and not os.access(path, os.R_OK, effective_ids=self._effective):
            if not os.path.exists(path):
                raise FileNotFoundError(errno.ENOENT, "no such process", path)
            raise PermissionError(errno.EACCES, "cannot read the fd directory", path)
        size = os.stat(path).st_size
        return size if size > 0 else count_fds(self.proc_root, pid)


def parse_private_bytes(data: bytes) -> int:
    """USS as psutil computes it: the sum of the Private_* lines (kB) of smaps_rollup or smaps."""
    total = 0
    for line in data.splitlines():
        if line.startswith(b"Private_"):
            total += int(line.split()[1]) * 1024
    return total


def read_uss(proc_root: str, pid: int) -> int:
    """Unique set size from smaps_rollup (Linux 4.14+), else the full smaps (slower)."""
    try:
        data = read_bytes(f"{proc_root}/{pid}/smaps_rollup")
    except FileNotFoundError:
        data = read_bytes(f"{proc_root}/{pid}/smaps", 64 << 20)
    return parse_private_bytes(data)


def container_id(proc_root: str, pid: int) -> str | None:
    """The container id from /proc/<pid>/cgroup, or None for a process outside any container."""
    found = _CONTAINER_ID.search(read_bytes(f"{proc_root}/{pid}/cgroup", 1 << 16))
    return found.group(1).decode() if found else None


def read_uptime(proc_root: str) -> float:
    """Seconds since boot, the clock that process start times count from."""
    return float(read_bytes(f"{proc_root}/uptime", 4096).split()[0])


def read_meminfo(proc_root: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes."""
    values: dict[bytes, int] = {}
    for line in read_bytes(f"{proc_root}/meminfo", 1 << 16).splitlines():
        key, _, rest = line.partition(b":")
        if key in (b"MemTotal", b"MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
    if len(values) != 2:
        raise ValueError("meminfo lacks MemTotal or MemAvailable")
    return values[b"MemTotal"], values[b"MemAvailable"]


def skip_reason(exc: BaseException) -> str:
    """The skip counter's label for a failed read of one process."""
    if isinstance(exc, FileNotFoundError | ProcessLookupError):
        return "vanished"
    if isinstance(exc, OSError) and exc.errno == errno.ESRCH:
        return "vanished"
    if isinstance(exc, PermissionError):
        return "access_denied"
    return "read_error"

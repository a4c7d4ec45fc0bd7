"""Pure readers of a container's cgroup (v1 or v2) and of ``/proc/<pid>/net/dev``.

This is how cAdvisor reads container stats, and why: the engine's stats endpoint takes about a
second per container, the same numbers read from these files take well under a millisecond. A
container's cgroup is found from ``/proc/<pid>/cgroup`` of its init process, which names the path
under each hierarchy whatever the cgroup driver (cgroupfs ``/docker/<id>`` or systemd
``/system.slice/docker-<id>.scope``). Every function here only reads files and returns numbers;
any missing or malformed file raises ``CgroupUnavailable`` so the caller can fall back to the API.

Cost: a container's read is about ten small files, each one ``open``/``read``/``close`` into a
small buffer (``procscan.read_bytes``), parsed as bytes. Where the files are and which optional
ones exist is worked out once per container (``CgroupTree.locate``), not once per read, so a
cycle costs little more than the kernel's own work of producing the files' contents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from agentwatch.collectors.procscan import KeptFiles, read_bytes

#: A v1 limit at or above this is the kernel's "no limit" (PAGE_COUNTER_MAX rounded to pages).
V1_UNLIMITED = 1 << 62
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "blkio", "pids")
#: Where v1 kernels keep block IO bytes, in the order runc reads them (CFQ, BFQ, throttling).
_V1_BLKIO_FILES = (
    "blkio.io_service_bytes_recursive",
    "blkio.bfq.io_service_bytes_recursive",
    "blkio.throttle.io_service_bytes_recursive",
)


class CgroupUnavailable(Exception):
    """The container's cgroup or /proc entry cannot be read (gone, not visible, not parseable)."""


@dataclass(slots=True)
class NetStats:
    """Counters summed over every interface but ``lo``."""

    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_errors: int = 0


@dataclass(slots=True)
class ContainerStats:
    """The numbers both stats paths (cgroup files, one-shot API) produce for one container."""

    memory_usage: int
    memory_working_set: int
    #: None when this path cannot tell (the API reports host memory for an unlimited container).
    memory_limit: int | None
    memory_rss: int
    memory_cache: int
    cpu_seconds: float
    cpu_periods: int
    cpu_throttled_periods: int
    cpu_throttled_seconds: float
    blkio_read_bytes: int
    blkio_write_bytes: int
    pids: int
    net: NetStats | None = None
    #: Kills by the kernel OOM killer in this cgroup, children included (None: this path cannot tell).
    memory_oom_kills: int | None = None


def _read(path: str, limit: int = 1 << 20, files: KeptFiles | None = None) -> bytes:
    """The file's bytes, through ``files`` (kept open between cycles) when given."""
    try:
        return files.read(path, limit) if files is not None else read_bytes(path, limit)
    except OSError as exc:
        raise CgroupUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None


def _int(text: bytes | str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise CgroupUnavailable(f"{what}: expected an integer, got {text.strip()[:40]!r}") from None


def _keyed(data: bytes) -> dict[bytes, bytes]:
    """``key value`` lines as raw pairs: one split in C when every line has that shape."""
    tokens = data.split()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if len(tokens) == 2 * lines:
        return dict(zip(tokens[0::2], tokens[1::2], strict=True))
    out = {}
    for line in data.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def _num(pairs: dict[bytes, bytes], key: bytes, default: int = 0) -> int:
    """One value of ``_keyed``'s pairs; a value that is not an integer counts as missing."""
    value = pairs.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat); lines that are not that shape are ignored."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_v1_blkio(text: str | bytes) -> tuple[int, int]:
    """(read, write) bytes summed over devices from ``8:0 Read 4096`` lines (``Total`` skipped)."""
    return _v1_blkio(text.encode() if isinstance(text, str) else text) or (0, 0)


def _v1_blkio(data: bytes) -> tuple[int, int] | None:
    """(read, write) as ``parse_v1_blkio``; None when the file has no Read or Write line at all."""
    read = write = 0
    seen = False
    for line in data.splitlines():
        parts = line.split()
        op = parts[1] if len(parts) > 1 else b""
        if op == b"Read" or op == b"Write":
            seen = True
            if len(parts) == 3 and parts[2].isdigit():
                if op == b"Read":
                    read += int(parts[2])
                else:
                    write += int(parts[2])
    return (read, write) if seen else None


def parse_v2_io_stat(text: str | bytes) -> tuple[int, int]:
    """(read, write) bytes summed over devices from io.stat's ``rbytes=``/``wbytes=`` fields."""
    data = text.encode() if isinstance(text, str) else text
    read = write = 0
    for line in data.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition(b"=")
            if key == b"rbytes" and value.isdigit():
                read += int(value)
            elif key == b"wbytes" and value.isdigit():
                write += int(value)
    return read, write


def parse_v2_max(text: str | bytes) -> int:
    """memory.max: ``max`` means unlimited (0 here)."""
    value = text.strip()
    return 0 if value in ("max", b"max") else _int(value, "memory.max")


def parse_net_dev(text: str | bytes) -> NetStats:
    """/proc/<pid>/net/dev summed over every interface but lo."""
    data = text.encode() if isinstance(text, str) else text
    out = NetStats()
    for line in data.splitlines()[2:]:
        name, sep, rest = line.partition(b":")
        fields = rest.split()
        if not sep or name.strip() == b"lo" or len(fields) < 11:
            continue
        try:
            out.rx_bytes += int(fields[0])
            out.rx_errors += int(fields[2])
            out.tx_bytes += int(fields[8])
            out.tx_errors += int(fields[10])
        except ValueError:
            raise CgroupUnavailable(f"net/dev: unexpected line {line.strip()[:60].decode(errors='replace')!r}") \
                from None
    return out


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> path, v2 unified path) from /proc/<pid>/cgroup."""
    v1: dict[str, str] = {}
    unified = None
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep and sep2):
            continue
        if hid == "0" and controllers == "":
            unified = path
        for name in controllers.split(","):
            if name:
                v1[name] = path
    return v1, unified


@dataclass(frozen=True, slots=True)
class ContainerCgroup:
    """Absolute directories of one container's cgroup, per controller (v1) or one (v2)."""

    version: int
    dirs: dict[str, str]
    #: v1: the block IO files this cgroup has, in the order they are tried (None: try them all).
    #: Which ones exist depends on the kernel's IO schedulers, so ``locate`` looks once.
    blkio: tuple[str, ...] | None = None

    def files(self) -> list[str]:
        """The files one ``CgroupTree.read`` of this cgroup opens, the optional ones included.

        The benchmark reads exactly these, bare, as the floor the collector is compared with.
        """
        if self.version == 2:
            d = self.dirs[""]
            return [f"{d}/{name}" for name in _V2_FILES]
        mem = self.dirs["memory"]
        out = [f"{mem}/memory.usage_in_bytes", f"{mem}/memory.limit_in_bytes", f"{mem}/memory.stat"]
        if "cpuacct" in self.dirs:
            out.append(f"{self.dirs['cpuacct']}/cpuacct.usage")
        if "cpu" in self.dirs:
            out.append(f"{self.dirs['cpu']}/cpu.stat")
        out += _blkio_files(self.dirs, self.blkio)
        if "pids" in self.dirs:
            out.append(f"{self.dirs['pids']}/pids.current")
        out.append(f"{mem}/memory.oom_control")
        return out


#: What a v2 read opens, in order; io.stat, pids.current and memory.events may be missing.
_V2_FILES = ("memory.current", "memory.max", "memory.stat", "cpu.stat", "io.stat", "pids.current", "memory.events")


def _blkio_files(dirs: dict[str, str], present: tuple[str, ...] | None) -> list[str]:
    if "blkio" not in dirs:
        return []
    return [f"{dirs['blkio']}/{name}" for name in (_V1_BLKIO_FILES if present is None else present)]


def _working_set(usage: int, inactive_file: int) -> int:
    return max(0, usage - inactive_file)


class CgroupTree:
    """A cgroup mount (``/sys/fs/cgroup`` or a host's, mounted elsewhere) and how to read it."""

    def __init__(self, root: str = "/sys/fs/cgroup") -> None:
        self.root = root.rstrip("/") or "/"
        self._version: int | None = None
        self._v1_mounts: dict[str, str] = {}
        #: The containers' files, kept open from one cycle to the next (``sweep`` once a cycle).
        self.files = KeptFiles()

    @property
    def version(self) -> int:
        """2 for a unified hierarchy, 1 for v1 (hybrid counts as v1); CgroupUnavailable if neither."""
        if self._version is None:
            if os.path.exists(f"{self.root}/cgroup.controllers"):
                self._version = 2
            else:
                mounts = self._scan_v1()
                if "memory" not in mounts:
                    raise CgroupUnavailable(f"no cgroup v1 or v2 hierarchy under {self.root}")
                self._v1_mounts = mounts
                self._version = 1
        return self._version

    def _scan_v1(self) -> dict[str, str]:
        """Controller -> hierarchy directory; handles combined mounts such as ``cpu,cpuacct``."""
        out: dict[str, str] = {}
        try:
            entries = sorted(os.listdir(self.root))
        except OSError:
            return out
        for entry in entries:
            path = f"{self.root}/{entry}"
            if os.path.islink(path) or not os.path.isdir(path):
                continue
            for name in entry.split(","):
                out.setdefault(name, path)
        return out

    def readable(self) -> bool:
        try:
            self.version  # noqa: B018 - detection has the side effect we want
        except CgroupUnavailable:
            return False
        return True

    def locate(self, proc_root: str, pid: int, container_id: str) -> ContainerCgroup:
        """The container's cgroup directories from its init process's /proc entry.

        The path must name the container id: a pid that was reused, or a pid from another host's
        engine, must never be read as this container.
        """
        v1, unified = parse_proc_cgroup(_read(f"{proc_root}/{pid}/cgroup", 1 << 16).decode("ascii", "replace"))
        if self.version == 2:
            if unified is None:
                raise CgroupUnavailable(f"pid {pid} has no unified cgroup line")
            paths = {"": unified}
        else:
            paths = {c: v1[c] for c in _V1_CONTROLLERS if c in v1}
            if "memory" not in paths:
                raise CgroupUnavailable(f"pid {pid} has no memory cgroup")
        for path in paths.values():
            if container_id not in path or path.startswith("/.."):
                raise CgroupUnavailable(f"pid {pid}'s cgroup {path!r} is not container {container_id[:12]}'s")
        if self.version == 2:
            return ContainerCgroup(2, {"": f"{self.root}{paths['']}"})
        dirs = {c: f"{self._v1_mounts[c]}{p}" for c, p in paths.items() if c in self._v1_mounts}
        blkio = tuple(name for name in _V1_BLKIO_FILES if "blkio" in dirs
                      and os.path.exists(f"{dirs['blkio']}/{name}"))
        return ContainerCgroup(1, dirs, blkio)

    def read(self, cg: ContainerCgroup) -> ContainerStats:
        """Memory, CPU, throttling, block IO and pids of one container."""
        return read_v2(cg.dirs[""], self.files) if cg.version == 2 else read_v1(cg.dirs, cg.blkio, self.files)


def read_v1(dirs: dict[str, str], blkio: tuple[str, ...] | None = None,
            files: KeptFiles | None = None) -> ContainerStats:
    """cgroup v1: one directory per controller (cpu and cpuacct may be the same one).

    ``blkio`` names the block IO files known to exist (``ContainerCgroup.blkio``); the first one
    with Read or Write lines counts, as runc reads them.
    """
    mem = dirs["memory"]
    usage = _int(_read(f"{mem}/memory.usage_in_bytes", files=files), "memory.usage_in_bytes")
    limit = _int(_read(f"{mem}/memory.limit_in_bytes", files=files), "memory.limit_in_bytes")
    stat = _keyed(_read(f"{mem}/memory.stat", files=files))
    cpu_seconds = 0.0
    if "cpuacct" in dirs:
        cpu_seconds = _int(_read(f"{dirs['cpuacct']}/cpuacct.usage", files=files), "cpuacct.usage") / 1e9
    cpu_stat = _keyed(_read(f"{dirs['cpu']}/cpu.stat", files=files)) if "cpu" in dirs else {}
    read = write = 0
    for path in _blkio_files(dirs, blkio):
        try:
            found = _v1_blkio(_read(path, files=files))
        except CgroupUnavailable:
            continue
        if found is not None:
            read, write = found
            break
    pids = _int(_read(f"{dirs['pids']}/pids.current", files=files), "pids.current") if "pids" in dirs else 0
    oom_kills = _optional_key(f"{mem}/memory.oom_control", b"oom_kill", files)  # kernel 4.13+
    inactive = _num(stat, b"total_inactive_file", _num(stat, b"inactive_file"))
    return ContainerStats(
        memory_usage=usage,
        memory_working_set=_working_set(usage, inactive),
        memory_limit=0 if limit >= V1_UNLIMITED else limit,
        memory_rss=_num(stat, b"total_rss", _num(stat, b"rss")),
        memory_cache=_num(stat, b"total_cache", _num(stat, b"cache")),
        cpu_seconds=cpu_seconds,
        cpu_periods=_num(cpu_stat, b"nr_periods"),
        cpu_throttled_periods=_num(cpu_stat, b"nr_throttled"),
        cpu_throttled_seconds=_num(cpu_stat, b"throttled_time") / 1e9,
        blkio_read_bytes=read,
        blkio_write_bytes=write,
        pids=pids,
        memory_oom_kills=oom_kills,
    )


def _optional_key(path: str, key: bytes, files: KeptFiles | None = None) -> int | None:
    """One counter of a flat-keyed file, or None when the file or the key is missing."""
    try:
        value = _keyed(_read(path, files=files)).get(key)
    except CgroupUnavailable:
        return None
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def read_v2(path: str, files: KeptFiles | None = None) -> ContainerStats:
    """cgroup v2: everything in one directory."""
    usage = _int(_read(f"{path}/memory.current", files=files), "memory.current")
    limit = parse_v2_max(_read(f"{path}/memory.max", files=files))
    stat = _keyed(_read(f"{path}/memory.stat", files=files))
    cpu_stat = _keyed(_read(f"{path}/cpu.stat", files=files))
    try:
        read, write = parse_v2_io_stat(_read(f"{path}/io.stat", files=files))
    except CgroupUnavailable:  # io controller not enabled for this subtree
        read = write = 0
    try:
        pids = _int(_read(f"{path}/pids.current", files=files), "pids.current")
    except CgroupUnavailable:
        pids = 0
    return ContainerStats(
        memory_usage=usage,
        memory_working_set=_working_set(usage, _num(stat, b"inactive_file")),
        memory_limit=limit,
        memory_rss=_num(stat, b"anon"),
        memory_cache=_num(stat, b"file"),
        cpu_seconds=_num(cpu_stat, b"usage_usec") / 1e6,
        cpu_periods=_num(cpu_stat, b"nr_periods"),
        cpu_throttled_periods=_num(cpu_stat, b"nr_throttled"),
        cpu_throttled_seconds=_num(cpu_stat, b"throttled_usec") / 1e6,
        blkio_read_bytes=read,
        blkio_write_bytes=write,
        pids=pids,
        memory_oom_kills=_optional_key(f"{path}/memory.events", b"oom_kill", files),
    )


def read_net(proc_root: str, pid: int, files: KeptFiles | None = None) -> NetStats:
    """Network counters of the container's network namespace, seen through its init process."""
    return parse_net_dev(_read(f"{proc_root}/{pid}/net/dev", 1 << 18, files))

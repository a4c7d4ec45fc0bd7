"""The floor under the containers collector: reading its cgroup and /proc files bare, nothing else.

For every running container: its init process's pid from the engine, its cgroup located the way the
collector locates it, then exactly the files one collection reads for it
(``ContainerCgroup.files()`` and ``/proc/<pid>/net/dev``). A round opens, reads (into a small
buffer) and closes each of them in a tight loop: no parsing, no metric families, no engine call.
The collector's own time is then compared with this, measured on the same containers in the same
run; what it spends beyond it is its overhead.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import docker

from agentwatch.collectors.cgroupfs import CgroupTree, CgroupUnavailable


@dataclass
class BareReadFigures:
    containers: int
    files: int
    rounds: int
    wall_median_s: float
    cpu_median_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def container_files(client: docker.DockerClient, cgroup_root: str = "/sys/fs/cgroup",
                    proc_root: str = "/proc") -> list[list[str]]:
    """Per running container, the files a collection reads for it."""
    tree = CgroupTree(cgroup_root)
    out = []
    for c in client.api.containers(filters={"status": "running"}):
        pid = client.api.inspect_container(c["Id"])["State"]["Pid"]
        try:
            cgroup = tree.locate(proc_root, pid, c["Id"])
        except CgroupUnavailable:
            continue  # exited meanwhile
        out.append([*cgroup.files(), f"{proc_root}/{pid}/net/dev"])
    return out


def _round(paths: list[str]) -> None:
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # an optional file this kernel does not have: the collector skips it too
        try:
            os.read(fd, 65536)
        finally:
            os.close(fd)


def measure(host: str, rounds: int = 30) -> BareReadFigures:
    """``rounds`` rounds over every running container's files; medians per round."""
    client = docker.DockerClient(base_url=host, timeout=120)
    try:
        per_container = container_files(client)
    finally:
        client.close()
    paths = [p for files in per_container for p in files]
    _round(paths)  # warm the dentry cache, as the collector's earlier cycles have
    walls, cpus = [], []
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.thread_time()
        _round(paths)
        cpus.append(time.thread_time() - c0)
        walls.append(time.perf_counter() - w0)
    return BareReadFigures(containers=len(per_container), files=len(paths), rounds=rounds,
                           wall_median_s=statistics.median(walls), cpu_median_s=statistics.median(cpus))

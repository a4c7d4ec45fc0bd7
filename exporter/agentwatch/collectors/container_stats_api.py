"""The fallback stats path: one one-shot ``/containers/{id}/stats`` call per container.

Used when the cgroup files are not visible (a remote engine, an exporter without the host's
/sys/fs/cgroup and /proc), or when ``stats_source: api`` forces it. ``one_shot=True`` skips the
engine's second sample (``EngineClient.stats``) (without it every call waits about a second for ``precpu_stats``); the
collector runs these calls concurrently in its bounded pool. ``from_payload`` turns the engine's
JSON into the same ``ContainerStats`` the cgroup path produces, computing the working set the
way cAdvisor and the docker CLI do.
"""

from __future__ import annotations

from typing import Any

from agentwatch.collectors.cgroupfs import ContainerStats, NetStats


def _num(obj: Any, key: str, default: int | float = 0) -> int | float:
    value = obj.get(key, default) if isinstance(obj, dict) else default
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"stats field {key!r}: expected a number, got {type(value).__name__}")
    return value


def _dict(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"stats field {key!r}: expected an object, got {type(value).__name__}")
    return value


def from_payload(payload: Any) -> ContainerStats:
    """Convert a stats response; raise ValueError on a shape the engine would not send."""
    if not isinstance(payload, dict):
        raise ValueError(f"stats response: expected an object, got {type(payload).__name__}")
    mem = _dict(payload, "memory_stats")
    mstat = _dict(mem, "stats")
    usage = int(_num(mem, "usage"))
    v1 = "total_inactive_file" in mstat
    inactive = int(_num(mstat, "total_inactive_file" if v1 else "inactive_file"))
    cpu = _dict(payload, "cpu_stats")
    throttling = _dict(cpu, "throttling_data")
    read = write = 0
    blk = _dict(payload, "blkio_stats").get("io_service_bytes_recursive") or []
    if not isinstance(blk, list):
        raise ValueError("stats field 'io_service_bytes_recursive': expected a list")
    for entry in blk:
        op = str(entry.get("op", "")).lower() if isinstance(entry, dict) else ""
        if op == "read":
            read += int(_num(entry, "value"))
        elif op == "write":
            write += int(_num(entry, "value"))
    net = NetStats()  # no "networks" key: only lo (network none), so zeros are the truth
    for name, counters in _dict(payload, "networks").items():
        if name == "lo":
            continue
        net.rx_bytes += int(_num(counters, "rx_bytes"))
        net.tx_bytes += int(_num(counters, "tx_bytes"))
        net.rx_errors += int(_num(counters, "rx_errors"))
        net.tx_errors += int(_num(counters, "tx_errors"))
    return ContainerStats(
        memory_usage=usage,
        memory_working_set=max(0, usage - inactive),
        memory_limit=None,  # the API reports host memory for an unlimited container; inspect knows
        memory_rss=int(_num(mstat, "total_rss" if v1 else "anon")),
        memory_cache=int(_num(mstat, "total_cache" if v1 else "file")),
        cpu_seconds=_num(_dict(cpu, "cpu_usage"), "total_usage") / 1e9,
        cpu_periods=int(_num(throttling, "periods")),
        cpu_throttled_periods=int(_num(throttling, "throttled_periods")),
        cpu_throttled_seconds=_num(throttling, "throttled_time") / 1e9,
        blkio_read_bytes=read,
        blkio_write_bytes=write,
        pids=int(_num(_dict(payload, "pids_stats"), "current")),
        net=net,
    )

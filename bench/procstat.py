"""CPU time and peak memory of processes, read straight from /proc (no sampling, no psutil)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds; 0 if it is gone (the caller measures deltas)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds_of(pids: Iterable[int]) -> float:
    """Summed CPU time of several processes (vanished ones count as 0)."""
    return sum(cpu_seconds(p) for p in pids)


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the highest resident set size the process has had since it started."""
    return _status_kib(pid, "VmHWM") * 1024


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (the engine's private directory).

    dockerd, its containerd and every containerd shim name the private engine's directory in
    their arguments, so this finds the engine's whole process set without touching any other.
    """
    needle = text.encode()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                if needle in fh.read():
                    out.append(int(entry.name))
        except OSError:
            continue
    return out


class EngineMeter:
    """CPU of the private engine's processes, net of what it burns when nobody asks it anything.

    dockerd, containerd and the shims keep doing housekeeping for running containers; that idle
    rate is measured first (``calibrate``) and subtracted, so neither agentwatch nor a peer is
    charged for it.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.idle_cpu_per_s = 0.0
        self._pids: list[int] = []

    def refresh(self) -> None:
        """Find the engine's processes again (a shim per container comes and goes with it)."""
        self._pids = pids_mentioning(self.base)

    def cpu(self) -> float:
        return cpu_seconds_of(self._pids)

    def calibrate(self, seconds: float) -> float:
        """Measure the idle rate over ``seconds`` of quiet; returns CPU seconds per second."""
        self.refresh()
        c0, t0 = self.cpu(), time.monotonic()
        time.sleep(seconds)
        self.idle_cpu_per_s = max(0.0, self.cpu() - c0) / (time.monotonic() - t0)
        return self.idle_cpu_per_s

    def excess(self, cpu_before: float, cpu_after: float, seconds: float) -> float:
        """CPU the engine spent beyond its idle rate over ``seconds``."""
        return max(0.0, (cpu_after - cpu_before) - self.idle_cpu_per_s * seconds)

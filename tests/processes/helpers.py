"""Shared helpers: render a collector's families like /metrics does, and write fake /proc trees."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from agentwatch.collectors.processes import ProcessCollector
from agentwatch.config import ProcessesConfig
from agentwatch.local.scrape import Scrape

MiB = 2**20
PAGE = 4096
TICKS = 100


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(families: list[Metric]) -> Scrape:
    """The families as the exporter would serve them, parsed back (catches rendering errors too)."""
    return Scrape.parse(generate_latest(_Families(families)).decode())


async def scrape(collector: ProcessCollector) -> Scrape:
    return render(await collector.collect())


def collector(**config: object) -> ProcessCollector:
    return ProcessCollector(ProcessesConfig.model_validate(config))


def agents_matcher(run_id: str, name: str = "agents") -> dict[str, str]:
    """The group of this test's agent_worker.py children (not a shell wrapping one), labelled by model."""
    return {"name": name, "cmdline": rf"^\S*python[\d.]*\s\S*agent_worker\.py --run {run_id} --model (?P<model>\w+)"}


class FakeProc:
    """A hand-written /proc tree for faults a live kernel will not produce on demand."""

    def __init__(self, root: Path, uptime: float = 10_000.0) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "uptime").write_text(f"{uptime:.2f} 1.00\n")
        (root / "meminfo").write_text("MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:    4000000 kB\n")

    def add(self, pid: int, comm: str, cmdline: list[str], *, ppid: int = 1, state: str = "S", flags: int = 0,
            utime: int = 0, stime: int = 0, threads: int = 1, start: int = 100, rss_bytes: int = 0,
            fds: int = 3, cgroup: str = "0::/\n", private_kb: int | None = None) -> Path:
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True, exist_ok=True)
        for i in range(fds):
            (d / "fd" / str(i)).write_text("")
        fields = [state, ppid, pid, pid, 0, -1, flags, 0, 0, 0, 0, utime, stime, 0, 0, 20, 0, threads, 0, start,
                  0, rss_bytes // PAGE] + [0] * 28
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(str(f) for f in fields) + "\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in cmdline))
        (d / "cgroup").write_text(cgroup)
        if private_kb is not None:
            (d / "smaps_rollup").write_text(f"Rss: {private_kb + 4} kB\nPrivate_Clean: 4 kB\n"
                                            f"Private_Dirty: {private_kb - 4} kB\nShared_Clean: 4 kB\n")
        return d

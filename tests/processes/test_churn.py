"""Processes that vanish mid-scan or deny access are skipped and counted, never a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.local.scrape import Scrape
from tests.processes.helpers import FakeProc, MiB, agents_matcher, collector, scrape

AS_NOBODY = Path(__file__).with_name("as_nobody.py")


def churn(marker: str, stop: threading.Event, started: list[int]) -> None:
    """Start and kill short-lived matching processes, at most 30 alive, until told to stop."""
    alive: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            alive.append(subprocess.Popen(["sleep", marker]))
            started[0] += 1
            if len(alive) >= 30:
                for p in alive[:20]:
                    p.kill()
                for p in alive[:20]:
                    p.wait(timeout=10)
                del alive[:20]
    finally:
        for p in alive:
            p.kill()
        for p in alive:
            p.wait(timeout=10)


async def test_processes_vanishing_mid_scan_are_skipped_and_counted(run_id):
    marker = f"3000.{int(run_id[1:9], 16) % 10**8:08d}"
    c = collector(groups=[{"name": "churn", "process_name": "sleep", "cmdline": rf"^sleep {marker}$"}], uss=True)
    stop, started = threading.Event(), [0]
    worker = threading.Thread(target=churn, args=(marker, stop, started), daemon=True)
    worker.start()
    counts, vanished, cycles = [], 0.0, 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and cycles < 2000:
            s = await scrape(c)  # raises if the collector crashed
            cycles += 1
            counts.append(s.value("agentwatch_process_group_processes", group="churn"))
            vanished = s.value("agentwatch_process_scan_skipped_total", reason="vanished")
            if vanished >= 3 and cycles >= 20:
                break
    finally:
        stop.set()
        worker.join(timeout=30)
    print(f"\nchurn: {started[0]} processes started, {cycles} scans, {vanished:.0f} vanished mid-scan")
    assert not worker.is_alive()
    assert vanished >= 1, f"no process vanished in {cycles} scans while {started[0]} came and went"
    assert max(counts) > 0, "the churning processes were matched"
    assert all(0 <= n <= 30 for n in counts), counts
    final = await scrape(c)
    assert final.value("agentwatch_process_group_processes", group="churn") == 0
    assert final.value("agentwatch_process_scan_skipped_total", reason="vanished") >= vanished, "a counter"


def run_as_nobody(config: dict) -> Scrape:
    out = subprocess.run([sys.executable, str(AS_NOBODY), json.dumps(config)], capture_output=True, text=True,
                         timeout=60, cwd="/", env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert out.returncode == 0, out.stderr
    return Scrape.parse(out.stdout)


def test_denied_fd_and_uss_reads_are_counted_and_the_process_still_measured(fleet, run_id):
    for _ in range(2):
        fleet.spawn("sonnet", mb=10)
    s = run_as_nobody({"groups": [agents_matcher(run_id)], "uss": True})
    labels = {"group": "agents", "model": "sonnet"}
    assert s.value("agentwatch_process_group_processes", **labels) == 2
    assert s.value("agentwatch_process_group_memory_rss_bytes", **labels) >= 20 * MiB
    assert s.value("agentwatch_process_group_threads", **labels) >= 2
    # Another user's fd/ and smaps_rollup need ptrace rights: those sums are absent, not zero.
    assert s.value("agentwatch_process_group_open_fds", **labels) is None
    assert s.value("agentwatch_process_group_memory_uss_bytes", **labels) is None
    assert s.value("agentwatch_process_scan_skipped_total", reason="fds_denied") >= 2
    assert s.value("agentwatch_process_scan_skipped_total", reason="uss_denied") >= 2
    assert s.value("agentwatch_process_scan_skipped_total", reason="access_denied") == 0


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temp dir the unprivileged child can read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="aw-proc-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_unreadable_garbage_and_half_gone_processes_in_a_proc_tree(public_tmp):
    proc = FakeProc(public_tmp / "proc")
    agent = ["python3", "/srv/agent.py", "--model", "opus"]
    proc.add(100, "python3", agent, rss_bytes=300 * MiB, threads=4)
    (proc.add(101, "python3", agent) / "stat").chmod(0o000)                # access denied
    (proc.add(102, "python3", agent) / "stat").write_text("102 (python3 S 1 2 3\n")  # no closing paren
    (proc.add(103, "python3", agent) / "stat").unlink()                    # exited between listdir and read
    (proc.add(104, "python3", agent) / "cmdline").chmod(0o000)             # stat fine, cmdline denied
    config = {"groups": [{"name": "agents", "cmdline": r"agent\.py --model (?P<model>\w+)"}],
              "proc_root": str(proc.root)}
    s = run_as_nobody(config)
    assert s.value("agentwatch_process_group_processes", group="agents", model="opus") == 1
    assert s.value("agentwatch_process_group_memory_rss_bytes", group="agents", model="opus") == 300 * MiB
    assert s.value("agentwatch_process_group_threads", group="agents", model="opus") == 4
    assert s.value("agentwatch_process_scan_skipped_total", reason="access_denied") == 2
    assert s.value("agentwatch_process_scan_skipped_total", reason="read_error") == 1
    assert s.value("agentwatch_process_scan_skipped_total", reason="vanished") == 1
    assert s.value("agentwatch_host_memory_total_bytes") == 16_000_000 * 1024


async def test_a_missing_proc_root_fails_the_collection_with_a_clear_message(tmp_path):
    c = collector(proc_root=str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match=r"cannot list processes in .*nowhere"):
        await c.collect()
    FakeProc(tmp_path / "nowhere")  # the tree appears: the next collection works
    assert (await scrape(c)).value("agentwatch_host_memory_total_bytes") == 16_000_000 * 1024

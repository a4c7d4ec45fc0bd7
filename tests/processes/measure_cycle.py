"""Measure one process-collector cycle with 200 and 1,000 agent-like processes (prints, asserts nothing).

Run: ``python -m tests.processes.measure_cycle [200 1000]``. A few "fleet" parents (one per model)
fork the agents, so they cost little memory but each is a separate process with an agent cmdline
(``python3 .../agent_fleet.py --model sonnet``) that the default ``python-agent`` group matches.
Reported per size: the cold first cycle (every cmdline read) and the median of warm cycles (the
steady state), wall and CPU time, with ``uss`` off (the default) and on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentwatch.collectors.processes import ProcessCollector
from agentwatch.config import ProcessesConfig

FLEET = r'''
import ctypes, os, signal, sys, time
count = int(sys.argv[sys.argv.index("--count") + 1])
libc = ctypes.CDLL(None)
for _ in range(count):
    if os.fork() == 0:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the fleet parent
        buf = bytearray(1 << 20); buf[::4096] = b"\1" * 256
        while True:
            time.sleep(3600)
print("ready", flush=True)
signal.sigwait({signal.SIGTERM})
'''
MODELS = ("sonnet", "opus", "haiku", "gpt")


def start_fleet(total: int, where: Path) -> list[subprocess.Popen[bytes]]:
    script = where / "agent_fleet.py"
    script.write_text(FLEET)
    procs = []
    for i, model in enumerate(MODELS):
        n = total // len(MODELS) + (1 if i < total % len(MODELS) else 0)
        procs.append(subprocess.Popen([sys.executable, str(script), "--model", model, "--count", str(n)],
                                      stdout=subprocess.PIPE, start_new_session=True))
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
    return procs


def stop_fleet(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait(timeout=30)


async def one_cycle(c: ProcessCollector) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await c.collect()
    return time.perf_counter() - wall, time.process_time() - cpu


async def measure(total: int, uss: bool) -> str:
    c = ProcessCollector(ProcessesConfig(uss=uss))
    cold = await one_cycle(c)
    warm = [await one_cycle(c) for _ in range(7)]
    families = await c.collect()
    matched = sum(s.value for f in families if f.name == "agentwatch_process_group_processes" for s in f.samples)
    await c.stop()
    w = statistics.median(x[0] for x in warm) * 1000
    u = statistics.median(x[1] for x in warm) * 1000
    return (f"{total:5d} agents ({int(matched)} matched, {c.last_scanned} processes scanned), uss={uss!s:5}: "
            f"cold {cold[0] * 1000:6.1f} ms wall / {cold[1] * 1000:6.1f} ms CPU; "
            f"warm median {w:6.1f} ms wall / {u:6.1f} ms CPU")


async def main(sizes: list[int]) -> None:
    print(f"host: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for total in sizes:
        with tempfile.TemporaryDirectory(prefix="aw-fleet-") as tmp:
            procs = start_fleet(total, Path(tmp))
            try:
                await asyncio.sleep(11)  # past the settle window, so warm cycles use the match cache
                for uss in (False, True):
                    print(await measure(total, uss), flush=True)
            finally:
                stop_fleet(procs)


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [200, 1000]))

"""Fixtures for the process collector tests: real agent-like children, always reaped."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("agent_worker.py")


class Fleet:
    """Starts agent_worker.py children tagged with this test's run id; ``close`` kills and reaps them."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.procs: list[subprocess.Popen[bytes]] = []

    def argv(self, model: str, mb: int, threads: int = 0, fds: int = 0, busy: bool = False) -> list[str]:
        out = [sys.executable, str(WORKER), "--run", self.run_id, "--model", model, "--mb", str(mb),
               "--threads", str(threads), "--fds", str(fds)]
        return [*out, "--busy"] if busy else out

    def spawn(self, model: str, mb: int = 10, threads: int = 0, fds: int = 0, busy: bool = False,
              via_shell: bool = False, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """Start one worker (under ``sh`` when ``via_shell``) and wait until it holds its memory."""
        argv = self.argv(model, mb, threads, fds, busy)
        if via_shell:
            argv = ["sh", "-c", " ".join(argv) + " & wait"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        assert line.strip() == b"ready", f"worker {argv} did not start (got {line!r})"
        return proc

    def close(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()
        self.procs.clear()


@pytest.fixture
def run_id() -> str:
    """A token only this test's processes carry, so other work on the machine never matches."""
    return "r" + uuid.uuid4().hex[:12]


@pytest.fixture
def fleet(run_id: str) -> Iterator[Fleet]:
    f = Fleet(run_id)
    try:
        yield f
    finally:
        f.close()


def wait_until(pred, timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Poll ``pred`` until true or the deadline; bounded in time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        if pred():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    return bool(pred())

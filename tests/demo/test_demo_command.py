"""``agentwatch demo`` as a user runs it: a subprocess that prints each step, stopped by a signal, leaving nothing.

The demo runs as a child in its own session without a terminal, from another working directory,
so how pytest itself was launched (a background job ignoring SIGINT, no terminal) cannot change
the outcome. While it runs, every process it owns is recorded: its descendants, and whatever names
its work directory on the command line (dockerd's containerd and shims, the containers' processes
below them, Prometheus, Alertmanager). After the stop signal none of them may be alive, no process
may name the directory, and the directory (with the engine's data root, so every container) is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

STAMP = re.compile(r"^\+\s*(\d+\.\d)s\s+(\S+)\s+(.*)$")
WORKDIR = re.compile(r"files and logs: (/\S+) \(")


class Demo:
    """``agentwatch demo ARGS`` with its output collected line by line on a thread."""

    def __init__(self, cwd: Path, *args: str, ignore_sigint: bool = False) -> None:
        argv = [sys.executable, "-m", "agentwatch.cli", "demo", *args]
        if ignore_sigint:  # what a background job inherits; the shell execs the demo, so the pid is the demo's
            argv = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv]
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern``; bounded, and fails early if the demo exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := regex.search(line):
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                pytest.fail(f"the demo exited ({self.proc.returncode}) before {pattern!r}:\n{self.output()}")
            time.sleep(0.5)
        pytest.fail(f"no {pattern!r} within {timeout}s:\n{self.output()}")

    def stamp(self, pattern: str) -> float:
        """The time stamp of the first line matching ``pattern``."""
        line = self.wait_for(pattern, 0.1).string
        match = STAMP.match(line)
        assert match, line
        return float(match.group(1))

    def stop(self, sig: signal.Signals, timeout: float = 120.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill_if_running(self) -> None:
        """The test failed half-way: stop it the way a user would, and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def owned_processes(demo_pid: int, workdir: str) -> dict[int, tuple[float, str]]:
    """pid -> (start time, command) of the demo, its descendants, and every process naming ``workdir`` with its own."""
    roots: list[psutil.Process] = [psutil.Process(demo_pid)]
    for proc in psutil.process_iter(["cmdline"]):
        if workdir in " ".join(proc.info["cmdline"] or []):
            roots.append(proc)
    owned: dict[int, tuple[float, str]] = {}
    for root in roots:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in family:
            try:
                owned[proc.pid] = (proc.create_time(), " ".join(proc.cmdline())[:200])
            except psutil.NoSuchProcess:
                pass
    return owned


def assert_nothing_left(owned: dict[int, tuple[float, str]], workdir: str) -> None:
    left = []
    for pid, (created, command) in owned.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {command}")
        except psutil.NoSuchProcess:
            pass
    assert not left, "still running after the demo exited:\n" + "\n".join(left)
    naming = [f"{p.pid} {' '.join(p.info['cmdline'] or [])[:200]}" for p in psutil.process_iter(["cmdline"])
              if workdir in " ".join(p.info["cmdline"] or [])]
    assert not naming, "processes still name the demo's directory:\n" + "\n".join(naming)
    assert not Path(workdir).exists(), f"{workdir} (configs, logs, the engine's data root) was left behind"


def _commands(owned: dict[int, tuple[float, str]]) -> str:
    return "\n".join(command for _, command in owned.values())


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dockerd"), reason="a private engine needs root and dockerd")
def test_demo_walks_through_the_incident_and_sigterm_leaves_nothing(tmp_path: Path) -> None:
    demo = Demo(tmp_path, "--duration", "900")
    try:
        workdir = demo.wait_for(WORKDIR.pattern, 120).group(1)
        demo.wait_for(r"Incident 1: demo-agent-1", 30)
        demo.wait_for(r"prometheus\s+AgentContainerMemoryNearLimit firing \(container=demo-agent-1", 240)
        demo.wait_for(r"slack\s+#agentwatch-alerts\s+\[FIRING:1\] AgentContainerMemoryNearLimit", 90)
        demo.wait_for(r"scaler\s+firing AgentContainerMemoryNearLimit -> resize_memory leaky-agent: "
                      r"64 MiB -> 128 MiB \(dry run", 90)
        owned = owned_processes(demo.proc.pid, workdir)
        commands = _commands(owned)
        for part in ("dockerd", "containerd-shim", "tail", "prometheus ", "prometheus-alertmanager",
                     "agentwatch.cli exporter", "agentwatch.cli scaler", "agentwatch.cli demo-agents"):
            assert part in commands, f"{part!r} not among the demo's processes:\n{commands}"
        # Each step is printed as it is observed, in the order the loop runs.
        pending, firing = demo.stamp(r"NearLimit pending"), demo.stamp(r"NearLimit firing")
        delivered, decided = demo.stamp(r"\[FIRING:1\] AgentContainerMemoryNearLimit"), demo.stamp(r"-> resize_memory")
        assert pending < firing <= min(delivered, decided), (pending, firing, delivered, decided)

        code = demo.stop(signal.SIGTERM)
    finally:
        demo.kill_if_running()
    assert code == 128 + signal.SIGTERM, demo.output()
    assert "stopping (SIGTERM)" in demo.output()
    assert "stopped: every process, container and file of the demo is gone" in demo.output()
    assert_nothing_left(owned, workdir)


@pytest.mark.slow
def test_demo_without_an_engine_says_so_and_sigint_stops_it_when_inherited_ignored(tmp_path: Path) -> None:
    demo = Demo(tmp_path, "--no-engine", "--duration", "600", ignore_sigint=True)
    try:
        workdir = demo.wait_for(WORKDIR.pattern, 120).group(1)
        assert "running without containers (--no-engine)" in demo.output()
        demo.wait_for(r"Incident 1 \(a container leaking memory\) needs containers: skipped", 10)
        demo.wait_for(r"prometheus\s+AgentPoolExhausted firing \(server=demo pool=mcp\)", 180)
        demo.wait_for(r"discord\s+\[FIRING:1\] AgentPoolExhausted \(critical\) server demo", 60)
        demo.wait_for(r"scaler\s+firing AgentPoolExhausted -> set_concurrency agent-server: 6 -> 3 \(dry run", 60)
        owned = owned_processes(demo.proc.pid, workdir)
        commands = _commands(owned)
        assert "dockerd" not in commands, commands
        assert "agentwatch.cli demo-agents" in commands and "prometheus-alertmanager" in commands, commands
        code = demo.stop(signal.SIGINT)
    finally:
        demo.kill_if_running()
    assert code == 128 + signal.SIGINT, demo.output()
    assert "stopping (SIGINT)" in demo.output()
    assert_nothing_left(owned, workdir)


def test_a_bad_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "agentwatch.cli", "demo", "--duration", "-5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2
    assert "--duration: expected a number of seconds above 0 and at most 86400, got '-5'" in proc.stderr
    assert proc.stdout == ""


def test_missing_rules_are_one_line_and_exit_2_before_anything_starts(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-rules"
    proc = subprocess.run([sys.executable, "-m", "agentwatch.cli", "demo", "--rules-dir", str(missing)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    expected = (f"agentwatch demo: no alert rules found (looked in {missing}); pass --rules-dir with the "
                "alert-rules/ directory of the agentwatch source")
    assert proc.stderr.splitlines() == [expected], proc.stderr
    assert "everything is up" not in proc.stdout and "private engine" not in proc.stdout
    assert "stopped: every process, container and file of the demo is gone" in proc.stdout

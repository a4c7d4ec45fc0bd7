"""The workload: agent-like processes on the host and memory-limited busybox containers.

An agent-like process is a two-line shell script called ``agent-worker`` started with agent-like
arguments (``--model sonnet --task 17``): the kernel names it ``agent-worker`` (its comm) and its
command line reads ``/bin/sh .../agent-worker --model sonnet --task 17``, the shape of
``python3 /app/agent.py --model sonnet``. It blocks in the shell's ``read`` on one pipe shared by
all of them, so each costs about 1.7 MB RSS and no CPU, and if the benchmark dies without cleaning
up, the pipe closes and every one of them exits on its own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

MODELS = ("sonnet", "opus", "haiku")
AGENT_COMM = "agent-worker"
#: Tags this run's processes, so two benchmark runs on one machine never count each other's.
RUN_TAG = f"run{os.getpid()}"
#: The exporter's and process-exporter's groups both key on the comm and this cmdline regex.
AGENT_CMDLINE_REGEX = rf"--model (?P<model>\w+) --task \d+ --run {RUN_TAG}"
AGENT_SCRIPT = "#!/bin/sh\n# agent-like stand-in: blocks until the benchmark closes its stdin\nread -r _\n"

BENCH_LABEL = "agentwatch.bench"
#: Light work: a little CPU and page cache every few seconds, as an idle agent would.
CONTAINER_SCRIPT = "while :; do head -c 262144 /dev/urandom > /dev/null; sleep 3; done"
CONTAINER_MEMORY = "64m"


class AgentProcesses:
    """M agent-like processes; ``scale`` adds or stops some, ``stop`` reaps them all."""

    def __init__(self, workdir: Path) -> None:
        self.script = workdir / "bin" / AGENT_COMM
        self.script.parent.mkdir(parents=True, exist_ok=True)
        self.script.write_text(AGENT_SCRIPT)
        self.script.chmod(0o755)
        self._read_fd, self._write_fd = os.pipe()
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def scale(self, count: int) -> None:
        while len(self.procs) > count:
            self._reap([self.procs.pop()])
        for i in range(len(self.procs), count):
            args = [str(self.script), "--model", MODELS[i % len(MODELS)], "--task", str(i), "--run", RUN_TAG]
            self.procs.append(subprocess.Popen(args, stdin=self._read_fd, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, close_fds=True))
        dead = [p.pid for p in self.procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{len(dead)} agent-like processes exited at once (first pid {dead[0]})")

    @staticmethod
    def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def stop(self) -> None:
        """Stop and reap every process, then close the pipe (which alone would end them too)."""
        procs, self.procs = self.procs, []
        self._reap(procs)
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._read_fd = self._write_fd = -1


class ContainerFleet:
    """N running busybox containers on the private engine, all labelled as the benchmark's."""

    def __init__(self, client: docker.DockerClient, image: str, tag: str, workers: int = 4) -> None:
        """``tag`` ends up in every container's command line (as the shell's $0), so leftovers are findable."""
        self.client = client
        self.tag = tag
        self.image = image
        self.workers = workers
        self.ids: list[str] = []

    def _start_one(self, index: int) -> str:
        container = self.client.containers.run(
            self.image, ["sh", "-c", CONTAINER_SCRIPT, self.tag], detach=True, name=f"aw-bench-agent-{index}",
            network_mode="none", mem_limit=CONTAINER_MEMORY, memswap_limit=CONTAINER_MEMORY,
            labels={BENCH_LABEL: "1", "com.docker.compose.project": "bench",
                    "com.docker.compose.service": "agent"},
        )
        return container.id

    def scale(self, count: int, timeout: float = 600.0) -> None:
        """Start (or remove) containers until ``count`` run; bounded by ``timeout``."""
        while len(self.ids) > count:
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.remove_container(self.ids.pop(), force=True)
        missing = range(len(self.ids), count)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            self.ids.extend(pool.map(self._start_one, missing))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = self.client.containers.list(filters={"label": BENCH_LABEL, "status": "running"},
                                                  sparse=True)
            if len(running) >= count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"only {len(running)} of {count} containers running after {timeout:g}s")

    def stop(self) -> None:
        """Remove every container the benchmark started."""
        ids, self.ids = self.ids, []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            list(pool.map(self._remove, ids))

    def _remove(self, cid: str) -> None:
        with contextlib.suppress(docker.errors.APIError, OSError):
            self.client.api.remove_container(cid, force=True)

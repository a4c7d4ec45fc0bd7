"""What users run instead of agentwatch, measured on the same workload.

- per-process stats: Debian's ``prometheus-process-exporter`` grouping the same processes by the
  same comm and cmdline regex, with its default flags (smaps and per-thread metrics on) and with
  the ones its maintainers recommend for large hosts (``LEAN_FLAGS``); it does all its work inside
  each scrape, so its cost is CPU per scrape;
- per-container stats by hand: ``docker stats --no-stream`` (the docker CLI against the private
  engine); its CPU is the CLI's plus the engine's (dockerd, containerd and the shims);
- per-container stats in a first exporter: a sequential loop over the SDK's
  ``container.stats(stream=False)``, which waits for two samples per container; at N=100 that is
  minutes, so only K containers are timed and the per-container time is extrapolated to N.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker
import yaml

from agentwatch.local.process import free_port
from agentwatch.local.scrape import Scrape
from bench.procstat import EngineMeter, cpu_seconds, peak_rss_bytes
from bench.scrape import Latency, Target, count_series, timed_scrapes
from bench.workload import AGENT_CMDLINE_REGEX, AGENT_COMM

PROCESS_EXPORTER = "/usr/bin/prometheus-process-exporter"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def process_exporter_version() -> str:
    line = _version([PROCESS_EXPORTER, "-version"])
    return line.split("revision:")[-1].strip(" )") if "revision:" in line else line


def docker_cli_version() -> str:
    return _version(["docker", "--version"])


@dataclass
class ProcessExporterFigures:
    scrape: Latency
    cpu_per_scrape_s: float
    peak_rss_bytes: int
    series: int
    processes_matched: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def process_exporter_config() -> dict[str, Any]:
    """The same grouping as the exporter's: comm ``agent-worker``, one group per model."""
    return {"process_names": [{"name": "{{.Comm}}:{{.Matches.model}}", "comm": [AGENT_COMM],
                               "cmdline": [AGENT_CMDLINE_REGEX]}]}


#: The flags process-exporter's maintainers recommend for large hosts: no per-thread metrics, no smaps.
LEAN_FLAGS = ("-threads=false", "-gather-smaps=false")


def measure_process_exporter(scrapes: int, log: Callable[[str], None] = print,
                             flags: tuple[str, ...] = ()) -> ProcessExporterFigures:
    """Start process-exporter (with ``flags``), scrape it back to back ``scrapes`` times, stop it (always)."""
    if not shutil.which(PROCESS_EXPORTER):
        raise RuntimeError(f"{PROCESS_EXPORTER} is not installed (apt-get install prometheus-process-exporter)")
    workdir = Path(tempfile.mkdtemp(prefix="aw-bench-pe-"))
    cfg = workdir / "process-exporter.yml"
    cfg.write_text(yaml.safe_dump(process_exporter_config()))
    port = free_port()
    with open(workdir / "process-exporter.log", "wb") as logfile:
        proc = subprocess.Popen([PROCESS_EXPORTER, "-config.path", str(cfg),
                                 "-web.listen-address", f"127.0.0.1:{port}", *flags],
                                stdout=logfile, stderr=subprocess.STDOUT)
    target = Target("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"process-exporter exited with {proc.returncode}: "
                                   f"{(workdir / 'process-exporter.log').read_text(errors='replace')[-500:]}")
            try:
                text = target.text()  # also the warm-up scrape
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        cpu0 = cpu_seconds(proc.pid)
        latencies, _ = timed_scrapes(target, scrapes)
        cpu1 = cpu_seconds(proc.pid)
        text = target.text()
        matched = sum(v for _, v in Scrape.parse(text).series("namedprocess_namegroup_num_procs"))
        figures = ProcessExporterFigures(
            scrape=Latency.of(latencies), cpu_per_scrape_s=(cpu1 - cpu0) / scrapes,
            peak_rss_bytes=peak_rss_bytes(proc.pid), series=count_series(text), processes_matched=int(matched))
        log(f"  process-exporter{' ' + ' '.join(flags) if flags else ''}: p50 {figures.scrape.median_s * 1000:.0f} ms, "
            f"{figures.cpu_per_scrape_s * 1000:.0f} ms CPU/scrape")
        return figures
    finally:
        target.close()
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class DockerStatsFigures:
    wall_median_s: float
    walls_s: list[float]
    cli_cpu_s: float
    engine_cpu_s: float
    rows: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_docker_stats(host: str, expected: int, repeat: int, engine: EngineMeter,
                         log: Callable[[str], None] = print) -> DockerStatsFigures:
    """``docker stats --no-stream`` over every running container, ``repeat`` times; medians per run."""
    env = {**os.environ, "DOCKER_HOST": host}
    walls, cli_cpu, engine_cpu, rows = [], [], [], 0
    for _ in range(repeat):
        engine.refresh()
        before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        e0, t0 = engine.cpu(), time.perf_counter()
        out = subprocess.run(["docker", "stats", "--no-stream"], capture_output=True, text=True, env=env,
                             timeout=600, check=False)
        wall = time.perf_counter() - t0
        e1 = engine.cpu()
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            raise RuntimeError(f"docker stats failed ({out.returncode}): {out.stderr.strip()[:500]}")
        rows = len(out.stdout.strip().splitlines()) - 1
        if rows != expected:
            raise RuntimeError(f"docker stats listed {rows} containers, expected {expected}")
        walls.append(wall)
        cli_cpu.append((after_children.ru_utime + after_children.ru_stime)
                       - (before_children.ru_utime + before_children.ru_stime))
        engine_cpu.append(engine.excess(e0, e1, wall))
    figures = DockerStatsFigures(statistics.median(walls), walls, statistics.median(cli_cpu),
                                 statistics.median(engine_cpu), rows)
    log(f"  docker stats --no-stream: {figures.wall_median_s:.2f} s over {rows} containers")
    return figures


@dataclass
class SdkLoopFigures:
    list_s: float
    per_container_s: float
    sampled: int
    containers: int
    wall_s: float
    extrapolated: bool
    engine_cpu_per_container_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_sdk_loop(host: str, sample: int, engine: EngineMeter,
                     log: Callable[[str], None] = print) -> SdkLoopFigures:
    """List the containers and call ``stats(stream=False)`` on each in turn, as a naive exporter does.

    Only the first ``sample`` containers' stats are timed; the loop's wall time over all N is
    list time + N x the mean per-container time.
    """
    client = docker.DockerClient(base_url=host, timeout=120)
    try:
        engine.refresh()
        t0 = time.perf_counter()
        containers = client.containers.list()
        t1 = time.perf_counter()
        chosen = containers[:max(1, sample)]
        e0 = engine.cpu()
        for c in chosen:
            stats = c.stats(stream=False)
            if "memory_stats" not in stats:
                raise RuntimeError(f"one-shot stats of {c.name} carried no memory_stats")
        t2 = time.perf_counter()
        e1 = engine.cpu()
    finally:
        client.close()
    per = (t2 - t1) / len(chosen)
    figures = SdkLoopFigures(list_s=t1 - t0, per_container_s=per, sampled=len(chosen),
                             containers=len(containers), wall_s=(t1 - t0) + per * len(containers),
                             extrapolated=len(chosen) < len(containers),
                             engine_cpu_per_container_s=engine.excess(e0, e1, t2 - t1) / len(chosen))
    log(f"  SDK stats(stream=False) loop: {per:.2f} s per container, "
        f"{figures.wall_s:.1f} s for {len(containers)}{' (extrapolated)' if figures.extrapolated else ''}")
    return figures

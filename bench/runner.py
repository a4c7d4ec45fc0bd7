"""The benchmark plan and its run: workload up, every tool measured, everything torn down.

Plan (a full cross product would not fit in 20 minutes on 2 cores): the process dimension
(M agent-like processes, no containers, the exporter's docker collectors off), the container
dimension (N containers, no extra processes, the process collector off), then one combined point
with everything on, at the largest M and at N = 100 (the largest N up to 100 the run has). Each
point gets a fresh exporter, so its VmHWM is that point's peak. Last, the scaler under a burst of
webhooks (``bench.scaler_burst``).
"""

from __future__ import annotations

import compileall
import contextlib
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agentwatch
from agentwatch.local.dockerd import IMAGE, PrivateDockerd
from bench import agentwatch_run, bare_reads, peers, report, scaler_burst
from bench.procstat import EngineMeter
from bench.workload import AGENT_CMDLINE_REGEX, AGENT_COMM, CONTAINER_MEMORY, AgentProcesses, ContainerFleet


@dataclass(frozen=True)
class Settings:
    containers: list[int]
    processes: list[int]
    scrapes: int
    out: Path
    interval: float
    window: float
    repeat: int
    sdk_sample: int
    stats_source: str
    pace: float
    command: str
    webhooks: int = 0
    in_flight: int = 50
    distinct: int = 400


@dataclass(frozen=True)
class PlanPoint:
    kind: str  # processes | containers | combined
    containers: int
    processes: int


#: The container count of the combined point when the run has it (the issue's "N=100 and M=1,000").
COMBINED_CONTAINERS = 100


def combined_containers(containers: list[int]) -> int:
    """The largest container count up to COMBINED_CONTAINERS, else the smallest one."""
    sizes = sorted(n for n in set(containers) if n > 0)
    upto = [n for n in sizes if n <= COMBINED_CONTAINERS]
    return upto[-1] if upto else sizes[0]


def plan(containers: list[int], processes: list[int]) -> list[PlanPoint]:
    points = [PlanPoint("processes", 0, m) for m in sorted(set(processes)) if m > 0]
    points += [PlanPoint("containers", n, 0) for n in sorted(set(containers)) if n > 0]
    if points and any(n > 0 for n in containers) and any(m > 0 for m in processes):
        points.append(PlanPoint("combined", combined_containers(containers), max(processes)))
    return points


def exporter_config(point: PlanPoint, settings: Settings, docker_host: str | None) -> dict[str, Any]:
    return {
        "interval_seconds": settings.interval,
        "log_level": "warning",
        "docker": {"enabled": point.containers > 0, "host": docker_host, "stats_source": settings.stats_source},
        "processes": {"enabled": point.processes > 0,
                      "groups": [{"name": AGENT_COMM, "process_name": AGENT_COMM, "cmdline": AGENT_CMDLINE_REGEX}]},
    }


def compile_bytecode() -> bool:
    """Compile agentwatch's modules to bytecode, as ``pip install`` does, before any exporter starts.

    From a checkout with PYTHONDONTWRITEBYTECODE set (or stale bytecode it cannot rewrite), every
    exporter compiled its changed modules at start (the compiler's working memory peaked at 1.9 MB
    for one module), a cost an installed exporter never pays.
    """
    return bool(compileall.compile_dir(Path(agentwatch.__file__).parent, quiet=1))


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run(settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the whole plan; the workload and every process started are cleaned up whatever happens."""
    started = time.monotonic()
    points_plan = plan(settings.containers, settings.processes)
    if not points_plan:
        raise ValueError("nothing to measure: give at least one positive --containers or --processes size")
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
        "kernel": f"Linux {platform.release()}",
        "python": platform.python_version(),
        "loadavg_before": _loadavg(),
        "docker_cli": peers.docker_cli_version(),
        "process_exporter": peers.process_exporter_version(),
        "command": settings.command,
        "interval_s": settings.interval,
        "window_s": settings.window,
        "scrapes": settings.scrapes,
        "pace_s": settings.pace,
        "stats_source": settings.stats_source,
        "repeat": settings.repeat,
        "sdk_sample": settings.sdk_sample,
        "plan": [p.__dict__ for p in points_plan],
        "engine_version": "none",
        "bytecode": "compiled" if compile_bytecode() else "not compiled (see the log)",
        "cgroup": "n/a",
    }
    points: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="aw-bench-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        log(f"workload directory {workdir}")
        agents = AgentProcesses(workdir)
        stack.callback(agents.stop)
        engine: PrivateDockerd | None = None
        fleet: ContainerFleet | None = None
        if any(p.containers for p in points_plan):
            engine = PrivateDockerd()
            stack.callback(engine.stop)
            log(f"starting the private Docker engine in {engine.base}")
            engine.start()
            engine.import_busybox()
            assert engine.client is not None
            info = engine.client.info()
            meta["engine_version"] = f"{info.get('ServerVersion')} (API {engine.client.version().get('ApiVersion')})"
            meta["cgroup"] = f"cgroup v{info.get('CgroupVersion', '?')}, {info.get('CgroupDriver')} driver"
            fleet = ContainerFleet(engine.client, IMAGE, tag=str(workdir))
            stack.callback(fleet.stop)
        meter = EngineMeter(str(engine.base.resolve())) if engine else None

        for point in points_plan:
            t0 = time.monotonic()
            log(f"point {point.kind}: N={point.containers} containers, M={point.processes} processes")
            agents.scale(point.processes)
            if fleet is not None:
                fleet.scale(point.containers)
            time.sleep(2)  # let container start-up work settle before measuring
            idle = meter.calibrate(max(2.0, settings.window / 4)) if meter and point.containers else None
            result: dict[str, Any] = {"kind": point.kind, "containers": point.containers,
                                      "processes": point.processes, "engine_idle_cpu_per_s": idle}
            aw = agentwatch_run.measure(exporter_config(point, settings, engine.host if engine else None),
                                        settings.scrapes, settings.window, settings.pace,
                                        meter if point.containers else None, log=log)
            result["agentwatch"] = aw.to_json()
            result["process_exporter"] = result["process_exporter_lean"] = None
            if point.processes:
                result["process_exporter"] = peers.measure_process_exporter(settings.scrapes, log).to_json()
                result["process_exporter_lean"] = peers.measure_process_exporter(
                    settings.scrapes, log, flags=peers.LEAN_FLAGS).to_json()
            if point.containers and engine is not None and meter is not None:
                result["docker_stats"] = peers.measure_docker_stats(engine.host, point.containers, settings.repeat,
                                                                    meter, log).to_json()
                result["sdk_loop"] = peers.measure_sdk_loop(engine.host, settings.sdk_sample, meter, log).to_json()
                bare = bare_reads.measure(engine.host)
                log(f"  bare cgroup and /proc reads: {bare.wall_median_s * 1000:.1f} ms for {bare.files} files "
                    f"of {bare.containers} containers")
                result["bare_reads"] = bare.to_json()
            else:
                result["docker_stats"] = result["sdk_loop"] = result["bare_reads"] = None
            result["ratios"] = report.ratios(result)
            result["elapsed_s"] = time.monotonic() - t0
            points.append(result)
        scaler = None
        if settings.webhooks:
            log(f"scaler: {settings.webhooks} webhooks, {settings.in_flight} in flight")
            scaler = scaler_burst.measure(settings.webhooks, settings.in_flight,
                                          min(settings.distinct, settings.webhooks), log=log)
    meta["loadavg_after"] = _loadavg()
    meta["elapsed_s"] = time.monotonic() - started
    meta["notes"] = notes(settings)
    return {"meta": meta, "points": points, "scaler": scaler, "targets": report.targets(points, scaler)}


def notes(s: Settings) -> list[str]:
    """What was run and how each figure is computed (printed under the tables)."""
    return [
        "Plan: M agent-like processes with no containers (the exporter's docker collectors off), N containers "
        "with no extra processes (the process collector off), then N and M together with everything on; "
        "a fresh exporter per point.",
        f"Containers: busybox (`{IMAGE}`) on a private dockerd, `network_mode=none`, memory limit "
        f"{CONTAINER_MEMORY}, reading 256 KiB of /dev/urandom every 3 s.",
        f"Processes: a shell script named `{AGENT_COMM}` run as `/bin/sh .../{AGENT_COMM} --model "
        "<sonnet|opus|haiku> --task <i>` blocked in `read` (1.7 MB RSS each); both exporters group them by "
        f"comm `{AGENT_COMM}` and the cmdline regex `{AGENT_CMDLINE_REGEX}` (3 label sets).",
        "agentwatch: `python -m agentwatch.cli exporter` as a subprocess, its modules' bytecode compiled first "
        "as `pip install` compiles it; after two warm-up cycles, CPU per cycle "
        "= utime+stime from /proc/<pid>/stat over a window without scrapes / cycles the exporter counted "
        "(agentwatch_collector_duration_seconds_count), idle time between cycles included; CPU per scrape = the "
        "extra CPU during the timed scrapes beyond the cycles that ran meanwhile. Collector times are the "
        "histogram's sum/count over the window; the cycle is the median "
        "agentwatch_collection_cycle_duration_seconds over the snapshots the timed scrapes saw. The bookkeeping "
        "scrapes around the window ask as Prometheus does (OpenMetrics, gzip), like the timed ones, so the "
        "exporter renders that one encoding each cycle; one plain-text scrape at the end counts the series.",
        "process-exporter: Debian's 0.7.10, once with its default flags (smaps and per-thread metrics on) and once "
        f"with `{' '.join(peers.LEAN_FLAGS)}` (pe lean), the flags its maintainers recommend for large hosts; it "
        "works inside each scrape, so its CPU is per scrape, over the timed scrapes.",
        f"docker stats: `docker stats --no-stream` with DOCKER_HOST of the private engine, median of {s.repeat} "
        "run(s); CPU = the CLI's (rusage) + the engine's (dockerd, containerd and shims, found by the engine's "
        "private directory in their command lines), net of the engine's idle rate measured just before "
        "(housekeeping for the running containers). agentwatch's engine CPU per cycle is measured the same way.",
        f"SDK loop: `client.containers.list()` then `c.stats(stream=False)` per container in turn; only the first "
        f"{s.sdk_sample} are timed and the loop's wall time is extrapolated as list time + N x the mean.",
        "Bare reads: after each container point, every running container's cgroup is located as the collector "
        "locates it and exactly the files one collection reads for it (cgroup files and /proc/<pid>/net/dev) are "
        "opened, read into a small buffer and closed in a tight loop, nothing else; the median of 30 rounds is the "
        "floor the containers collector (its mean duration over the quiet window) is compared with.",
        "Peak RSS is VmHWM from /proc/<pid>/status at the end of the point; series are the samples of one "
        "text-format scrape.",
        f"Scaler: a real `agentwatch scaler` (dry run) with the demo agent server as its agent_server target; "
        f"{s.webhooks} webhooks, {s.in_flight} in flight, cycling over {min(s.distinct, s.webhooks)} alert "
        "instances that two rules act on, after 20 warm-up webhooks; decision latency is what the scaler reports "
        "per webhook (parsed payload to durable decisions, the agent server's status read included); lost and "
        "doubled are counted from its audit log. A serial run of fresh alerts is the reference.",
        "The combined point runs at the largest N up to 100 and the largest M; the exporter runs with its "
        "default collectors (insights included).",
        "Targets are evaluated at the largest sizes the run measured; other work on the same machine shows in the "
        "load averages above.",
    ]


def main_settings(args: Any) -> Settings:
    scrapes = args.scrapes
    pace = args.pace if args.pace is not None else max(0.02, min(0.25, 2.5 * args.interval / scrapes))
    return Settings(containers=args.containers, processes=args.processes, scrapes=scrapes, out=Path(args.out),
                    interval=args.interval, window=args.window, repeat=args.repeat, sdk_sample=args.sdk_sample,
                    stats_source=args.stats_source, pace=pace,
                    command="python -m bench " + " ".join(sys.argv[1:]),
                    webhooks=args.webhooks, in_flight=args.in_flight, distinct=args.distinct)

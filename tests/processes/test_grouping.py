"""Real agent-like children are grouped by the matchers and measured like psutil measures them."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil

from agentwatch import catalog
from tests.processes.helpers import MiB, agents_matcher, collector, scrape

#: The kernel's name for the workers: the interpreter's file name as executed (python, python3, ...).
PYTHON_COMM = Path(sys.executable).name[:15]


def ps(procs) -> list[psutil.Process]:
    return [psutil.Process(p.pid) for p in procs]


async def test_groups_are_counted_and_measured_per_model_label(fleet, run_id):
    sonnets = [fleet.spawn("sonnet", mb=40, threads=2, fds=5) for _ in range(3)]
    haikus = [fleet.spawn("haiku", mb=20) for _ in range(2)]
    c = collector(groups=[agents_matcher(run_id)], uss=True)
    s = await scrape(c)

    assert s.value("agentwatch_process_group_processes", group="agents", model="sonnet") == 3
    assert s.value("agentwatch_process_group_processes", group="agents", model="haiku") == 2
    for procs, mb, model in ((sonnets, 40, "sonnet"), (haikus, 20, "haiku")):
        refs = ps(procs)
        labels = {"group": "agents", "model": model}
        rss = s.value("agentwatch_process_group_memory_rss_bytes", **labels)
        assert rss >= len(procs) * mb * MiB, "every touched page is resident"
        assert rss <= len(procs) * (mb + 40) * MiB, "only the interpreter on top"
        ref_rss = sum(p.memory_info().rss for p in refs)
        assert abs(rss - ref_rss) <= 0.05 * ref_rss, (rss, ref_rss)
        uss = s.value("agentwatch_process_group_memory_uss_bytes", **labels)
        assert len(procs) * mb * MiB <= uss <= rss
        ref_uss = sum(p.memory_full_info().uss for p in refs)
        assert abs(uss - ref_uss) <= 0.05 * ref_uss, (uss, ref_uss)
        assert s.value("agentwatch_process_group_threads", **labels) == sum(p.num_threads() for p in refs)
        assert s.value("agentwatch_process_group_open_fds", **labels) == sum(p.num_fds() for p in refs)
        age = s.value("agentwatch_process_group_oldest_age_seconds", **labels)
        assert abs(age - (time.time() - min(p.create_time() for p in refs))) < 2.0
        # All of them are below the first bucket (256 MiB): the gauge histogram says so.
        first = repr(catalog.AGENT_RSS_BUCKETS[0])
        assert s.value("agentwatch_process_group_process_rss_bytes_bucket", le=first, **labels) == len(procs)
        assert s.value("agentwatch_process_group_process_rss_bytes_bucket", le="+Inf", **labels) == len(procs)
        assert s.value("agentwatch_process_group_process_rss_bytes_gcount", **labels) == len(procs)
        assert s.value("agentwatch_process_group_process_rss_bytes_gsum", **labels) == rss
    assert s.value("agentwatch_process_group_threads", group="agents", model="sonnet") >= 3 * 3
    assert s.value("agentwatch_process_group_open_fds", group="agents", model="sonnet") >= 3 * (3 + 5)
    assert s.value("agentwatch_host_memory_total_bytes") == psutil.virtual_memory().total
    assert 0 < s.value("agentwatch_host_memory_used_ratio") < 1
    assert s.value("agentwatch_process_scan_skipped_total", reason="access_denied") == 0


async def test_cpu_seconds_rise_for_a_busy_process(fleet, run_id):
    busy = fleet.spawn("busy", mb=1, busy=True)
    fleet.spawn("idle", mb=1)
    c = collector(groups=[agents_matcher(run_id)])
    first = await scrape(c)
    await asyncio.sleep(1.5)
    second = await scrape(c)
    before = first.value("agentwatch_process_group_cpu_seconds_total", group="agents", model="busy")
    after = second.value("agentwatch_process_group_cpu_seconds_total", group="agents", model="busy")
    assert after - before >= 0.5, (before, after)  # a spinning process on a 2-core host
    times = psutil.Process(busy.pid).cpu_times()
    assert abs(after - (times.user + times.system)) < 0.5
    idle = second.value("agentwatch_process_group_cpu_seconds_total", group="agents", model="idle")
    assert idle < after


async def test_first_matching_group_wins_and_conditions_combine(fleet, run_id):
    direct = [fleet.spawn("sonnet", mb=5), fleet.spawn("opus", mb=5)]
    fleet.spawn("sonnet", mb=5, via_shell=True)
    groups = [
        # parent is matched as a whole name: only the worker started by sh.
        {**agents_matcher(run_id, "via-shell"), "parent": "sh"},
        {"name": "opus-only", "cmdline": rf"--run {run_id} --model opus"},
        agents_matcher(run_id, "agents"),
        # never reached: the workers all joined a group above.
        {"name": "python-any", "process_name": PYTHON_COMM, "cmdline": run_id},
    ]
    s = await scrape(collector(groups=groups))
    assert s.value("agentwatch_process_group_processes", group="via-shell", model="sonnet") == 1
    assert s.value("agentwatch_process_group_processes", group="opus-only", model="") == 1
    assert s.value("agentwatch_process_group_processes", group="agents", model="sonnet") == 1
    assert s.value("agentwatch_process_group_processes", group="agents", model="opus") is None
    assert s.value("agentwatch_process_group_processes", group="python-any", model="") == 0
    # Every group family carries group plus the union of named groups, sorted.
    for name, labels, _ in s.samples:
        if name.startswith("agentwatch_process_group_") and "dropped" not in name:
            assert set(labels) - {"le"} == {"group", "model"}, (name, labels)
    assert psutil.Process(direct[0].pid).is_running()


async def test_process_name_and_parent_without_cmdline_regex(fleet, run_id):
    fleet.spawn("x", mb=1, via_shell=True)
    s = await scrape(collector(groups=[
        {"name": "shells", "process_name": "sh", "cmdline": f"--run {run_id}"},
        {"name": "children", "process_name": PYTHON_COMM, "parent": "s.", "cmdline": f"--run {run_id}"},
    ]))
    assert s.value("agentwatch_process_group_processes", group="shells") == 1
    assert s.value("agentwatch_process_group_processes", group="children") == 1


async def test_in_container_condition_reads_the_cgroup(docker_client, run_id):
    marker = f"3000.{int(run_id[1:9], 16) % 10**8:08d}"  # a unique, valid duration for sleep
    host_sleep = await asyncio.create_subprocess_exec("sleep", marker)
    container = docker_client.containers.run("agent:local", ["sleep", marker], detach=True,
                                             network_mode="none", auto_remove=False)
    try:
        groups = [
            {"name": "contained", "process_name": "sleep", "cmdline": rf"^sleep {marker}$", "in_container": True},
            {"name": "host", "process_name": "sleep", "cmdline": rf"^sleep {marker}$", "in_container": False},
        ]
        c = collector(groups=groups)
        s = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s = await scrape(c)
            if s.value("agentwatch_process_group_processes", group="contained"):
                break
            await asyncio.sleep(0.2)
        assert s is not None
        assert s.value("agentwatch_process_group_processes", group="contained") == 1
        assert s.value("agentwatch_process_group_processes", group="host") == 1
    finally:
        host_sleep.kill()
        await host_sleep.wait()
        container.remove(force=True)


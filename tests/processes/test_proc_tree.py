"""Reader and matcher details on a hand-written /proc tree: values a live test cannot set up cheaply."""

from __future__ import annotations

from agentwatch import catalog
from agentwatch.collectors import procmatch, procscan
from tests.processes.helpers import TICKS, FakeProc, MiB, collector, scrape

GiB = 1024 * MiB
AGENT = {"name": "agents", "cmdline": r"agent\.py --model (?P<model>\w+)"}
DOCKER_ID = "4f" * 32


async def test_rss_histogram_spreads_over_the_agent_buckets(tmp_path):
    proc = FakeProc(tmp_path)
    sizes = [100 * MiB, 256 * MiB, 300 * MiB, 3 * GiB, 5 * GiB, 20 * GiB]
    for i, size in enumerate(sizes):
        proc.add(200 + i, "python3", ["python3", "agent.py", "--model", "opus"], rss_bytes=size)
    s = await scrape(collector(groups=[AGENT], proc_root=str(tmp_path)))
    labels = {"group": "agents", "model": "opus"}

    def bucket(le: float | str) -> float:
        key = le if isinstance(le, str) else repr(float(le))
        return s.value("agentwatch_process_group_process_rss_bytes_bucket", le=key, **labels)

    for bound in catalog.AGENT_RSS_BUCKETS:
        assert bucket(bound) == sum(1 for x in sizes if x <= bound), bound
    assert bucket("+Inf") == len(sizes)
    assert s.value("agentwatch_process_group_process_rss_bytes_gsum", **labels) == sum(sizes)
    assert s.value("agentwatch_process_group_memory_rss_bytes", **labels) == sum(sizes)


async def test_times_threads_fds_uss_and_age_from_the_files(tmp_path):
    proc = FakeProc(tmp_path, uptime=5000.0)
    cmd = ["python3", "agent.py", "--model", "opus"]
    proc.add(300, "python3", cmd, utime=250, stime=50, threads=7, start=1000 * TICKS, fds=9, private_kb=2048)
    proc.add(301, "python3", cmd, utime=100, stime=0, threads=3, start=4000 * TICKS, fds=4, private_kb=1024)
    s = await scrape(collector(groups=[AGENT], proc_root=str(tmp_path), uss=True))
    labels = {"group": "agents", "model": "opus"}
    assert s.value("agentwatch_process_group_cpu_seconds_total", **labels) == (250 + 50 + 100) / TICKS
    assert s.value("agentwatch_process_group_threads", **labels) == 10
    assert s.value("agentwatch_process_group_open_fds", **labels) == 13
    assert s.value("agentwatch_process_group_memory_uss_bytes", **labels) == (2048 + 1024) * 1024
    assert s.value("agentwatch_process_group_oldest_age_seconds", **labels) == 4000.0
    assert s.value("agentwatch_host_memory_available_bytes") == 4_000_000 * 1024
    assert s.value("agentwatch_host_memory_used_ratio") == 0.75


async def test_kernel_threads_and_zombies_are_not_agents(tmp_path):
    proc = FakeProc(tmp_path)
    proc.add(400, "agent.py", [], flags=procscan.PF_KTHREAD)
    proc.add(401, "python3", ["python3", "agent.py", "--model", "a"], state="Z")
    proc.add(402, "python3", ["python3", "agent.py", "--model", "a"])
    s = await scrape(collector(groups=[AGENT, {"name": "kernel", "process_name": "agent.py"}],
                               proc_root=str(tmp_path)))
    assert s.value("agentwatch_process_group_processes", group="agents", model="a") == 1
    assert s.value("agentwatch_process_group_processes", group="kernel", model="") == 0


def test_container_ids_are_found_for_every_runtime_layout(tmp_path):
    proc = FakeProc(tmp_path)
    layouts = {
        500: f"12:memory:/docker/{DOCKER_ID}\n11:cpu:/docker/{DOCKER_ID}\n",                 # cgroupfs v1
        501: f"0::/system.slice/docker-{DOCKER_ID}.scope\n",                                 # systemd v2
        502: f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/"
             f"cri-containerd-{DOCKER_ID}.scope\n",
        503: f"4:pids:/kubepods/besteffort/pod0a1b/{DOCKER_ID}\n",
        504: "0::/user.slice/user-0.slice/session-1.scope\n",                               # a login shell
        505: "12:memory:/\n0::/init.scope\n",
    }
    for pid, text in layouts.items():
        proc.add(pid, "sh", ["sh"], cgroup=text)
    found = {pid: procscan.container_id(str(tmp_path), pid) for pid in layouts}
    assert found == {500: DOCKER_ID, 501: DOCKER_ID, 502: DOCKER_ID, 503: DOCKER_ID, 504: None, 505: None}


async def test_in_container_and_parent_on_a_tree(tmp_path):
    proc = FakeProc(tmp_path)
    cmd = ["python3", "agent.py", "--model", "m"]
    proc.add(600, "containerd-shim", ["containerd-shim"])
    proc.add(601, "python3", cmd, ppid=600, cgroup=f"0::/system.slice/docker-{DOCKER_ID}.scope\n")
    proc.add(602, "python3", cmd, ppid=1)
    groups = [{"name": "boxed", "cmdline": r"agent\.py", "in_container": True, "parent": "containerd-shim.*"},
              {"name": "bare", "cmdline": r"agent\.py", "in_container": False}]
    s = await scrape(collector(groups=groups, proc_root=str(tmp_path)))
    assert s.value("agentwatch_process_group_processes", group="boxed") == 1
    assert s.value("agentwatch_process_group_processes", group="bare") == 1


async def test_long_names_compare_on_the_kernels_15_chars_and_labels_are_cut(tmp_path):
    proc = FakeProc(tmp_path)
    proc.add(700, "agent-superviso", ["agent-supervisor", "--model", "x" * 500])
    s = await scrape(collector(groups=[{"name": "sup", "process_name": "agent-supervisor",
                                        "cmdline": r"--model (?P<model>\w+)"}], proc_root=str(tmp_path)))
    series = s.series("agentwatch_process_group_processes", group="sup")
    assert series == [({"group": "sup", "model": "x" * procmatch.MAX_LABEL_VALUE}, 1.0)]


async def test_match_cache_follows_exec_pid_reuse_and_young_processes(tmp_path):
    proc = FakeProc(tmp_path, uptime=1000.0)
    c = collector(groups=[AGENT], proc_root=str(tmp_path))
    old = 100 * TICKS                      # 900 s old: its verdict is cached
    proc.add(800, "python3", ["python3", "agent.py", "--model", "a"], start=old)
    young = 995 * TICKS                    # 5 s old: a fork that may not have exec'd yet
    proc.add(801, "python3", ["python3", "-c", "pass"], start=young)

    def count(s, model):
        return s.value("agentwatch_process_group_processes", group="agents", model=model)

    s = await scrape(c)
    assert count(s, "a") == 1 and count(s, "b") is None
    # The old process rewrites its cmdline: cached, not re-read (that is the cost saving).
    proc.add(800, "python3", ["python3", "agent.py", "--model", "b"], start=old)
    # The young one execs into an agent with the same name, pid and start time: re-read.
    proc.add(801, "python3", ["python3", "agent.py", "--model", "b"], start=young)
    s = await scrape(c)
    assert count(s, "a") == 1 and count(s, "b") == 1
    # The pid is reused by a new process (new start time): re-read.
    proc.add(800, "python3", ["python3", "agent.py", "--model", "b"], start=old + 1)
    s = await scrape(c)
    assert count(s, "a") is None and count(s, "b") == 2
    # An exec that changes the name is seen at once too.
    proc.add(800, "node", ["node", "server.js"], start=old + 1)
    s = await scrape(c)
    assert count(s, "b") == 1
    # Gone processes leave the cache.
    for pid in (800, 801):
        for f in (tmp_path / str(pid)).rglob("*"):
            if f.is_file():
                f.unlink()
        for d in sorted((tmp_path / str(pid)).rglob("*"), reverse=True):
            d.rmdir()
        (tmp_path / str(pid)).rmdir()
    s = await scrape(c)
    assert len(c.matchers) == 0
    assert s.series("agentwatch_process_group_processes") == [({"group": "agents", "model": ""}, 0.0)]


async def test_overlapping_collections_share_one_scan(tmp_path):
    import asyncio

    FakeProc(tmp_path).add(900, "python3", ["python3", "agent.py", "--model", "a"])
    c = collector(groups=[AGENT], proc_root=str(tmp_path))
    first, second = await asyncio.gather(c.collect(), c.collect())
    assert first is second, "a second caller waits for the running scan instead of starting another"
    third = await c.collect()
    assert third is not first, "a finished scan is not reused"
    await c.stop()

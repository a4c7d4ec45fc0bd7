"""cgroup v2 parsing on a recorded hierarchy, and v1 parsing on this machine's real tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.collectors import container_stats_api
from agentwatch.collectors.cgroupfs import (
    CgroupTree,
    CgroupUnavailable,
    parse_proc_cgroup,
    parse_v1_blkio,
    read_net,
)
from agentwatch.collectors.containers import cpu_limit_cores, docker_time
from agentwatch.local.dockerd import IMAGE

FIXTURES = Path(__file__).parent / "fixtures"
V2_ROOT = str(FIXTURES / "cgroup_v2")
PROC = str(FIXTURES / "proc")
ID_A, ID_B = "a" * 64, "b" * 64
MiB = 1 << 20


def test_v2_limited_container_reads_every_file():
    tree = CgroupTree(V2_ROOT)
    assert tree.version == 2
    cg = tree.locate(PROC, 4242, ID_A)
    st = tree.read(cg)
    assert st.memory_usage == 100 * MiB
    assert st.memory_limit == 256 * MiB
    assert st.memory_working_set == 80 * MiB  # memory.current - inactive_file
    assert st.memory_rss == 70 * MiB and st.memory_cache == 28 * MiB
    assert st.cpu_seconds == pytest.approx(12.345678)
    assert (st.cpu_periods, st.cpu_throttled_periods) == (500, 25)
    assert st.cpu_throttled_seconds == pytest.approx(1.5)
    assert (st.blkio_read_bytes, st.blkio_write_bytes) == (1048576 + 4096, 2097152)
    assert st.pids == 7
    assert st.memory_oom_kills == 2, "memory.events oom_kill"
    net = read_net(PROC, 4242)
    assert (net.rx_bytes, net.tx_bytes, net.rx_errors, net.tx_errors) == (124456, 67432, 2, 4), "lo is left out"


def test_v2_unlimited_container_and_floor_at_zero():
    tree = CgroupTree(V2_ROOT)
    cg = tree.locate(PROC, 4343, ID_B)
    st = tree.read(cg)
    assert st.memory_limit == 0, '"max" means unlimited'
    assert st.memory_working_set == 0, "inactive_file above usage floors the working set at 0"
    assert (st.blkio_read_bytes, st.blkio_write_bytes) == (0, 0), "no io.stat: zeros, not a failure"
    assert st.memory_oom_kills is None, "no memory.events: unknown, not zero"


def test_a_pid_outside_the_container_is_never_read_as_it():
    tree = CgroupTree(V2_ROOT)
    with pytest.raises(CgroupUnavailable):
        tree.locate(PROC, 4444, ID_A)  # someone else's cgroup (a reused pid)
    with pytest.raises(CgroupUnavailable):
        tree.locate(PROC, 4242, ID_B)  # the path does not name this container
    with pytest.raises(CgroupUnavailable):
        tree.locate(PROC, 999999, ID_A)  # no such process
    assert not CgroupTree(str(FIXTURES / "nowhere")).readable()


def test_v1_parsers_on_recorded_lines():
    v1, unified = parse_proc_cgroup("4:memory:/docker/x\n3:cpu,cpuacct:/docker/x\n0::/docker/x\n")
    assert v1["memory"] == v1["cpu"] == v1["cpuacct"] == "/docker/x" and unified == "/docker/x"
    assert parse_v1_blkio("8:0 Read 4096\n8:0 Write 512\n8:16 Read 4\n8:0 Total 4612\nTotal 4616\n") == (4100, 512)


def test_v1_real_tree_matches_the_engine(docker_client):
    """This machine runs cgroup v1 (cpu and cpuacct mounted apart): read a real container's tree."""
    c = docker_client.containers.run(IMAGE, ["sleep", "300"], detach=True, network_mode="none",
                                     mem_limit="64m", nano_cpus=500_000_000)
    free = docker_client.containers.run(IMAGE, ["sleep", "300"], detach=True, network_mode="none")
    tree = CgroupTree("/sys/fs/cgroup")
    assert tree.version == 1
    for container, limit, cores in ((c, 64 * MiB, 0.5), (free, 0, 0.0)):
        info = docker_client.api.inspect_container(container.id)
        cg = tree.locate("/proc", info["State"]["Pid"], container.id)
        st = tree.read(cg)
        assert st.memory_limit == limit
        assert cpu_limit_cores(info["HostConfig"]) == pytest.approx(cores)
        assert st.pids == 1
        assert 0 < st.memory_working_set <= st.memory_usage
        assert st.cpu_seconds > 0
        net = read_net("/proc", info["State"]["Pid"])
        assert (net.rx_bytes, net.tx_bytes) == (0, 0), "network none: only lo, which is left out"
        assert docker_time(info["State"]["StartedAt"]) > 1.6e9
        assert docker_time(info["State"]["FinishedAt"]) == 0.0, "Docker's zero time is 0"


def test_api_payload_v2_shape_and_bad_shapes():
    st = container_stats_api.from_payload({
        "memory_stats": {"usage": 50 * MiB, "stats": {"inactive_file": 10 * MiB, "anon": 30 * MiB, "file": 15 * MiB}},
        "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "throttling_data": {"throttled_time": 10**9}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 7}, {"op": "write", "value": 9}]},
        "pids_stats": {"current": 4},
        "networks": {"eth0": {"rx_bytes": 5, "tx_bytes": 6, "rx_errors": 0, "tx_errors": 1}},
    })
    assert st.memory_working_set == 40 * MiB and st.memory_rss == 30 * MiB and st.memory_cache == 15 * MiB
    assert st.cpu_seconds == 2.0 and st.cpu_throttled_seconds == 1.0
    assert (st.blkio_read_bytes, st.blkio_write_bytes, st.pids) == (7, 9, 4)
    assert st.memory_limit is None, "the API's limit is host memory when unlimited; inspect decides"
    for bad in ([], {"memory_stats": []}, {"memory_stats": {"usage": "many"}}):
        with pytest.raises(ValueError):
            container_stats_api.from_payload(bad)


def test_docker_times():
    assert docker_time("2024-05-01T10:00:00.5Z") == pytest.approx(1714557600.5)
    assert docker_time("2024-05-01T12:00:00.123456789+02:00") == pytest.approx(1714557600.123456789)
    assert docker_time("0001-01-01T00:00:00Z") == 0.0
    assert docker_time("yesterday") == 0.0 and docker_time(None) == 0.0

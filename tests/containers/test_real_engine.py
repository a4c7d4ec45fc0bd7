"""The container and event collectors against real containers on the private engine."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from prometheus_client.exposition import generate_latest

from agentwatch.collectors.containers import ContainerCollector
from agentwatch.config import DockerConfig
from agentwatch.exposition import Families
from agentwatch.local.dockerd import IMAGE
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for
from agentwatch.local.scrape import Scrape

MiB = 1 << 20
#: Holds ~16 MiB in /dev/shm (charged to the container's memory cgroup) and then sleeps.
STEADY = ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null; exec sleep 300"]


def _run(client, name: str, cmd: list[str], **kw):
    return client.containers.run(IMAGE, cmd, name=name, detach=True, network_mode="none", **kw)


def _engine_ratio(client, cid: str) -> float:
    s = client.api.stats(cid, stream=False)
    mem = s["memory_stats"]
    inactive = mem["stats"].get("total_inactive_file", mem["stats"].get("inactive_file", 0))
    return (mem["usage"] - inactive) / mem["limit"]


def test_exporter_reports_real_containers_and_their_deaths(dockerd, docker_client):
    steady = _run(docker_client, "aw-steady", STEADY, mem_limit="64m")
    wait_for(lambda: docker_client.api.stats(steady.id, stream=False, one_shot=True)["memory_stats"]["usage"]
             > 12 * MiB, 30, what="the steady container to fill its memory")
    labelled = _run(docker_client, "aw-labelled", ["sleep", "300"],
                    labels={"com.docker.compose.project": "fleet", "com.docker.compose.service": "worker",
                            "agent.tier": "gold", "not.allowed": "x"},
                    healthcheck={"test": ["CMD", "true"], "interval": 500_000_000, "start_period": 0})
    stopped = _run(docker_client, "aw-stopped", ["sleep", "300"])
    cfg = {"docker": {"host": dockerd.host, "label_allowlist": ["agent.tier"], "timeout_seconds": 5},
           "processes": {"enabled": False}}
    with ExporterProcess(cfg) as exp:
        exp.wait_for_cycles(1)
        stopped.kill()  # SIGKILL: a die event with exit code 137, but no OOM
        oom = _run(docker_client, "aw-oom", ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
                   mem_limit="32m", memswap_limit="32m",
                   restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
        wait_for(lambda: docker_client.api.inspect_container(oom.id)["RestartCount"] >= 3
                 and docker_client.api.inspect_container(oom.id)["State"]["Status"] == "exited", 60,
                 what="the OOM container to exhaust its retries")

        def settled():
            s = exp.scrape()
            return (s.value("agentwatch_container_restarts_total", container="aw-oom") == 3
                    and (s.value("agentwatch_container_dies_total", container="aw-oom", exit_code="137") or 0) >= 4
                    and s.value("agentwatch_container_health_status", container="aw-labelled", status="healthy") == 1
                    and s)
        scrape = wait_for(settled, 30, what="the exporter to see the OOM loop and the healthcheck")
        ratio_engine = _engine_ratio(docker_client, steady.id)
        scrape = exp.scrape()

    assert scrape.value("agentwatch_docker_up") == 1
    assert scrape.value("agentwatch_docker_stats_source", source="cgroup") == 1
    # the steady container: limit, working set and ratio against the engine's own figure
    assert scrape.value("agentwatch_container_memory_limit_bytes", container="aw-steady") == 64 * MiB
    ratio = scrape.value("agentwatch_container_memory_working_set_ratio", container="aw-steady")
    assert ratio == pytest.approx(ratio_engine, abs=0.03), (ratio, ratio_engine)
    assert ratio > 0.15, "16 MiB of 64 MiB is held"
    assert scrape.value("agentwatch_container_state", container="aw-steady", state="running") == 1
    assert scrape.value("agentwatch_container_state", container="aw-steady", state="exited") == 0
    assert scrape.value("agentwatch_container_health_status", container="aw-steady", status="none") == 1
    assert scrape.value("agentwatch_container_pids", container="aw-steady") >= 1
    # the OOM loop, seen both through inspect and on the event stream
    oom_labels = {"container": "aw-oom", "compose_service": ""}
    assert scrape.value("agentwatch_container_state", state="exited", **oom_labels) == 1
    assert scrape.value("agentwatch_container_last_exit_code", **oom_labels) == 137
    assert scrape.value("agentwatch_container_oom_killed", **oom_labels) == 1
    assert scrape.value("agentwatch_container_restarts_total", **oom_labels) == 3
    assert scrape.value("agentwatch_container_restart_policy", policy="on-failure", **oom_labels) == 1
    assert scrape.value("agentwatch_container_restart_policy_max_retries", **oom_labels) == 3
    assert scrape.value("agentwatch_container_memory_limit_bytes", **oom_labels) == 32 * MiB
    assert scrape.value("agentwatch_container_dies_total", exit_code="137", **oom_labels) == 4
    assert scrape.value("agentwatch_container_oom_events_total", **oom_labels) >= 1
    assert scrape.value("agentwatch_container_finish_time_seconds", **oom_labels) > \
        scrape.value("agentwatch_container_start_time_seconds", **oom_labels) > 1.6e9
    # the killed container: a death on the stream, not an OOM
    assert scrape.value("agentwatch_container_dies_total", container="aw-stopped", exit_code="137") == 1
    assert scrape.value("agentwatch_container_oom_events_total", container="aw-stopped") == 0
    assert scrape.value("agentwatch_container_state", container="aw-stopped", state="exited") == 1
    assert scrape.value("agentwatch_container_oom_killed", container="aw-stopped") == 0
    assert scrape.value("agentwatch_container_restart_policy", container="aw-stopped", policy="no") == 1
    assert scrape.value("agentwatch_container_memory_usage_bytes", container="aw-stopped") is None, \
        "no usage for a container that is not running"
    # compose and allowlisted labels; labels not on the allowlist stay out
    (labels, _), = scrape.series("agentwatch_container_info", container="aw-labelled")
    assert labels["compose_project"] == "fleet" and labels["compose_service"] == "worker"
    assert labels["label_agent_tier"] == "gold" and labels["image"] == IMAGE
    assert labels["container_id"] == labelled.id[:12]
    assert not any(k.startswith("label_not") for k in labels)
    assert scrape.value("agentwatch_docker_events_up") == 1


async def _collect(collector: ContainerCollector) -> Scrape:
    return Scrape.parse(generate_latest(Families(await collector.collect())).decode())


async def test_cgroup_and_api_paths_agree(dockerd, docker_client):
    steady = await asyncio.to_thread(_run, docker_client, "aw-agree", STEADY, mem_limit="64m",
                                     nano_cpus=500_000_000)
    free = await asyncio.to_thread(_run, docker_client, "aw-agree-free", ["sleep", "300"])
    await asyncio.sleep(1.0)  # let dd finish: the container then holds steady
    cg = ContainerCollector(DockerConfig(host=dockerd.host, stats_source="cgroup"))
    api = ContainerCollector(DockerConfig(host=dockerd.host, stats_source="api"))
    try:
        first = await _collect(cg)
        via_api = await _collect(api)
        second = await _collect(cg)
    finally:
        await cg.stop()
        await api.stop()
    assert first.value("agentwatch_docker_stats_source", source="cgroup") == 1
    assert via_api.value("agentwatch_docker_stats_source", source="api") == 1
    assert via_api.value("agentwatch_docker_stats_source", source="cgroup") == 0
    for name, limit in (("aw-agree", 64 * MiB), ("aw-agree-free", 0)):
        def v(scrape, metric, name=name):
            return scrape.value(metric, container=name)
        assert v(first, "agentwatch_container_memory_limit_bytes") == limit == \
            v(via_api, "agentwatch_container_memory_limit_bytes")
        for metric in ("agentwatch_container_memory_usage_bytes", "agentwatch_container_memory_working_set_bytes"):
            assert v(via_api, metric) == pytest.approx(v(first, metric), abs=4 * MiB), metric
        assert v(first, "agentwatch_container_cpu_usage_seconds_total") <= \
            v(second, "agentwatch_container_cpu_usage_seconds_total"), "cpu counter is monotonic"
        assert v(via_api, "agentwatch_container_cpu_usage_seconds_total") == pytest.approx(
            v(second, "agentwatch_container_cpu_usage_seconds_total"), abs=0.05)
        assert v(via_api, "agentwatch_container_pids") == v(first, "agentwatch_container_pids")
        assert v(via_api, "agentwatch_container_cpu_periods_total") >= 0
    assert first.value("agentwatch_container_memory_working_set_ratio", container="aw-agree") > 0.15
    assert first.value("agentwatch_container_memory_working_set_ratio", container="aw-agree-free") is None
    assert first.value("agentwatch_container_cpu_limit_cores", container="aw-agree") == 0.5
    assert {steady.name, free.name} <= {lbl["container"] for lbl, _ in first.series("agentwatch_container_info")}


async def test_cycle_time_with_20_running_containers(dockerd, docker_client):
    """Measured, not asserted: one collection through each path, and docker stats for scale."""
    await asyncio.gather(*(asyncio.to_thread(_run, docker_client, f"aw-bench-{i}", ["sleep", "300"])
                           for i in range(20)))
    figures = {}
    for source in ("cgroup", "api"):
        collector = ContainerCollector(DockerConfig(host=dockerd.host, stats_source=source, name_filter="^aw-bench-"))
        try:
            await _collect(collector)  # warm: client creation and version negotiation
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                scrape = await _collect(collector)
                times.append(time.perf_counter() - t0)
        finally:
            await collector.stop()
        assert len(scrape.series("agentwatch_container_memory_usage_bytes")) == 20
        figures[source] = sorted(times)[1]
    t0 = time.perf_counter()
    out = await asyncio.to_thread(subprocess.run, ["docker", "-H", dockerd.host, "stats", "--no-stream"],
                                  capture_output=True, text=True, timeout=120)
    figures["docker stats --no-stream"] = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    print("\ncycle wall time, 20 running containers (median of 3):",
          ", ".join(f"{k}: {v * 1000:.1f} ms" for k, v in figures.items()))


async def test_oom_kill_of_a_child_in_a_surviving_container_is_counted(dockerd, docker_client):
    """The agent-server shape: the OOM killer takes one child, the container keeps running.

    Docker's OOMKilled flag and exit code say nothing here (nothing exited); the cgroup's own
    counter does, which is what turns "agents stuck running" into something an alert can see.
    """
    # tail buffers it all and raises its own oom_score_adj to 1000: the kernel's first choice. Under
    # load the kernel now and then also takes the container's shell while tail's memory is still being
    # freed, which ends the container; such a run is not the scenario and is repeated (at most 3).
    hog = ("head -c 200000000 /dev/zero | sh -c 'echo 1000 > /proc/self/oom_score_adj; exec tail' > /dev/null; "
           "exec sleep 300")
    calm = _run(docker_client, "aw-child-calm", ["sleep", "300"], mem_limit="32m")
    collector = ContainerCollector(DockerConfig(host=dockerd.host, stats_source="cgroup", events=False))

    async def scrape() -> Scrape:
        return Scrape.parse(generate_latest(Families(await collector.collect())).decode())

    try:
        for attempt in range(3):
            name = f"aw-child-oom-{attempt}"
            c = _run(docker_client, name, ["sh", "-c", hog], mem_limit="32m", memswap_limit="32m")
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if ((await scrape()).value("agentwatch_container_memory_oom_kills_total", container=name)
                            or 0) >= 1:
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.0)  # a second victim, if any, shows by now
                c.reload()
                if c.status != "running":
                    continue
                s = await scrape()
                assert s.value("agentwatch_container_memory_oom_kills_total", container=name) >= 1
                assert s.value("agentwatch_container_state", container=name, state="running") == 1
                assert s.value("agentwatch_container_oom_killed", container=name) == 0, "Docker cannot tell"
                assert s.value("agentwatch_container_memory_oom_kills_total", container="aw-child-calm") == 0
                break
            finally:
                c.remove(force=True)
        else:
            pytest.fail("in 3 runs the kernel also took the container's shell; the scenario never held")
    finally:
        await collector.stop()
        calm.remove(force=True)

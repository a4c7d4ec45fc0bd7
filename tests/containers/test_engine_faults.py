"""Engine absent, malformed answers, a hung endpoint and recovery, against the real exporter."""

from __future__ import annotations

import json
import os

from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for
from tests.containers.fake_engine import FakeEngine


def _config(host: str, processes: bool = True) -> dict:
    return {"interval_seconds": 0.3,
            "docker": {"host": host, "timeout_seconds": 1.0, "events": False},
            "processes": {"enabled": processes}}


def _containers_cycles(exp: ExporterProcess) -> float:
    return exp.scrape().value("agentwatch_collector_duration_seconds_count", collector="containers") or 0


def test_engine_absent_is_reported_logged_once_and_recovers(tmp_path):
    sock = tmp_path / "engine.sock"  # nothing listens here yet
    with ExporterProcess(_config(f"unix://{sock}")) as exp:
        wait_for(lambda: _containers_cycles(exp) >= 5, 30, what="5 container collections")
        scrape = exp.scrape()
        assert scrape.value("agentwatch_docker_up") == 0
        assert scrape.series("agentwatch_docker_stats_source"), "the stats-source gauge is still there"
        assert scrape.value("agentwatch_collector_success", collector="containers") == 1, "down is a state"
        assert scrape.value("agentwatch_host_memory_total_bytes") > 0, "process metrics are still served"
        assert not scrape.series("agentwatch_container_info")

        with FakeEngine(sock):
            up = wait_for(lambda: exp.scrape().value("agentwatch_docker_up") == 1, 20, what="docker_up 1")
            assert up
            scrape = exp.scrape()
            assert scrape.value("agentwatch_container_restarts_total", container="fake-agent",
                                compose_project="fleet", compose_service="agent") == 2
        log = exp.log()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    warnings = [r for r in records if r["level"] == "warning" and "engine" in r["msg"].lower()]
    assert len(warnings) == 1, f"one warning across 5+ cycles, got {warnings}"
    assert str(sock) in warnings[0]["msg"]
    assert any("reachable again" in r["msg"] for r in records), "recovery is logged"


def test_malformed_json_fails_the_collector_a_hung_endpoint_is_the_engine_down(tmp_path):
    # the fake container's init pid is this test's: its cgroup is not a container's, so the
    # collector falls back to the (fake) one-shot stats endpoint for it
    with FakeEngine(tmp_path / "engine.sock", container_pid=os.getpid()) as engine, \
            ExporterProcess(_config(engine.host, processes=False)) as exp:
        scrape = wait_for(lambda: (s := exp.scrape()).series("agentwatch_container_info") and s, 20,
                          what="the fake container")
        assert scrape.value("agentwatch_docker_stats_source", source="api") == 1
        assert scrape.value("agentwatch_container_memory_working_set_bytes", container="fake-agent") == 8 << 20
        assert scrape.value("agentwatch_container_cpu_limit_cores", container="fake-agent") == 0.5
        assert scrape.value("agentwatch_container_start_time_seconds", container="fake-agent") == 1714557600.5
        assert scrape.value("agentwatch_container_network_transmit_errors_total", container="fake-agent") == 0
        errors0 = scrape.value("agentwatch_collector_errors_total", collector="containers")

        engine.mode = "malformed"  # a fault: the collector fails, the exporter does not
        wait_for(lambda: exp.scrape().value("agentwatch_collector_success", collector="containers") == 0, 20,
                 what="collector_success 0 (malformed)")
        before = exp.scrape().value("agentwatch_collector_errors_total", collector="containers")
        after = wait_for(lambda b=before: (v := exp.scrape().value("agentwatch_collector_errors_total",
                                                                     collector="containers")) > b and v,
                         20, what="errors_total rising (malformed)")
        assert after > errors0
        status, body = exp.get("/metrics", timeout=10)
        assert status == 200 and b"agentwatch_collector_success" in body
        assert exp.get("/healthz")[0] == 200
        engine.mode = "ok"
        fresh = wait_for(lambda: (s := exp.scrape()).value("agentwatch_collector_success", collector="containers")
                         == 1 and s, 20, what="recovery after malformed")

        engine.mode = "hang"  # an engine that takes the request and never answers is down, not a fault
        down = wait_for(lambda: (s := exp.scrape()).value("agentwatch_docker_up") == 0 and s, 20,
                        what="docker_up 0 (hang)")
        assert down.value("agentwatch_collector_success", collector="containers") == 1
        seen = fresh.value("agentwatch_container_last_seen_timestamp_seconds", container="fake-agent")
        last_known = down.value("agentwatch_container_last_seen_timestamp_seconds", container="fake-agent")
        assert last_known is not None and last_known >= seen
        assert down.value("agentwatch_container_restarts_total", container="fake-agent") == 2, "last-known kept"
        assert exp.get("/healthz")[0] == 200
        engine.mode = "ok"
        wait_for(lambda: exp.scrape().value("agentwatch_docker_up") == 1, 20, what="recovery after hang")
        assert "containers/json" in " ".join(engine.requests[-3:])


async def test_last_known_series_are_kept_for_the_configured_time_only(tmp_path):
    """``docker.keep_last_known_seconds`` bounds how long a silent engine's containers are served."""
    from prometheus_client.exposition import generate_latest

    from agentwatch.collectors.containers import ContainerCollector
    from agentwatch.config import DockerConfig
    from agentwatch.exposition import Families
    from agentwatch.local.scrape import Scrape

    async def scrape(c: ContainerCollector) -> Scrape:
        return Scrape.parse(generate_latest(Families(await c.collect())).decode())

    with FakeEngine(tmp_path / "engine.sock") as engine:
        keeps = ContainerCollector(DockerConfig(host=engine.host, stats_source="api", timeout_seconds=1.0))
        drops = ContainerCollector(DockerConfig(host=engine.host, stats_source="api", timeout_seconds=1.0,
                                                keep_last_known_seconds=0))
        try:
            for c in (keeps, drops):
                assert (await scrape(c)).value("agentwatch_docker_up") == 1
            engine.mode = "hang"
            kept, dropped = await scrape(keeps), await scrape(drops)
            assert kept.value("agentwatch_docker_up") == dropped.value("agentwatch_docker_up") == 0
            assert kept.value("agentwatch_container_state", container="fake-agent", state="running") == 1
            assert not dropped.series("agentwatch_container_state")
            assert dropped.series("agentwatch_docker_stats_source"), "the engine families stay"
            # a timed-out collection (the loop's verdict) is answered the same way, from memory
            assert Scrape.parse(generate_latest(Families(keeps.known())).decode()).value(
                "agentwatch_container_state", container="fake-agent", state="running") == 1
        finally:
            engine.mode = "ok"
            await keeps.stop()
            await drops.stop()


async def test_an_events_fault_leaves_out_one_exit_code_not_the_containers(tmp_path, caplog):
    """A restarted container's previous exit code is read from the engine's die events; when that
    endpoint fails, only that one series is missing and the collection still succeeds."""
    from prometheus_client.exposition import generate_latest

    from agentwatch.collectors.containers import ContainerCollector
    from agentwatch.config import DockerConfig
    from agentwatch.exposition import Families
    from agentwatch.local.scrape import Scrape

    with FakeEngine(tmp_path / "engine.sock") as engine:
        engine.finished_at = "2024-05-01T09:59:59.5Z"  # it ran before, and the engine restarted it
        engine.events_mode = "broken"
        collector = ContainerCollector(DockerConfig(host=engine.host, stats_source="api", events=False))
        try:
            broken = Scrape.parse(generate_latest(Families(await collector.collect())).decode())
            fresh = ContainerCollector(DockerConfig(host=engine.host, stats_source="api", events=False))
            engine.events_mode = "ok"  # the fake's die event says 137
            healed = Scrape.parse(generate_latest(Families(await fresh.collect())).decode())
            await fresh.stop()
        finally:
            await collector.stop()
    assert broken.value("agentwatch_container_state", container="fake-agent", state="running") == 1
    assert broken.value("agentwatch_container_last_exit_code", container="fake-agent") is None
    assert broken.value("agentwatch_container_restarts_total", container="fake-agent") == 2
    assert "cannot read die events" in caplog.text
    assert healed.value("agentwatch_container_last_exit_code", container="fake-agent") == 137

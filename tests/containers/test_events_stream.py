"""The event-stream thread: reconnects with backoff, resumes with since=, never double counts."""

from __future__ import annotations

import asyncio
import time

from agentwatch.collectors.docker_events import DockerEventsCollector, since_param
from agentwatch.config import DockerConfig
from agentwatch.local.scrape import Scrape
from tests.containers.fake_engine import FakeEngine


async def _scrape(collector: DockerEventsCollector) -> Scrape:
    from prometheus_client.exposition import generate_latest

    from agentwatch.exposition import Families

    return Scrape.parse(generate_latest(Families(await collector.collect())).decode())


async def _until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await pred():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_stream_that_drops_is_reconnected_and_counting_continues(tmp_path):
    sock = tmp_path / "engine.sock"
    collector = DockerEventsCollector(DockerConfig(host=f"unix://{sock}", timeout_seconds=2))
    await collector.start()
    try:
        # engine absent at first: the thread keeps trying, the gauge says down
        await asyncio.sleep(1.0)
        scrape = await _scrape(collector)
        assert scrape.value("agentwatch_docker_events_up") == 0
        assert scrape.value("agentwatch_docker_events_reconnects_total") == 0

        engine = FakeEngine(sock)
        engine.start()
        try:
            # every stream sends one die event and closes; each replays the previous stream's last
            # event first (since= is inclusive), which must not be counted twice
            async def enough():
                s = await _scrape(collector)
                return engine.event_streams >= 4 and (s.value("agentwatch_docker_events_reconnects_total") or 0) >= 3
            await _until(enough, 30, "three reconnects")
            await asyncio.sleep(0.3)
            scrape = await _scrape(collector)
            dies = scrape.value("agentwatch_container_dies_total", container="fake-agent", compose_service="agent",
                                exit_code="137")
            sent = engine._next_event
            assert dies in (sent, sent - 1), f"{sent} distinct events sent, {dies} counted (the last may be in flight)"
            assert dies >= 3
            assert scrape.value("agentwatch_container_oom_events_total", container="fake-agent",
                                compose_service="agent") == 0
            # every reconnect resumed from the previous stream's last event time
            assert all(s is not None for s in engine.since_seen)
            assert engine.since_seen[1:] == sorted(engine.since_seen[1:])
            assert float(engine.since_seen[-1]) > float(engine.since_seen[0])
        finally:
            engine.stop()
        await _until(lambda: _down(collector), 10, "events_up 0 after the engine left")
    finally:
        started = time.monotonic()
        await collector.stop()
        assert time.monotonic() - started < 11, "stop() joins the thread within its bound"
    assert collector._thread is None


async def _down(collector: DockerEventsCollector) -> bool:
    return (await _scrape(collector)).value("agentwatch_docker_events_up") == 0


def test_since_format_and_lru_bound():
    assert since_param(1_714_557_600_000_000_123) == "1714557600.000000123"
    collector = DockerEventsCollector(DockerConfig(max_containers=2))
    for i, name in enumerate(["a", "b", "a", "c"]):
        collector._handle({"Action": "die", "timeNano": 10 + i, "Actor": {"ID": name * 64, "Attributes": {
            "name": name, "exitCode": "1"}}})
    collector._handle({"Action": "die", "timeNano": 13, "Actor": {"ID": "c" * 64, "Attributes": {
        "name": "c", "exitCode": "1"}}})  # a replayed event: same id, action and time
    collector._handle(["not", "an", "event"])
    assert list(collector._counts) == [("a", ""), ("c", "")], "b, least recently updated, was evicted"
    assert collector._counts[("a", "")].dies == {"1": 2}
    assert collector._counts[("c", "")].dies == {"1": 1}

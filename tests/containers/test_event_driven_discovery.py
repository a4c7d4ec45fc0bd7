"""While the event stream reports no change, the containers collector reuses its listing and its
inspects, and only pings the engine; a change on the stream makes it ask again (engine_changes)."""

from __future__ import annotations

import asyncio
import time

from agentwatch.collectors.containers import ContainerCollector
from agentwatch.collectors.docker_events import DockerEventsCollector
from agentwatch.config import DockerConfig
from agentwatch.engine_changes import ChangeFeed
from agentwatch.local.dockerd import IMAGE
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for
from tests.containers.fake_engine import CONTAINER_ID, FakeEngine


def _calls(engine: FakeEngine, what: str) -> int:
    return sum(1 for path in engine.requests if path.endswith(what))


async def test_listing_and_inspects_are_reused_until_the_stream_reports_a_change(tmp_path):
    sock = tmp_path / "engine.sock"
    engine = FakeEngine(sock)
    engine.events_per_stream, engine.hold_streams, engine.replay_last = 0, True, False
    engine.start()
    config = DockerConfig(host=f"unix://{sock}", timeout_seconds=2, stats_source="api")
    feed = ChangeFeed()
    events = DockerEventsCollector(config, changes=feed)
    containers = ContainerCollector(config, changes=feed)
    await events.start()
    try:
        deadline = time.monotonic() + 10
        while feed.mark() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert feed.mark() is not None, "the event stream never connected"

        for _ in range(5):
            families = await containers.collect()
            assert any(f.name == "agentwatch_container_info" and f.samples for f in families)
        assert _calls(engine, "/containers/json") == 1, engine.requests
        assert _calls(engine, f"/containers/{CONTAINER_ID}/json") == 1
        assert _calls(engine, "/_ping") == 4, "each reused listing is backed by an answer from the engine"

        engine.push_event()  # a die event naming the container: both the listing and its inspect are stale
        assert containers._listing is not None
        listed_at = containers._listing[1]
        deadline = time.monotonic() + 10
        while feed.quiet(listed_at) and time.monotonic() < deadline:  # until the event has arrived
            await asyncio.sleep(0.02)
        await containers.collect()
        assert _calls(engine, "/containers/json") == 2
        assert _calls(engine, f"/containers/{CONTAINER_ID}/json") == 2
        await containers.collect()
        assert _calls(engine, "/containers/json") == 2, "quiet again: the new listing is reused"
    finally:
        engine.hold_streams = False
        await events.stop()
        await containers.stop()
        engine.stop()


def test_a_real_engine_change_shows_within_a_few_cycles(dockerd, docker_client):
    """New, updated and removed containers show up although the listing and inspects are reused."""
    first = docker_client.containers.run(IMAGE, ["sleep", "300"], name="aw-ev-first", detach=True,
                                         network_mode="none")
    cfg = {"interval_seconds": 0.5, "docker": {"host": dockerd.host, "timeout_seconds": 2},
           "processes": {"enabled": False}, "insights": {"enabled": False}}
    with ExporterProcess(cfg) as exp:
        exp.wait_for_cycles(3)
        assert exp.scrape().value("agentwatch_container_restart_policy", container="aw-ev-first", policy="no") == 1

        second = docker_client.containers.run(IMAGE, ["sleep", "300"], name="aw-ev-second", detach=True,
                                              network_mode="none")
        wait_for(lambda: exp.scrape().value("agentwatch_container_info", container="aw-ev-second",
                                            container_id=second.id[:12]) == 1, 15,
                 what="a new container to be listed")
        # a restart policy only shows in an inspect; the update event makes the collector ask again
        # (without the event the inspect would be reused for minutes)
        first.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
        wait_for(lambda: exp.scrape().value("agentwatch_container_restart_policy", container="aw-ev-first",
                                            policy="on-failure") == 1, 15,
                 what="the updated restart policy")
        second.remove(force=True)
        wait_for(lambda: exp.scrape().value("agentwatch_container_info", container="aw-ev-second",
                                            container_id=second.id[:12]) is None, 15,
                 what="a removed container to go")

"""A hung engine (dockerd under SIGSTOP) is reported as down, its containers as last-known, and it recovers.

A stopped daemon still accepts connections on its socket and simply never answers, unlike a dead
one; only a real dockerd shows that. The test starts its own private engine (the session one is
shared with other tests, and this one gets frozen), and always resumes it before stopping it.
"""

from __future__ import annotations

import os
import signal

from agentwatch.local.dockerd import IMAGE, PrivateDockerd
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for
from agentwatch.local.scrape import Scrape

NAME = "aw-frozen"


def _cycles(scrape: Scrape) -> float:
    return scrape.value("agentwatch_collector_duration_seconds_count", collector="containers") or 0


def test_a_stopped_dockerd_is_down_within_two_cycles_its_containers_kept_then_recovered():
    engine = PrivateDockerd()
    engine.start()
    try:
        engine.import_busybox()
        assert engine.client is not None and engine.proc is not None
        container = engine.client.containers.run(IMAGE, ["sleep", "300"], name=NAME, detach=True,
                                                  network_mode="none")
        config = {"interval_seconds": 1.0, "processes": {"enabled": False},
                  "docker": {"host": engine.host, "timeout_seconds": 2.0}}
        with ExporterProcess(config) as exp:
            def healthy() -> Scrape | None:
                s = exp.scrape()
                return s if (s.value("agentwatch_docker_up") == 1 and s.value("agentwatch_docker_events_up") == 1
                             and s.value("agentwatch_container_state", container=NAME, state="running") == 1) else None
            wait_for(healthy, 30, what="the engine, its event stream and the container")

            os.kill(engine.proc.pid, signal.SIGSTOP)
            try:
                before = exp.scrape()
                down = wait_for(lambda: (s := exp.scrape()).value("agentwatch_docker_up") == 0 and s, 30,
                                what="agentwatch_docker_up 0 with dockerd stopped")
                assert _cycles(down) <= _cycles(before) + 2, "reported down within two cycles"
                assert down.value("agentwatch_collector_success", collector="containers") == 1, "down is a state"
                frozen = wait_for(lambda: (s := exp.scrape()).value("agentwatch_docker_events_up") == 0 and s, 30,
                                  what="agentwatch_docker_events_up 0 with dockerd stopped")
                assert _cycles(frozen) <= _cycles(before) + 2, "the event stream reported down within two cycles"
                # the documented rule: the last-known container series stay, with their age visible
                seen = frozen.value("agentwatch_container_last_seen_timestamp_seconds", container=NAME)
                assert seen is not None and seen <= frozen.value("agentwatch_snapshot_timestamp_seconds") - 0.5
                later = exp.wait_for_cycles(2)
                assert later.value("agentwatch_docker_up") == 0
                assert later.value("agentwatch_container_state", container=NAME, state="running") == 1
                assert later.value("agentwatch_container_last_seen_timestamp_seconds", container=NAME) == seen
                assert later.value("agentwatch_container_info", container=NAME, container_id=container.id[:12]) == 1
                assert exp.get("/healthz")[0] == 200
            finally:
                os.kill(engine.proc.pid, signal.SIGCONT)

            wait_for(healthy, 30, what="recovery after SIGCONT")
            fresh = wait_for(lambda: (s := exp.scrape()).value("agentwatch_container_last_seen_timestamp_seconds",
                                                              container=NAME) > seen and s, 30,
                             what="fresh container series")
            assert fresh.value("agentwatch_collector_success", collector="containers") == 1
            container.kill()  # the stream carried on through the stop: this death is counted
            wait_for(lambda: (exp.scrape().value("agentwatch_container_dies_total", container=NAME,
                                                 exit_code="137") or 0) >= 1, 30, what="the die event after recovery")
            log = exp.log()
        assert log.count("does not answer (no answer within") == 1, "one warning for the whole stop"
        assert "reachable again" in log
    finally:
        engine.stop()

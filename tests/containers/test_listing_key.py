"""The inspect cache: Docker's Status text is compared by meaning, so ticking uptime still hits."""

from __future__ import annotations

import pytest

from agentwatch.collectors.containers import listing_key, status_seconds


@pytest.mark.parametrize("status,seconds", [
    ("Up Less than a second", 0), ("Up 1 second", 1), ("Up 40 seconds", 40), ("Up About a minute", 60),
    ("Up 5 minutes (healthy)", 300), ("Up About an hour", 3600), ("Up 47 hours", 47 * 3600),
    ("Up 3 days", 3 * 86400), ("Up 2 weeks (unhealthy)", 2 * 604800), ("Exited (137) 5 seconds ago", 5),
    ("Exited (0) About an hour ago", 3600), ("Restarting (137) 2 seconds ago", 2), ("Created", -1), ("", -1),
])
def test_status_seconds(status, seconds):
    assert status_seconds(status) == seconds


def test_uptime_never_goes_backwards_along_docker_rounding():
    texts = ["Up Less than a second", "Up 1 second", "Up 59 seconds", "Up About a minute", "Up 2 minutes",
             "Up 59 minutes", "Up About an hour", "Up 2 hours", "Up 47 hours", "Up 2 days", "Up 13 days",
             "Up 2 weeks", "Up 8 weeks", "Up 2 months", "Up 11 months", "Up 1 year", "Up 2 years"]
    values = [status_seconds(t) for t in texts]
    assert values == sorted(values)


def test_key_separates_state_health_and_exit_code():
    running = listing_key({"State": "running", "Status": "Up 5 minutes (healthy)"})
    assert running == ("running", ("healthy",), 300.0)
    assert listing_key({"State": "running", "Status": "Up 5 minutes (unhealthy)"})[1] == ("unhealthy",)
    assert listing_key({"State": "exited", "Status": "Exited (137) 3 seconds ago"}) == ("exited", ("137",), 3.0)
    assert listing_key({}) == ("", (), -1.0)


def test_cache_reuses_on_ticking_uptime_and_refreshes_on_restart_or_age():
    from agentwatch.collectors.containers import INSPECT_MAX_AGE, ContainerCollector
    from agentwatch.config import DockerConfig

    collector = ContainerCollector(DockerConfig(host="unix:///nonexistent.sock"))
    try:
        old = listing_key({"State": "running", "Status": "Up 2 hours"})
        collector._inspected["c1"] = (old, 100.0, {"Id": "c1"}, None)
        assert collector._fresh("c1", listing_key({"State": "running", "Status": "Up 3 hours"}), 110.0)
        # restarted between two listings: still running, but up for less time than before
        assert not collector._fresh("c1", listing_key({"State": "running", "Status": "Up 3 seconds"}), 110.0)
        assert not collector._fresh("c1", listing_key({"State": "running", "Status": "Up 2 hours (unhealthy)"}),
                                    110.0)
        assert not collector._fresh("c1", old, 100.0 + INSPECT_MAX_AGE)
        assert not collector._fresh("c2", old, 110.0)
    finally:
        collector._executor.shutdown(wait=False)

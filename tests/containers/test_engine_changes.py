"""The change feed: when the event stream vouches that a listing or an inspect is still right."""

from __future__ import annotations

from agentwatch.engine_changes import ChangeFeed


def test_nothing_is_vouched_for_without_a_connected_stream():
    feed = ChangeFeed()
    assert feed.mark() is None
    assert not feed.quiet(None)
    assert feed.since("c1", None) == "unknown"
    feed.connected()
    mark = feed.mark()
    assert feed.quiet(mark) and feed.since("c1", mark) == "unchanged"
    feed.disconnected()
    assert not feed.quiet(mark) and feed.since("c1", mark) == "unknown"


def test_a_reconnect_makes_every_earlier_mark_stale():
    feed = ChangeFeed()
    feed.connected()
    mark = feed.mark()
    feed.disconnected()
    feed.connected()  # events may have been missed in between
    assert not feed.quiet(mark) and feed.since("c1", mark) == "unknown"
    assert feed.quiet(feed.mark())


def test_an_event_stales_the_listing_and_that_container_only():
    feed = ChangeFeed()
    feed.connected()
    mark = feed.mark()
    feed.event("c1", "update")
    assert not feed.quiet(mark)
    assert feed.since("c1", mark) == "changed"
    assert feed.since("c2", mark) == "unchanged"
    later = feed.mark()
    assert feed.quiet(later) and feed.since("c1", later) == "unchanged"


def test_health_check_execs_change_nothing_but_health_status_does():
    feed = ChangeFeed()
    feed.connected()
    mark = feed.mark()
    for action in ("exec_create: sh -c true", "exec_start: sh -c true", "exec_die", "attach", "resize"):
        feed.event("c1", action)
    assert feed.quiet(mark) and feed.since("c1", mark) == "unchanged"
    feed.event("c1", "health_status: unhealthy")
    assert not feed.quiet(mark) and feed.since("c1", mark) == "changed"


def test_forgotten_containers_are_never_vouched_for():
    feed = ChangeFeed(max_tracked=2)
    feed.connected()
    mark = feed.mark()
    feed.event("c1", "start")
    feed.event("c2", "start")
    feed.event("c3", "start")  # c1's change is forgotten: a mark from before it must not pass
    assert feed.since("c1", mark) == "unknown"
    after = feed.mark()
    assert feed.since("c1", after) == feed.since("c3", after) == "unchanged"

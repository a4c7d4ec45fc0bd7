"""Snapshots render the encodings scrapers asked for lately up front and any other on request."""

from __future__ import annotations

import gzip

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agentwatch import exposition, snapshot
from agentwatch.snapshot import PROMETHEUS, Encodings, Snapshot

ALL = [(om, gz) for om in (False, True) for gz in (False, True)]


def _families():
    g = GaugeMetricFamily("agentwatch_test_gauge", "A gauge.", labels=["container"])
    c = CounterMetricFamily("agentwatch_test_things", "Things.", labels=["container"])
    for i in range(50):
        g.add_metric([f"c{i}"], i / 3)
        c.add_metric([f"c{i}"], i)
    return [g, c]


def test_only_the_wanted_encodings_are_rendered_up_front():
    snap = Snapshot.render(_families(), 1.0, wanted={PROMETHEUS})
    assert snap.ready(True, True) is not None
    assert [enc for enc in ALL if snap.ready(*enc) is not None] == [PROMETHEUS]


@pytest.mark.parametrize("openmetrics,gzipped", ALL)
def test_every_encoding_on_request_is_what_the_library_renders(openmetrics, gzipped):
    families = _families()
    expected = exposition.encode(exposition.Families(families), openmetrics=openmetrics)
    for wanted in ({PROMETHEUS}, set(ALL)):
        snap = Snapshot.render(families, 1.0, wanted=wanted)
        body = snap.body(openmetrics, gzipped)
        assert (gzip.decompress(body) if gzipped else body) == expected
        assert snap.ready(openmetrics, gzipped) is body, "kept for the snapshot's next scrapes"


def test_asked_encodings_are_wanted_for_a_while(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(snapshot.time, "monotonic", lambda: now[0])
    encodings = Encodings(keep_seconds=30)
    assert encodings.wanted() == {PROMETHEUS}, "Prometheus's own request is always rendered"
    encodings.asked((False, False))  # curl
    assert encodings.wanted() == {PROMETHEUS, (False, False)}
    now[0] += 29
    assert (False, False) in encodings.wanted()
    now[0] += 2
    assert encodings.wanted() == {PROMETHEUS}

"""Snapshots render the formats scrapers asked for lately up front, any other on request, and
keep their bodies gzipped only."""

from __future__ import annotations

import gzip

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agentwatch import exposition, snapshot
from agentwatch.snapshot import OPENMETRICS, Formats, Snapshot

ALL = [(om, gz) for om in (False, True) for gz in (False, True)]


def _families():
    g = GaugeMetricFamily("agentwatch_test_gauge", "A gauge.", labels=["container"])
    c = CounterMetricFamily("agentwatch_test_things", "Things.", labels=["container"])
    for i in range(50):
        g.add_metric([f"c{i}"], i / 3)
        c.add_metric([f"c{i}"], i)
    return [g, c]


def test_only_the_wanted_formats_are_rendered_up_front():
    snap = Snapshot.render(_families(), 1.0, formats={OPENMETRICS})
    assert snap.ready(True) is not None
    assert snap.ready(False) is None


@pytest.mark.parametrize("openmetrics,gzipped", ALL)
def test_every_encoding_on_request_is_what_the_library_renders(openmetrics, gzipped):
    families = _families()
    expected = exposition.encode(exposition.Families(families), openmetrics=openmetrics)
    for formats in ({OPENMETRICS}, {True, False}):
        snap = Snapshot.render(families, 1.0, formats=formats)
        body = snap.gzipped(openmetrics)  # what the server sends a gzip scrape, or unzips for another
        sent = body if gzipped else b"".join(exposition.gunzip_pieces(body))
        assert (gzip.decompress(sent) if gzipped else sent) == expected
        kept = snap.ready(openmetrics)
        assert kept is not None and gzip.decompress(kept) == expected, "kept, gzipped, for the next scrapes"
        assert body is kept, "the kept bytes, rendered once"


def test_a_large_body_gzipped_family_by_family_is_the_library_s_body():
    families = [GaugeMetricFamily(f"agentwatch_test_{n}", "Many series.", labels=["container"]) for n in range(40)]
    for n, family in enumerate(families):
        for i in range(200):
            family.add_metric([f"c{i}"], i * n)
    for openmetrics in (True, False):
        body = exposition.encode_gzipped(families, openmetrics, snapshot.GZIP_LEVEL)
        expected = exposition.encode(exposition.Families(families), openmetrics)
        assert gzip.decompress(body) == expected
        assert exposition.gunzipped_size(body) == len(expected)
        pieces = list(exposition.gunzip_pieces(body, piece=4096))
        assert b"".join(pieces) == expected and max(map(len, pieces)) == 4096 and all(pieces), \
            "what a scrape without gzip is sent, a piece at a time"


def test_asked_formats_are_wanted_for_a_while(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(snapshot.time, "monotonic", lambda: now[0])
    formats = Formats(keep_seconds=30)
    assert formats.wanted() == {OPENMETRICS}, "Prometheus's own format is always rendered"
    formats.asked(False)  # curl
    assert formats.wanted() == {OPENMETRICS, False}
    now[0] += 29
    assert False in formats.wanted()
    now[0] += 2
    assert formats.wanted() == {OPENMETRICS}

"""The metric documentation is generated from the catalog and kept current; names follow conventions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentwatch import catalog

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", ["README.md", "docs/metrics.md"])
def test_metric_table_is_current(doc):
    text = (ROOT / doc).read_text()
    assert catalog.with_table(text) == text, (
        f"{doc} is out of date: run `agentwatch metrics-doc --update README.md docs/metrics.md`"
    )


@pytest.mark.parametrize("spec", catalog.ALL, ids=lambda s: s.name)
def test_metric_names_follow_prometheus_conventions(spec):
    assert re.fullmatch(r"agentwatch_[a-z0-9_]+", spec.name)
    assert spec.help.strip() and spec.help.strip()[-1] in ".)", "help text is a sentence"
    assert (spec.kind == "counter") == spec.name.endswith("_total"), "only counters end in _total"
    assert not re.search(r"_(ms|milliseconds|kb|mb|megabytes|percent)(_|$)", spec.name), "base units only"
    if spec.kind in ("histogram", "gaugehistogram"):
        assert spec.buckets, "histograms declare their buckets in the catalog"
    for label in spec.labels:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", label) and not label.startswith("__")


def test_names_are_unique():
    names = [s.name for s in catalog.ALL]
    assert len(names) == len(set(names))

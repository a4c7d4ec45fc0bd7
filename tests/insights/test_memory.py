"""The memory monitor's maths on synthetic series: slopes through noise, resets, runs, projections, states."""

from __future__ import annotations

import random
from collections import deque

import pytest

from agentwatch.insights.memory import (
    MemoryMonitor,
    MonitorSettings,
    Points,
    Series,
    least_squares,
    seconds_to_limit,
    threshold_state,
    trend_of,
)

MiB = 1 << 20
T0 = 1_700_000_000.0  # Unix-sized times: the fit must not lose precision on them
SETTINGS = MonitorSettings(window_seconds=600, min_samples=5, min_slope=8192, max_samples=720)


def feed(series: Series, values: list[float], step: float = 5.0, start: float = T0, limit: float = 0.0,
         run: float = 0.0) -> None:
    for i, v in enumerate(values):
        series.observe(start + i * step, v, limit, run)


def test_least_squares_recovers_a_slope_through_noise():
    rng = random.Random(7)
    slope = 50_000.0  # bytes per second
    points = [(T0 + i * 5, 200 * MiB + slope * i * 5 + rng.gauss(0, 2 * MiB)) for i in range(120)]
    fit = least_squares(points)
    assert fit is not None
    assert fit.slope == pytest.approx(slope, rel=0.05)
    assert fit.span == 595 and fit.samples == 120
    assert fit.value_at_end == pytest.approx(200 * MiB + slope * 595, rel=0.01)


def test_least_squares_needs_two_distinct_times():
    assert least_squares([]) is None
    assert least_squares([(T0, 1.0)]) is None
    assert least_squares([(T0, 1.0), (T0, 5.0)]) is None


@pytest.mark.parametrize(("slope", "trend"), [(40_000, "growing"), (-40_000, "shrinking"), (0, "stable"),
                                              (2_000, "stable")])
def test_trend_from_the_slope_with_noise(slope, trend):
    rng = random.Random(11)
    s = Series(SETTINGS)
    feed(s, [500 * MiB + slope * i * 5 + rng.gauss(0, 256 * 1024) for i in range(60)])
    assert s.trend == trend, s.fit


def test_stable_until_the_window_holds_enough_samples():
    s = Series(SETTINGS)
    feed(s, [MiB * (1 + i) for i in range(4)])  # steep, but only four samples
    assert s.trend == "stable" and s.view().seconds_to_limit is None
    s.observe(T0 + 20, 5 * MiB, 0)
    assert s.trend == "growing"
    assert trend_of(None, SETTINGS) == "stable"


def test_projection_to_the_limit():
    s = Series(SETTINGS)
    feed(s, [100 * MiB + 10_000 * i * 5 for i in range(30)], limit=200 * MiB)
    view = s.view()
    assert view.trend == "growing"
    last = 100 * MiB + 10_000 * 29 * 5
    assert view.seconds_to_limit == pytest.approx((200 * MiB - last) / 10_000, rel=0.01)
    assert seconds_to_limit(10.0, 1.0, 0) is None, "unlimited: no projection"
    assert seconds_to_limit(10.0, -1.0, 20) is None, "not growing: no projection"
    assert seconds_to_limit(30.0, 1.0, 20) == 0.0


def test_unlimited_or_not_growing_has_no_projection():
    s = Series(SETTINGS)
    feed(s, [100 * MiB + 10_000 * i * 5 for i in range(30)], limit=0)
    assert s.view().seconds_to_limit is None and s.view().threshold == "normal"
    flat = Series(SETTINGS)
    feed(flat, [100 * MiB] * 30, limit=200 * MiB)
    assert flat.view().seconds_to_limit is None and flat.view().trend == "stable"


def test_a_drop_resets_the_window_so_a_sawtooth_is_no_slope():
    """A process restarted inside the container (a GC, a worker recycled): the window starts over."""
    s = Series(SETTINGS)
    for cycle in range(4):  # 4 teeth: 100 -> 280 MiB in 45 s, then back to 100 MiB
        feed(s, [100 * MiB + i * 20 * MiB for i in range(10)], start=T0 + cycle * 50)
    assert len(s.points) == 10, "only the last tooth is in the window"
    assert s.previous is not None and s.previous.max_value == 280 * MiB
    assert s.watermark == 280 * MiB
    assert s.fit is not None and s.fit.slope == pytest.approx(4 * MiB, rel=0.01)
    gc = Series(SETTINGS)  # a collection that frees a tenth is noise, not a restart
    feed(gc, [100 * MiB + i * MiB for i in range(10)] + [99 * MiB] + [100 * MiB + i * MiB for i in range(10)])
    assert len(gc.points) == 21 and gc.previous is None


def test_a_new_run_starts_a_new_window_and_keeps_the_last_runs_evidence():
    s = Series(SETTINGS)
    feed(s, [10 * MiB + i * MiB for i in range(20)], run=T0 - 1, limit=64 * MiB)
    feed(s, [5 * MiB] * 3, start=T0 + 200, run=T0 + 150, limit=64 * MiB)
    assert len(s.points) == 3 and s.trend == "stable"
    assert s.watermark == 29 * MiB, "the watermark survives the restart"
    death = T0 + 100  # between the runs, engine clock
    before = s.evidence_before(death)
    assert before is not None and before.samples == 20 and before.trend == "growing"
    assert before.max_value == 29 * MiB and before.last_rise == 2 * MiB
    assert s.evidence_before(death + 1) is None, "the previous run lends its samples to one death only"


def test_evidence_of_the_current_run_stops_at_the_death():
    s = Series(SETTINGS)
    feed(s, [10 * MiB + i * MiB for i in range(20)], run=T0 - 1, limit=64 * MiB)
    summary = s.evidence_before(T0 + 5 * 9 + 0.5, tolerance=0.0)
    assert summary is not None and summary.samples == 10 and summary.last_value == 19 * MiB


def test_window_is_bounded_in_time_and_count():
    s = Series(MonitorSettings(window_seconds=60, max_samples=10))
    feed(s, [float(i) for i in range(100)], step=1.0)
    assert len(s.points) == 10 and s.points[-1][1] == 99.0
    t = Series(MonitorSettings(window_seconds=60, max_samples=1000))
    feed(t, [float(i) for i in range(100)], step=1.0)
    assert t.points[0][0] >= T0 + 99 - 60


def test_repeated_or_old_readings_are_ignored():
    s = Series(SETTINGS)
    s.observe(T0, 5.0, 0)
    s.observe(T0, 9.0, 0)
    s.observe(T0 - 5, 9.0, 0)
    assert list(s.points) == [(T0, 5.0)]


@pytest.mark.parametrize(("ratio", "to_limit", "state"), [
    (None, None, "normal"), (0.5, None, "normal"), (0.80, None, "warning"), (0.89, None, "warning"),
    (0.90, None, "critical"), (0.97, None, "oom_imminent"), (0.5, 120.0, "oom_imminent"),
    (0.5, 301.0, "normal"), (0.85, 600.0, "warning"),
])
def test_threshold_states(ratio, to_limit, state):
    assert threshold_state(ratio, to_limit, SETTINGS) == state


def test_monitor_is_bounded_and_forgets_what_is_gone():
    mon = MemoryMonitor(SETTINGS, max_series=3)
    for key in "abcd":
        mon.observe(key, T0, 1.0, 0)
    assert set(mon.series) == {"b", "c", "d"}
    mon.keep_only(["c"])
    assert set(mon.series) == {"c"}


def test_a_drop_just_before_the_death_is_the_death_itself():
    """The OOM killer took the leaking child; the container's first process lingered for one sample."""
    s = Series(SETTINGS)
    feed(s, [10 * MiB + i * 2 * MiB for i in range(20)], step=0.5, run=T0 - 1, limit=64 * MiB)
    s.observe(T0 + 10.0, 0.3 * MiB, 64 * MiB, T0 - 1)  # after the kill, before the die event
    evidence = s.evidence_before(T0 + 10.2)
    assert evidence is not None and evidence.samples == 20 and evidence.max_value == 48 * MiB
    later = Series(SETTINGS)  # a drop long before the death: the samples since then are the evidence
    feed(later, [10 * MiB + i * 2 * MiB for i in range(20)], step=0.5, run=T0 - 1, limit=64 * MiB)
    feed(later, [5 * MiB] * 10, step=0.5, start=T0 + 10, run=T0 - 1, limit=64 * MiB)
    assert later.evidence_before(T0 + 16).samples == 10


def test_points_keep_the_newest_window_as_a_deque_would():
    """The window's compact store behaves as the deque of tuples it replaced, through compactions."""
    points, reference = Points(maxlen=100), deque(maxlen=100)
    rng = random.Random(7)
    for i in range(2000):
        if rng.random() < 0.3 and reference:
            points.popleft()
            reference.popleft()
        else:
            points.append((float(i), rng.random()))
            reference.append((float(i), points[-1][1]))
        assert len(points) == len(reference)
        if reference and i % 97 == 0:
            assert list(points) == list(reference) and points[0] == reference[0] and points[-2:] == list(reference)[-2:]
    points.clear()
    assert not points and list(points) == []
    with pytest.raises(IndexError):
        points.popleft()

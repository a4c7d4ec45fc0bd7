"""The memory monitor: a bounded window of samples per container or process group, and what it says.

Per series it keeps the samples of the current run inside ``window_seconds`` (and at most
``max_samples``), the high watermark across runs, and a least-squares fit over the window. From the
fit: the trend (growing when the slope is at least ``min_slope``, shrinking below its negative,
else stable), the projected seconds until the limit (only while growing under a limit), and the
threshold state. A run ends when the container restarts (its start time changes) or when the value
drops by more than ``reset_drop_ratio`` of itself (a process restarted inside, a big free): the
window starts over, so a sawtooth never reads as a slope. The last run's summary is kept, so a
death seen after the restart is still judged on the samples before it.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import overload

TRENDS = ("growing", "stable", "shrinking")
#: Samples after an in-run drop that still count as the aftermath of a death that follows.
JUST_AFTER_RESET = 2
THRESHOLD_STATES = ("normal", "warning", "critical", "oom_imminent")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Working set over limit at which memory is a warning, critical, or an OOM kill imminent
    (``insights:`` ``*_ratio``): one set for the monitor, the health scores and the host alike."""

    warning: float = 0.80
    critical: float = 0.90
    oom_imminent: float = 0.97

    def state(self, ratio: float) -> str:
        """normal, warning, critical or oom_imminent for this ratio alone."""
        for name in ("oom_imminent", "critical", "warning"):
            if ratio >= getattr(self, name):
                return name
        return "normal"

    def level(self, state: str) -> float | None:
        """The ratio at which ``state`` starts; None for normal."""
        return getattr(self, state) if state in THRESHOLD_STATES[1:] else None


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """The knobs of the monitor (``insights:`` in the config)."""

    window_seconds: float = 600.0
    min_samples: int = 5
    min_slope: float = 8192.0
    max_samples: int = 720
    reset_drop_ratio: float = 0.5
    thresholds: Thresholds = field(default_factory=Thresholds)
    imminent_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Fit:
    """A least-squares line through a window: slope per second and the fitted value at its end."""

    slope: float
    value_at_end: float
    span: float
    samples: int


def least_squares(points: Sequence[tuple[float, float]]) -> Fit | None:
    """The least-squares line through ``(t, value)`` points; None for fewer than 2 distinct times.

    Times are taken relative to the first point, so Unix timestamps lose no precision.
    """
    n = len(points)
    if n < 2:
        return None
    t0 = points[0][0]
    sum_t = sum_v = sum_tt = sum_tv = 0.0
    for t, v in points:
        dt = t - t0
        sum_t += dt
        sum_v += v
        sum_tt += dt * dt
        sum_tv += dt * v
    var = sum_tt - sum_t * sum_t / n
    span = points[-1][0] - t0
    if var <= 1e-12 or span <= 0:
        return None
    slope = (sum_tv - sum_t * sum_v / n) / var
    intercept = (sum_v - slope * sum_t) / n
    return Fit(slope, intercept + slope * span, span, n)


def trend_of(fit: Fit | None, settings: MonitorSettings) -> str:
    """growing, stable or shrinking; stable until the window holds ``min_samples``."""
    if fit is None or fit.samples < settings.min_samples:
        return "stable"
    if fit.slope >= settings.min_slope:
        return "growing"
    if fit.slope <= -settings.min_slope:
        return "shrinking"
    return "stable"


def seconds_to_limit(value: float, slope: float, limit: float) -> float | None:
    """Seconds until ``value`` growing at ``slope`` reaches ``limit``; None if unlimited or not growing."""
    if limit <= 0 or slope <= 0 or not math.isfinite(slope):
        return None
    return max(0.0, (limit - value) / slope)


def threshold_state(ratio: float | None, to_limit: float | None, settings: MonitorSettings) -> str:
    """normal, warning, critical or oom_imminent (the ratio, or the limit projected within minutes)."""
    if ratio is None:
        return "normal"
    if to_limit is not None and to_limit <= settings.imminent_seconds:
        return "oom_imminent"
    return settings.thresholds.state(ratio)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one run's samples said, up to a moment: the evidence a death is judged on."""

    run: float
    samples: int
    first_at: float | None
    last_at: float | None
    last_value: float | None
    max_value: float | None
    limit: float
    #: The rise between the last sample and the one two before it (0 with fewer samples) ...
    last_rise: float
    #: ... the seconds between those two samples, and the slope of the samples before the last.
    last_rise_seconds: float
    slope_before_last: float
    trend: str
    slope: float
    #: How long the trend has said growing without a break, up to the last sample.
    growing_seconds: float

    @property
    def last_ratio(self) -> float | None:
        return self.last_value / self.limit if self.limit > 0 and self.last_value is not None else None

    @property
    def max_ratio(self) -> float | None:
        return self.max_value / self.limit if self.limit > 0 and self.max_value is not None else None


@dataclass(frozen=True, slots=True)
class MemoryView:
    """The monitor's figures for one series now."""

    value: float | None
    limit: float
    watermark: float
    trend: str
    slope: float
    seconds_to_limit: float | None
    threshold: str

    @property
    def ratio(self) -> float | None:
        return self.value / self.limit if self.limit > 0 and self.value is not None else None


class Points(Sequence[tuple[float, float]]):
    """A window of ``(time, value)`` samples, oldest first, at most ``maxlen`` (the oldest go first).

    Kept in two arrays of doubles: 16 bytes a sample where a deque of tuples took about 110, which
    for a ten-minute window of 100 containers sampled every 5 s was 1.3 MB (issue 14).
    """

    __slots__ = ("_start", "_times", "_values", "maxlen")

    #: Dropped samples are removed from the arrays' front once there are at least this many.
    _COMPACT = 64

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._times, self._values = array("d"), array("d")
        self._start = 0

    def __len__(self) -> int:
        return len(self._times) - self._start

    @overload
    def __getitem__(self, index: int) -> tuple[float, float]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[float, float]]: ...

    def __getitem__(self, index: int | slice) -> tuple[float, float] | list[tuple[float, float]]:
        if isinstance(index, slice):
            return list(self)[index]
        n = len(self)
        if not -n <= index < n:
            raise IndexError("Points index out of range")
        i = self._start + (index % n)
        return self._times[i], self._values[i]

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return zip(islice(self._times, self._start, None), islice(self._values, self._start, None), strict=True)

    def append(self, point: tuple[float, float]) -> None:
        self._times.append(point[0])
        self._values.append(point[1])
        if len(self) > self.maxlen:
            self.popleft()

    def popleft(self) -> None:
        if not len(self):
            raise IndexError("pop from empty Points")
        self._start += 1
        if self._start >= self._COMPACT and self._start * 2 >= len(self._times):
            del self._times[:self._start], self._values[:self._start]
            self._start = 0

    def clear(self) -> None:
        del self._times[:], self._values[:]
        self._start = 0


class Series:
    """One container's or group's samples (see the module docstring)."""

    __slots__ = ("fit", "growing_since", "limit", "points", "previous", "previous_claimed", "run", "run_max",
                 "settings", "trend", "value", "watermark")

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.points = Points(settings.max_samples)
        self.run = 0.0
        self.limit = 0.0
        self.watermark = 0.0
        self.fit: Fit | None = None
        self.trend = "stable"
        self.growing_since: float | None = None
        self.run_max: float | None = None
        self.previous: RunSummary | None = None
        self.previous_claimed = False
        self.value: float | None = None

    def observe(self, at: float, value: float | None, limit: float, run: float = 0.0) -> None:
        """Add one sample (None: not running, nothing to add) of run ``run``."""
        self.limit = limit
        if run != self.run:
            self._new_run(run)
        self.value = value
        if value is None:
            return
        if self.points and at <= self.points[-1][0]:
            return  # a repeated or out-of-order reading
        last = self.points[-1][1] if self.points else None
        if last is not None and last > 0 and value < last * (1 - self.settings.reset_drop_ratio):
            self._new_run(self.run)
        self.watermark = max(self.watermark, value)
        self.run_max = value if self.run_max is None else max(self.run_max, value)
        points = self.points
        points.append((at, value))
        horizon = at - self.settings.window_seconds
        while points and points[0][0] < horizon:
            points.popleft()
        self.fit = least_squares(points)
        self.trend = trend_of(self.fit, self.settings)
        if self.trend == "growing":
            if self.growing_since is None:
                self.growing_since = points[0][0]
        else:
            self.growing_since = None

    def _new_run(self, run: float) -> None:
        if self.points:
            self.previous = self.summary()
            self.previous_claimed = False
        self.run = run
        self.points.clear()
        self.fit = None
        self.trend = "stable"
        self.growing_since = None
        self.run_max = None

    def summary(self, until: float | None = None) -> RunSummary:
        """The current run up to ``until`` (all of it when None)."""
        points = self.points
        if until is not None and points and points[-1][0] > until:
            kept = [p for p in points if p[0] <= until]
            fit = least_squares(kept)
            trend = trend_of(fit, self.settings)
            growing = (kept[-1][0] - max(kept[0][0], self.growing_since or kept[0][0])
                       if kept and trend == "growing" and self.growing_since is not None else 0.0)
            return self._summary(kept, fit, trend, growing, max((v for _, v in kept), default=None))
        growing = points[-1][0] - self.growing_since if points and self.growing_since is not None else 0.0
        return self._summary(points, self.fit, self.trend, growing, self.run_max)

    def _summary(self, points: Sequence[tuple[float, float]], fit: Fit | None, trend: str, growing: float,
                 run_max: float | None) -> RunSummary:
        last = points[-1] if points else None
        back = points[-3] if len(points) >= 3 else (points[0] if points else None)
        rise = last[1] - back[1] if last and back else 0.0
        before = least_squares(list(points)[:-1]) if len(points) >= 3 else None
        return RunSummary(run=self.run, samples=len(points), first_at=points[0][0] if points else None,
                          last_at=last[0] if last else None, last_value=last[1] if last else None,
                          max_value=run_max, limit=self.limit, last_rise=rise,
                          last_rise_seconds=last[0] - back[0] if last and back else 0.0,
                          slope_before_last=before.slope if before else 0.0, trend=trend,
                          slope=fit.slope if fit else 0.0, growing_seconds=max(0.0, growing))

    def evidence_before(self, at: float, tolerance: float = 1.0) -> RunSummary | None:
        """The samples of the run a death at ``at`` (engine time) ended, or None if none were taken.

        The current run if it was under way at ``at`` (its start time, from the same engine clock,
        is earlier; the samples before an in-run drop if that drop came at most two samples before
        the death); else the run before it, once: a crash loop faster than the sampling leaves the
        runs in between without evidence rather than lending them another run's samples.
        """
        prev = self.previous
        if self.run == 0.0 or self.run < at:
            in_run_reset = prev is not None and prev.run == self.run
            before = sum(1 for t, _ in self.points if t <= at + tolerance)
            # A drop just before the death is the death itself (the OOM killer took the big process
            # while the container's first process lingered): judge on the samples before the drop.
            if before > (JUST_AFTER_RESET if in_run_reset else 0):
                return self.summary(until=at + tolerance)
            return prev if in_run_reset else None
        if prev is not None and prev.run < at and not self.previous_claimed:
            self.previous_claimed = True
            return prev
        return None

    def view(self) -> MemoryView:
        slope = self.fit.slope if self.fit is not None else 0.0
        to_limit = None
        if self.trend == "growing" and self.fit is not None and self.value is not None:
            to_limit = seconds_to_limit(max(self.fit.value_at_end, self.value), self.fit.slope, self.limit)
        ratio = self.value / self.limit if self.limit > 0 and self.value is not None else None
        return MemoryView(self.value, self.limit, self.watermark, self.trend, slope, to_limit,
                          threshold_state(ratio, to_limit, self.settings))


class MemoryMonitor:
    """Series by key (a container id, a group name), bounded by ``max_series``."""

    def __init__(self, settings: MonitorSettings, max_series: int = 10_000) -> None:
        self.settings = settings
        self.max_series = max_series
        self.series: dict[Hashable, Series] = {}

    def observe(self, key: Hashable, at: float, value: float | None, limit: float, run: float = 0.0) -> Series:
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= self.max_series:
                self.series.pop(next(iter(self.series)))  # the longest-known one goes first
            series = self.series[key] = Series(self.settings)
        series.observe(at, value, limit, run)
        return series

    def get(self, key: Hashable) -> Series | None:
        return self.series.get(key)

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget series no longer seen (removed containers, groups gone from the config)."""
        wanted = set(keys)
        for key in [k for k in self.series if k not in wanted]:
            del self.series[key]

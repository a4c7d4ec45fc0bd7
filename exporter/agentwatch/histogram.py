"""One cumulative histogram for every part that keeps its own (loop self-metrics, probes, scaler,
instrumentation): fixed buckets from the catalog, thread-safe, no global registry."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence


class Histogram:
    """A cumulative histogram with fixed buckets; thread-safe, no registry."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = [float(b) for b in buckets]
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.bounds, value)] += 1
            self._sum += value

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def samples(self) -> tuple[list[tuple[str, float]], float]:
        """(cumulative buckets as (le, count) including +Inf, sum), as the metric families want them."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, running = [], 0
        for bound, count in zip([*self.bounds, float("inf")], counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out, total

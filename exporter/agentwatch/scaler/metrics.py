"""The scaler's own metrics, kept as plain counters and rendered from the catalog at scrape time."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agentwatch import catalog


class Histogram:
    """Cumulative buckets from the catalog's bucket list."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
        return out


class ScalerMetrics(Collector):
    """Counters by label values; ``cooldowns`` is called at scrape time for the gauge."""

    def __init__(self, cooldowns: Callable[[], dict[tuple[str, str], float]] = dict) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        self.histograms: dict[str, dict[tuple[str, ...], Histogram]] = defaultdict(dict)
        self.cooldowns = cooldowns

    def inc(self, name: str, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self.counters[name][labels] += amount

    def observe(self, name: str, value: float, *labels: str) -> None:
        with self._lock:
            hist = self.histograms[name].get(labels)
            if hist is None:
                hist = self.histograms[name][labels] = Histogram(catalog.spec(name).buckets or ())
            hist.observe(value)

    def value(self, name: str, *labels: str) -> float:
        with self._lock:
            return self.counters[name].get(labels, 0.0)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            for spec in catalog.SCALER:
                fam = spec.family()
                if spec.kind == "counter":
                    for labels, value in sorted(self.counters[spec.name].items()):
                        fam.add_metric(list(labels), value)
                elif spec.kind == "histogram":
                    for labels, hist in sorted(self.histograms[spec.name].items()):
                        fam.add_metric(list(labels), hist.cumulative(), hist.sum)
                elif spec.name == "agentwatch_scaler_cooldown_remaining_seconds":
                    for (target, action), left in sorted(self.cooldowns().items()):
                        fam.add_metric([target, action], left)
                yield fam


def registry(metrics: ScalerMetrics) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics)
    return reg

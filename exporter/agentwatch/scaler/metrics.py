"""The scaler's own metrics, kept as plain counters and rendered from the catalog at scrape time."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agentwatch import catalog
from agentwatch.histogram import Histogram


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
                        fam.add_metric(list(labels), *hist.samples())
                elif spec.name == "agentwatch_scaler_cooldown_remaining_seconds":
                    for (target, action), left in sorted(self.cooldowns().items()):
                        fam.add_metric([target, action], left)
                yield fam


def registry(metrics: ScalerMetrics) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics)
    return reg

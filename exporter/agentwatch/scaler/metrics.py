"""The scaler's own metrics: prometheus_client counters and histograms in a private registry, plus
the cooldown gauge, read from the executor at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agentwatch import catalog

COOLDOWN = "agentwatch_scaler_cooldown_remaining_seconds"


class _Cooldowns(Collector):
    """The cooldown gauge: remaining seconds per (target, action), asked for at scrape time."""

    def __init__(self, owner: ScalerMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        fam = catalog.gauge(COOLDOWN)
        for (target, action), left in sorted(self._owner.cooldowns().items()):
            fam.add_metric([target, action], left)
        yield fam


class ScalerMetrics:
    """Counters and histograms by label values; ``cooldowns`` is called at scrape time for the gauge."""

    def __init__(self, cooldowns: Callable[[], dict[tuple[str, str], float]] = dict) -> None:
        self.cooldowns = cooldowns
        self.registry = catalog.PrivateRegistry()
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        for spec in catalog.SCALER:  # registered in catalog order, so /metrics lists them that way
            if spec.kind == "counter":
                self._counters[spec.name] = catalog.metric(spec.name, self.registry, Counter)
            elif spec.kind == "histogram":
                self._histograms[spec.name] = catalog.metric(spec.name, self.registry, Histogram)
            elif spec.name == COOLDOWN:
                self.registry.register(_Cooldowns(self))
            else:
                raise TypeError(f"scaler metric {spec.name!r} ({spec.kind}) has no source")

    def inc(self, name: str, *labels: str, amount: float = 1.0) -> None:
        self._counters[name].labels(*labels).inc(amount)

    def observe(self, name: str, value: float, *labels: str) -> None:
        hist = self._histograms[name]
        (hist.labels(*labels) if labels else hist).observe(value)

    def value(self, name: str, *labels: str) -> float:
        """A counter's current value (0 if never counted)."""
        spec = catalog.spec(name)
        found = self.registry.get_sample_value(name, dict(zip(spec.labels, labels, strict=True)))
        return found or 0.0


def registry(metrics: ScalerMetrics) -> CollectorRegistry:
    """The registry the scaler's /metrics serves."""
    return metrics.registry

"""Parse a /metrics exposition with prometheus_client's own parser, into samples one can ask for by name and labels.

Tests, the benchmark and the demo read values this way instead of matching text, so a change of
format (order, escaping, OpenMetrics suffixes) cannot make them read the wrong line.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Scrape:
    """Samples by name; ``value`` and ``series`` filter by labels."""

    samples: list[tuple[str, dict[str, str], float]]
    types: dict[str, str]
    helps: dict[str, str]

    @classmethod
    def parse(cls, text: str, openmetrics: bool = False) -> Scrape:
        """Parse a body in the classic text format, or in OpenMetrics."""
        families = (openmetrics_families if openmetrics else text_string_to_metric_families)(text)
        samples, types, helps = [], {}, {}
        for fam in families:
            types[fam.name] = fam.type
            helps[fam.name] = fam.documentation
            for s in fam.samples:
                samples.append((s.name, dict(s.labels), s.value))
        return cls(samples, types, helps)

    def series(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [(lbl, v) for n, lbl, v in self.samples
                if n == name and all(lbl.get(k) == val for k, val in labels.items())]

    def value(self, name: str, **labels: str) -> float | None:
        """The single matching sample's value; None if absent; error if ambiguous."""
        found = self.series(name, **labels)
        if not found:
            return None
        if len(found) > 1:
            raise AssertionError(f"{name}{labels} matches {len(found)} series: {found[:5]}")
        return found[0][1]

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}

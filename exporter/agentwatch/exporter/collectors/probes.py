"""PLACEHOLDER: to be implemented (issue 4). Returns nothing yet."""

from __future__ import annotations

from prometheus_client.core import Metric

from agentwatch.config import ExporterConfig
from agentwatch.exporter.collectors.base import Collector


class ProbeCollector(Collector):
    name = "probes"

    def __init__(self, config: ExporterConfig) -> None:
        super().__init__(timeout=30.0)
        self.config = config

    async def collect(self) -> list[Metric]:
        return []

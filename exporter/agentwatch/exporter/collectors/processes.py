"""PLACEHOLDER: to be implemented (see the issue). Returns nothing yet."""

from __future__ import annotations

from prometheus_client.core import Metric

from agentwatch.config import ProcessesConfig
from agentwatch.exporter.collectors.base import Collector


class ProcessCollector(Collector):
    name = "processes"

    def __init__(self, config: ProcessesConfig) -> None:
        super().__init__(timeout=config.timeout_seconds if hasattr(config, "timeout_seconds") else 4.0)
        self.config = config

    async def collect(self) -> list[Metric]:
        return []

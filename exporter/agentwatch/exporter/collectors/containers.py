"""PLACEHOLDER: to be implemented (see the issue). Returns nothing yet."""

from __future__ import annotations

from prometheus_client.core import Metric

from agentwatch.config import DockerConfig
from agentwatch.exporter.collectors.base import Collector


class ContainerCollector(Collector):
    name = "containers"

    def __init__(self, config: DockerConfig) -> None:
        super().__init__(timeout=config.timeout_seconds if hasattr(config, "timeout_seconds") else 4.0)
        self.config = config

    async def collect(self) -> list[Metric]:
        return []

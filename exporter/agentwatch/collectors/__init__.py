"""Where collectors are registered: one per source, chosen by the config."""

from __future__ import annotations

from agentwatch.collectors.base import Collector
from agentwatch.config import ExporterConfig


def build_collectors(config: ExporterConfig) -> list[Collector]:
    """The collectors the config enables, in a stable order."""
    out: list[Collector] = []
    if config.docker.enabled:
        from agentwatch.collectors.containers import ContainerCollector

        out.append(ContainerCollector(config.docker))
        if config.docker.events:
            from agentwatch.collectors.docker_events import DockerEventsCollector

            out.append(DockerEventsCollector(config.docker))
    if config.processes.enabled:
        from agentwatch.collectors.processes import ProcessCollector

        out.append(ProcessCollector(config.processes))
    if config.probes:
        from agentwatch.collectors.probes import ProbeCollector

        out.append(ProbeCollector(config))
    return out

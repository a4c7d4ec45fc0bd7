"""Where collectors are registered: one per source, chosen by the config."""

from __future__ import annotations

from agentwatch.collectors.base import Collector
from agentwatch.config import ExporterConfig
from agentwatch.engine_changes import ChangeFeed
from agentwatch.readings import Readings


def build_collectors(config: ExporterConfig) -> list[Collector]:
    """The collectors the config enables, in a stable order.

    The insights collector reads what the container, event and process collectors publish on one
    shared ``Readings`` board, and the containers collector what the event stream saw change on a
    ``ChangeFeed`` (none of them imports another).
    """
    out: list[Collector] = []
    readings = Readings() if config.insights.enabled else None
    if config.docker.enabled:
        from agentwatch.collectors.containers import ContainerCollector

        # the event stream tells the containers collector which cached inspects are still right
        changes = ChangeFeed() if config.docker.events else None
        out.append(ContainerCollector(config.docker, readings=readings, changes=changes))
        if config.docker.events:
            from agentwatch.collectors.docker_events import DockerEventsCollector

            out.append(DockerEventsCollector(config.docker, readings=readings, changes=changes))
    if config.processes.enabled:
        from agentwatch.collectors.processes import ProcessCollector

        out.append(ProcessCollector(config.processes, readings=readings))
    if config.probes:
        from agentwatch.collectors.probes import ProbeCollector

        out.append(ProbeCollector(config))
    if readings is not None and (config.docker.enabled or config.processes.enabled):
        from agentwatch.collectors.insights import InsightsCollector

        out.append(InsightsCollector(config, readings))
    return out

"""Swarm services on a separate private engine: scale replicas and update memory limits for real."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from agentwatch.local.dockerd import private_engine
from agentwatch.local.process import free_port, wait_for
from agentwatch.scaler.executor import Scaler
from tests.scaler.helpers import alert, config

pytestmark = pytest.mark.docker

MiB = 1024 * 1024


GWBRIDGE = Path("/sys/class/net/docker_gwbridge")


@pytest.fixture(scope="module")
def swarm():
    """Its own dockerd (not the shared one), in a single-node swarm bound to loopback; left and stopped after.

    A swarm engine creates the ``docker_gwbridge`` interface in the host's network namespace and does not
    remove it when it stops: the fixture removes it too, unless it was there before (someone else's).
    """
    had_gwbridge = GWBRIDGE.exists()
    try:
        yield from _swarm_engine()
    finally:
        if not had_gwbridge and GWBRIDGE.exists():
            subprocess.run(["ip", "link", "delete", "docker_gwbridge"], capture_output=True, check=False)


def _swarm_engine():
    with private_engine() as engine:
        assert engine.client is not None
        engine.client.swarm.init(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{free_port()}")
        try:
            yield engine
        finally:
            with contextlib.suppress(Exception):
                for service in engine.client.services.list():
                    service.remove()
            with contextlib.suppress(Exception):
                engine.client.swarm.leave(force=True)


def running_tasks(service) -> int:
    return sum(1 for t in service.tasks() if t["Status"]["State"] == "running" and t["DesiredState"] == "running")


async def test_scale_and_resize_a_swarm_service(tmp_path, swarm):
    from docker.types import Resources, ServiceMode

    client = swarm.client
    service = client.services.create("agent:local", ["sleep", "300"], name="agents", mode=ServiceMode("replicated", 1),
                                     resources=Resources(mem_limit=64 * MiB, cpu_limit=500_000_000),
                                     env=["ROLE=agent"])
    wait_for(lambda: running_tasks(client.services.get(service.id)) == 1, 60, what="first task running")
    cfg = config(tmp_path, dry_run=False, docker={"host": swarm.host},
                 targets={"agents": {"kind": "swarm_service", "service": "agents", "min_replicas": 1,
                                     "max_replicas": 2, "min_memory_bytes": "32MiB", "max_memory_bytes": "96MiB"}},
                 rules=[{"name": "up", "alertname": "Backlog", "action": "scale_up", "target": "agents",
                         "cooldown_seconds": 0},
                        {"name": "mem", "alertname": "Near", "action": "resize_memory", "target": "agents",
                         "factor": 2, "cooldown_seconds": 0}])
    scaler = Scaler(cfg)
    await scaler.start()
    try:
        [d] = await scaler.handle([alert("Backlog", starts="1")])
        await scaler.idle(60)
        assert (d.result, d.current, d.desired) == ("success", 1, 2), d
        spec = client.services.get(service.id).attrs["Spec"]
        assert spec["Mode"]["Replicated"]["Replicas"] == 2
        wait_for(lambda: running_tasks(client.services.get(service.id)) == 2, 60, what="two tasks running")
        [d] = await scaler.handle([alert("Backlog", starts="2")])
        assert d.reason == "bounds"

        [d] = await scaler.handle([alert("Near")])
        await scaler.idle(60)
        assert (d.result, d.desired) == ("success", 96 * MiB), "factor 2 of 64 MiB, capped at 96 MiB"
        spec = client.services.get(service.id).attrs["Spec"]
        limits = spec["TaskTemplate"]["Resources"]["Limits"]
        assert limits["MemoryBytes"] == 96 * MiB
        assert limits["NanoCPUs"] == 500_000_000, "other limits are kept"
        assert spec["TaskTemplate"]["ContainerSpec"]["Command"] == ["sleep", "300"]
        assert "ROLE=agent" in spec["TaskTemplate"]["ContainerSpec"]["Env"]
        assert spec["Mode"]["Replicated"]["Replicas"] == 2
    finally:
        await scaler.stop()

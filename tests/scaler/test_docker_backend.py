"""The docker backend against the real private engine: scale a compose service, resize, restart."""

from __future__ import annotations

import pytest

from agentwatch.local.process import wait_for
from agentwatch.scaler.executor import Scaler
from tests.scaler.helpers import alert, config

pytestmark = pytest.mark.docker

LABELS = {"com.docker.compose.project": "aw", "com.docker.compose.service": "agent",
          "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False",
          "com.docker.compose.config-hash": "abc123", "team": "agents"}


def service_containers(client):
    return sorted(client.containers.list(all=True, filters={"label": ["com.docker.compose.project=aw",
                                                                     "com.docker.compose.service=agent"]}),
                  key=lambda c: int(c.labels["com.docker.compose.container-number"]))


def make_scaler(tmp_path, dockerd, rules, **extra) -> Scaler:
    cfg = config(tmp_path, dry_run=False, docker={"host": dockerd.host, "max_workers": 2},
                 retry={"attempts": 2, "backoff_seconds": 0.1},
                 targets={"agents": {"kind": "compose_service", "project": "aw", "service": "agent",
                                     "min_replicas": 1, "max_replicas": 3},
                          "box": {"kind": "container", "container": "aw-box", "min_memory_bytes": "32MiB",
                                  "max_memory_bytes": "256MiB"}},
                 rules=rules, **extra)
    return Scaler(cfg)


async def run(scaler: Scaler, *alerts):
    decisions = await scaler.handle(list(alerts))
    await scaler.idle(60)
    return decisions


async def test_scale_up_copies_the_service_and_scale_down_removes_within_bounds(tmp_path, dockerd, docker_client):
    docker_client.containers.run("agent:local", ["sleep", "300"], name="aw-agent-1", labels=LABELS, detach=True,
                                 network_mode="none", mem_limit="64m", environment={"ROLE": "agent"},
                                 restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
    scaler = make_scaler(tmp_path, dockerd, [
        {"name": "up", "alertname": "Backlog", "action": "scale_up", "target": "agents", "cooldown_seconds": 0},
        {"name": "down", "alertname": "Idle", "action": "scale_down", "target": "agents", "cooldown_seconds": 0}])
    await scaler.start()
    try:
        [d] = await run(scaler, alert("Backlog", starts="s1"))
        assert (d.outcome, d.result, d.current, d.desired) == ("act", "success", 1, 2), d
        containers = service_containers(docker_client)
        assert [c.name for c in containers] == ["aw-agent-1", "aw-agent-2"]
        new = containers[1]
        assert new.labels == {**LABELS, "com.docker.compose.container-number": "2"}
        assert new.attrs["Config"]["Cmd"] == ["sleep", "300"]
        assert "ROLE=agent" in new.attrs["Config"]["Env"]
        assert new.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert new.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        assert new.attrs["HostConfig"]["NetworkMode"] == "none"
        wait_for(lambda: docker_client.containers.get(new.id).status == "running", 20, what="copy running")

        await run(scaler, alert("Backlog", starts="s2"))
        [d] = await run(scaler, alert("Backlog", starts="s3"))
        assert d.reason == "bounds" and len(service_containers(docker_client)) == 3, "max_replicas holds"

        [d] = await run(scaler, alert("Idle", starts="s4"))
        assert (d.result, d.desired) == ("success", 2)
        assert [c.name for c in service_containers(docker_client)] == ["aw-agent-1", "aw-agent-2"]
        await run(scaler, alert("Idle", starts="s5"))
        [d] = await run(scaler, alert("Idle", starts="s6"))
        assert d.reason == "bounds" and len(service_containers(docker_client)) == 1, "min_replicas holds"
    finally:
        await scaler.stop()


async def test_resize_memory_and_restart(tmp_path, dockerd, docker_client):
    box = docker_client.containers.run("agent:local", ["sleep", "300"], name="aw-box", detach=True,
                                       network_mode="none", mem_limit="64m", memswap_limit="64m")
    scaler = make_scaler(tmp_path, dockerd, [
        {"name": "more", "alertname": "Near", "action": "resize_memory", "target": "box", "factor": 2},
        {"name": "kick", "alertname": "Stuck", "action": "restart", "target": "box"}])
    await scaler.start()
    try:
        [d] = await run(scaler, alert("Near"))
        assert (d.result, d.desired) == ("success", 128 * 1024 * 1024), d
        box.reload()
        assert box.attrs["HostConfig"]["Memory"] == 128 * 1024 * 1024
        assert box.attrs["HostConfig"]["MemorySwap"] == 128 * 1024 * 1024, "no swap before, none after"

        started = box.attrs["State"]["StartedAt"]
        [d] = await run(scaler, alert("Stuck"))
        assert d.result == "success", d
        box.reload()
        assert box.attrs["State"]["StartedAt"] != started and box.status == "running"
    finally:
        await scaler.stop()


async def test_restart_of_a_service_restarts_only_its_stuck_containers(tmp_path, dockerd, docker_client):
    healthy = docker_client.containers.run("agent:local", ["sleep", "300"], name="aw-agent-1", labels=LABELS,
                                           detach=True, network_mode="none")
    script = "if [ -f /tmp/ran ]; then sleep 300; else echo x > /tmp/ran; exit 137; fi"
    stuck = docker_client.containers.run("agent:local", ["sh", "-c", script], name="aw-agent-2", detach=True,
                                         labels={**LABELS, "com.docker.compose.container-number": "2"},
                                         network_mode="none")
    wait_for(lambda: docker_client.containers.get(stuck.id).status == "exited", 20, what="stuck container exit")
    healthy_started = docker_client.containers.get(healthy.id).attrs["State"]["StartedAt"]
    scaler = make_scaler(tmp_path, dockerd, [
        {"name": "kick", "alertname": "Stuck", "action": "restart", "target": "agents"}])
    await scaler.start()
    try:
        [d] = await run(scaler, alert("Stuck"))
        assert d.result == "success", d
        wait_for(lambda: docker_client.containers.get(stuck.id).status == "running", 20, what="restarted")
        assert docker_client.containers.get(healthy.id).attrs["State"]["StartedAt"] == healthy_started
    finally:
        await scaler.stop()


async def test_engine_errors_are_retried_then_recorded_as_failed(tmp_path, dockerd, docker_client):
    scaler = make_scaler(tmp_path, dockerd, [
        {"name": "kick", "alertname": "Stuck", "action": "restart", "target": "box"}])
    await scaler.start()
    try:
        [d] = await run(scaler, alert("Stuck"))  # there is no aw-box container
        assert (d.result, d.attempts) == ("failure", 2)
        assert d.error.startswith("not found")
        results = [r for r in scaler.audit.read() if r["event"] == "result"]
        assert results[-1]["result"] == "failure" and results[-1]["error"] == d.error
    finally:
        await scaler.stop()

"""End to end on a real three-node Docker Swarm: discovery per node, an alert naming the node, the scaler.

1. Prometheus (a task of the shipped stack) discovers one exporter per node with
   dockerswarm_sd_configs, and every series carries the node's hostname in `node`.
2. A service OOM-looping on node 2 raises AgentServiceCrashLoopOnNode naming node 2.
3. The scaler, given that alert, raises the service's memory: visible in `docker service inspect`.
   It also scales a service with large tasks no further than the nodes' reported memory holds,
   says so in its decision, and Swarm runs every task it placed.

Figures (nodes, join to first scrape, series per node) go to bench/results/scaleout.md.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from docker.types import Resources, RestartPolicy, ServiceMode

from agentwatch.local.images import build_stack_images
from agentwatch.local.netns import host_interfaces, leftovers
from agentwatch.local.process import wait_for
from agentwatch.local.swarm import PrivateSwarm
from agentwatch.scaler.executor import Scaler
from agentwatch.scaler.model import Alert
from tests.scaleout.swarm_stack import INTERVAL, ROOT, SwarmStack, first_scrape_after, stack_copy
from tests.scaler.helpers import config

pytestmark = [pytest.mark.slow, pytest.mark.docker]

NODES = 3
MiB = 1024 * 1024
GiB = 1024 * MiB
RESULTS = ROOT / "bench" / "results" / "scaleout.md"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Two nodes joined, the stack deployed, then a third node joined (timed to its first scrape)."""
    directory = stack_copy(tmp_path_factory.mktemp("swarm"))
    swarm = PrivateSwarm(size=NODES)
    network_id = swarm.network.id
    started = time.monotonic()
    try:
        swarm.start(join=False)
        manager, second, third = swarm.nodes
        swarm.join(second)
        images = build_stack_images(manager.docker, ROOT)
        swarm.copy_image(images.agentwatch, manager, [second, third])  # no registry: docker save | load
        for node in swarm.nodes:
            node.import_busybox()
        deployed = SwarmStack(swarm, images, directory)
        deployed.deploy()
        deployed.wait_for_targets({manager.hostname, second.hostname})
        swarm.join(third)
        deployed.figures["join_to_first_scrape_s"] = first_scrape_after(
            deployed, third.hostname, swarm.joined_at[third.hostname])
        deployed.figures["setup_s"] = round(time.monotonic() - started)
        deployed.figures["image_seconds"] = images.seconds
        yield deployed
        write_results(deployed)
    finally:
        swarm.close()
    assert not leftovers(network_id), "a namespace of the test network is left"
    assert not [i for i in host_interfaces() if i.startswith(f"aw{network_id}")], "an interface is left"


def test_prometheus_discovers_one_exporter_per_node(stack):
    hostnames = {node.hostname for node in stack.swarm.nodes}
    targets = stack.wait_for_targets(hostnames, timeout=60)
    assert len(targets) == NODES
    for target in targets:
        labels = target["labels"]
        assert labels["instance"].startswith("10.214.") and labels["instance"].endswith(":9847"), labels
    series = {r["metric"]["node"]: int(float(r["value"][1]))
              for r in stack.query('count by (node) ({job="agentwatch"})')}
    assert set(series) == hostnames, "every node's series carry its hostname in `node`"
    assert all(n > 50 for n in series.values()), series
    stack.figures["series_per_node"] = series
    engines = {r["metric"]["node"] for r in stack.query('agentwatch_docker_up{job="agentwatch"} == 1')}
    assert engines == hostnames, "each exporter reaches its own node's engine through /var/run/docker.sock"
    assert stack.figures["join_to_first_scrape_s"] > 0


def _alert(found: dict) -> Alert:
    labels = found["labels"]
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    return Alert("firing", labels, found.get("annotations", {}), found.get("activeAt", ""), "", fingerprint)


async def test_an_oom_loop_on_node_2_is_named_and_the_scaler_gives_it_memory(stack, tmp_path):
    client = stack.swarm.manager.docker
    node2 = stack.swarm.nodes[1].hostname
    client.services.create(
        "agent:local", ["sh", "-c", "sleep 2; exec dd if=/dev/zero of=/dev/null bs=64M count=1"], name="oomer",
        constraints=[f"node.hostname=={node2}"], resources=Resources(mem_limit=16 * MiB),
        restart_policy=RestartPolicy(condition="any", delay=1_000_000_000), mode=ServiceMode("replicated", 1))
    started = time.monotonic()
    alerts = wait_for(lambda: stack.firing("AgentServiceCrashLoopOnNode"), 240, interval=2.0,
                      what="AgentServiceCrashLoopOnNode firing")
    stack.figures["oom_loop_to_alert_s"] = round(time.monotonic() - started)
    assert [(a["labels"]["node"], a["labels"]["service"]) for a in alerts] == [(node2, "oomer")]
    description = alerts[0]["annotations"]["description"]
    assert f"died on node {node2}" in description and "OOM-killed" in description, description
    assert "none of them" not in description, "the deaths were OOM kills"

    cfg = config(tmp_path, dry_run=False, docker={"host": stack.swarm.manager.host},
                 targets={"oomer": {"kind": "swarm_service", "service": "oomer", "min_replicas": 1, "max_replicas": 1,
                                    "min_memory_bytes": "16MiB", "max_memory_bytes": "64MiB"}},
                 rules=[{"name": "more-memory", "alertname": "AgentServiceCrashLoopOnNode", "action": "resize_memory",
                         "target": "{{ labels.service }}", "factor": 2, "cooldown_seconds": 0}])
    scaler = Scaler(cfg)
    await scaler.start()
    try:
        [decision] = await scaler.handle([_alert(alerts[0])])
        await scaler.idle(60)
        assert (decision.result, decision.current, decision.desired) == ("success", 16 * MiB, 32 * MiB), decision
    finally:
        await scaler.stop()
    resources = stack.service_inspect("oomer")["Spec"]["TaskTemplate"]["Resources"]
    assert resources["Limits"]["MemoryBytes"] == 32 * MiB
    assert resources["Reservations"]["MemoryBytes"] == 32 * MiB, "Swarm's scheduler keeps to the same rule"
    client.services.get("oomer").remove()


async def test_the_scaler_never_places_more_than_the_nodes_hold(stack, tmp_path):
    client = stack.swarm.manager.docker
    task = 8 * GiB  # large claims, so the nodes' reported memory is the bound (no memory is used: sleep)
    client.services.create("agent:local", ["sleep", "600"], name="big", resources=Resources(mem_limit=task),
                           mode=ServiceMode("replicated", 1), restart_policy=RestartPolicy(condition="none"))
    wait_for(lambda: len(stack.running_tasks("big")) == 1, 120, what="the first big task running")
    cfg = config(tmp_path, dry_run=False, docker={"host": stack.swarm.manager.host},
                 targets={"big": {"kind": "swarm_service", "service": "big", "min_replicas": 1, "max_replicas": 50}},
                 rules=[{"name": "more", "alertname": "Backlog", "action": "scale_up", "target": "big", "step": 49,
                         "cooldown_seconds": 0}])
    scaler = Scaler(cfg)
    await scaler.start()
    try:
        observed = await scaler.backends["swarm_service"].observe("big", cfg.targets["big"])
        assert observed.nodes is not None and len(observed.nodes) == NODES
        room = sum(max(0, n.memory_bytes - n.claimed_bytes) // task for n in observed.nodes)
        assert 0 < room < 49, "the nodes, not max_replicas, are the bound"
        [decision] = await scaler.handle([_alert({"labels": {"alertname": "Backlog"}, "activeAt": "1"})])
        await scaler.idle(120)
        assert (decision.result, decision.current, decision.desired) == ("success", 1, 1 + room), decision
        assert decision.detail.startswith(f"capped at {1 + room} replicas: the nodes hold {room} more task(s)")
        for node in observed.nodes:
            assert node.hostname in decision.detail
        [again] = await scaler.handle([_alert({"labels": {"alertname": "Backlog"}, "activeAt": "2"})])
        assert (again.outcome, again.reason) == ("skipped", "host_limit"), again
        assert again.detail.startswith("no node can hold another task"), again.detail
    finally:
        await scaler.stop()
    spec = stack.service_inspect("big")["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 1 + room
    assert spec["TaskTemplate"]["Resources"]["Reservations"]["MemoryBytes"] == task
    running = wait_for(lambda: (lambda t: t if len(t) == 1 + room else None)(stack.running_tasks("big")), 180,
                       what=f"{1 + room} big tasks running")
    per_node = Counter(t["NodeID"] for t in running)
    memory = {n.id: n.attrs["Description"]["Resources"]["MemoryBytes"] for n in client.nodes.list()}
    assert all(count * task <= memory[node] for node, count in per_node.items()), per_node
    stack.figures["big_tasks_per_node"] = sorted(per_node.values())
    client.services.get("big").remove()


def write_results(stack: SwarmStack) -> None:
    figures = stack.figures
    series = figures.get("series_per_node", {})
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in figures.get("image_seconds", {}).items())
    lines = "\n".join(f"| `{node}` | {count} | {count / 15:.0f} |" for node, count in sorted(series.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"""# Scale-out on a real Docker Swarm ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)

Written by `tests/scaleout/test_swarm_e2e.py`. Machine: {os.cpu_count()} CPUs, {platform.system()} \
{platform.release()}; load average {load} at the end. {NODES} private dockerd nodes (20.10, vfs),
each in its own network namespace on a private bridge; the shipped `deploy/swarm` stack with
Prometheus intervals of {INTERVAL} (service discovery refresh as shipped, 15 s) and the exporter
collecting every 2 s.

| figure | value |
| --- | --- |
| nodes in the swarm | {NODES} |
| swarm join to the first scrape of the new node's exporter | {figures.get("join_to_first_scrape_s", "n/a")} s |
| OOM loop started to AgentServiceCrashLoopOnNode firing | {figures.get("oom_loop_to_alert_s", "n/a")} s |
| 8 GiB tasks the scaler placed per node (reported memory bound) | {figures.get("big_tasks_per_node", "n/a")} |
| whole setup (engines, images, deploy, joins) | {figures.get("setup_s", "n/a")} s ({seconds}) |

Series per node (`count by (node) ({{job="agentwatch"}})`; samples per second at the shipped 15 s
scrape interval):

| node | series | samples/s at 15 s |
| --- | --- | --- |
{lines}
""")

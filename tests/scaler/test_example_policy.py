"""The shipped example policy on a host without Swarm: a real scale-up decision goes through.

Before, the example listed a Swarm service (``agents-swarm``) and every scale-up on a compose host
was skipped: ``host_limit: replica count of a target unknown``, because that target cannot be
observed on an engine that is not a swarm manager. Now the example ships without it (the block is
commented), and an unobservable target no longer blocks the others: host limits count the targets
that could be read and the decision names the ones left out. The private dockerd of the test
session is not a swarm manager, so it is such a host.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentwatch.local.dockerd import IMAGE
from agentwatch.scaler import config as scaler_config
from agentwatch.scaler.executor import Scaler
from agentwatch.scaler.model import Decision
from tests.scaler.helpers import alert

pytestmark = pytest.mark.docker

EXAMPLE = Path(__file__).resolve().parents[2] / "compose" / "scaler-policy.yml"
MiB = 1024 * 1024
#: The compose labels of the example's "agents" target (project agentwatch, service agent).
LABELS = {"com.docker.compose.project": "agentwatch", "com.docker.compose.service": "agent",
          "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False"}
#: The block the example leaves commented, as a swarm manager would enable it.
SWARM_TARGET = {"kind": "swarm_service", "service": "agents", "min_replicas": 1, "max_replicas": 20,
                "min_memory_bytes": "2GiB", "max_memory_bytes": "6GiB"}


def example(tmp_path: Path, host: str, **targets: dict) -> scaler_config.ScalerConfig:
    """The example as shipped, with its files in tmp_path and the test's engine (and extra targets)."""
    scaler_config.load(EXAMPLE)  # valid as shipped
    data = yaml.safe_load(EXAMPLE.read_text())
    data["targets"] = {**data["targets"], **targets}
    data.update(state_file=str(tmp_path / "state.json"), audit_log=str(tmp_path / "audit.jsonl"),
                docker={**data.get("docker", {}), "host": host})
    return scaler_config.ScalerConfig.model_validate(data)


@pytest.fixture
def agent_container(docker_client):
    """The stack's first agent container (agentwatch-agent-1) with a memory limit, as compose makes it."""
    container = docker_client.containers.run(IMAGE, ["sleep", "300"], name="agentwatch-agent-1", labels=LABELS,
                                             detach=True, network_mode="none", mem_limit=64 * MiB)
    yield container
    container.remove(force=True)


async def scale_up_once(cfg: scaler_config.ScalerConfig) -> Decision:
    scaler = Scaler(cfg)
    await scaler.start()
    try:
        [decision] = await scaler.handle([alert("AgentPoolExhausted", severity="critical")])
        await scaler.idle(30)
        return decision
    finally:
        await scaler.stop()


def test_the_shipped_example_has_no_target_a_compose_host_cannot_observe():
    shipped = scaler_config.load(EXAMPLE)
    assert shipped.dry_run, "the example starts in dry run"
    assert "swarm_service" not in {t.kind for t in shipped.targets.values()}
    assert "# agents-swarm:" in EXAMPLE.read_text(), "kept as a commented block for swarm managers"


async def test_example_policy_scales_up_on_a_host_without_swarm(tmp_path, dockerd, docker_client, agent_container):
    assert docker_client.info()["Swarm"]["LocalNodeState"] != "active", "the private engine is not in a swarm"
    d = await scale_up_once(example(tmp_path, dockerd.host))
    assert (d.rule, d.action, d.target) == ("pool-exhausted-scale-out", "scale_up", "agents")
    assert (d.outcome, d.result, d.current, d.desired) == ("act", "dry_run", 1, 2), d
    assert d.detail == "", "every target of the example was observed"
    ours = docker_client.containers.list(all=True, filters={"label": "com.docker.compose.project=agentwatch"})
    assert len(ours) == 1, "dry run: nothing changed"


async def test_an_unobservable_swarm_target_is_left_out_and_named(tmp_path, dockerd, agent_container):
    d = await scale_up_once(example(tmp_path, dockerd.host, **{"agents-swarm": SWARM_TARGET}))
    assert (d.outcome, d.result, d.current, d.desired) == ("act", "dry_run", 1, 2), d
    assert d.detail == "host limits counted without agents-swarm (could not be observed)"

"""The scaler's Kubernetes backend, through the official client, against a fake API server.

No real Kubernetes API server can run on this machine, so ``fake_kubernetes`` stands in for the
few endpoints the backend calls; the client, its kubeconfig loading, auth, paths, patch types and
response parsing are the real ones. The scaler is the real executor with the real policy.
"""

from __future__ import annotations

import pytest
import yaml

from agentwatch.configfile import ConfigError
from agentwatch.local.process import free_port
from agentwatch.scaler.backends import ActionError
from agentwatch.scaler.backends.kubernetes import memory_bytes
from agentwatch.scaler.config import load
from agentwatch.scaler.executor import Scaler
from tests.scaleout.fake_kubernetes import FakeKubernetes, container, deployment, kubeconfig
from tests.scaler.helpers import alert, config

MiB = 1024 * 1024
TARGET = {"kind": "kubernetes_deployment", "namespace": "agents", "deployment": "agent-server",
          "container": "server", "min_replicas": 1, "max_replicas": 4,
          "min_memory_bytes": "256MiB", "max_memory_bytes": "1GiB"}
RULES = [{"name": "up", "alertname": "AgentQueueBacklog", "action": "scale_up", "target": "agents",
          "cooldown_seconds": 0},
         {"name": "grow", "alertname": "AgentContainerMemoryCritical", "action": "resize_memory", "target": "agents",
          "factor": 2, "cooldown_seconds": 0}]


@pytest.fixture
async def fake(aiohttp_server):
    api = FakeKubernetes()
    api.add(deployment("agent-server", "agents", 2, container("sidecar", "64Mi"), container("server", "512Mi")))
    api.server = await aiohttp_server(api.app, host="127.0.0.1")
    return api


def scaler_for(tmp_path, server_url: str, token: str | None = None, **target: object) -> Scaler:
    path = kubeconfig(tmp_path / "kubeconfig", server_url, **({"token": token} if token else {}))
    cfg = config(tmp_path, dry_run=False, kubernetes={"kubeconfig": str(path), "timeout_seconds": 5},
                 retry={"attempts": 1}, targets={"agents": {**TARGET, **target}}, rules=RULES)
    return Scaler(cfg)


async def test_scale_and_resize_a_deployment(tmp_path, fake):
    scaler = scaler_for(tmp_path, str(fake.server.make_url("")).rstrip("/"))
    await scaler.start()
    try:
        [d] = await scaler.handle([alert("AgentQueueBacklog")])
        await scaler.idle(30)
        assert (d.result, d.current, d.desired) == ("success", 2, 3), d
        spec = fake.deployments[("agents", "agent-server")]["spec"]
        assert spec["replicas"] == 3
        scale = [r for r in fake.requests if r[0] == "PATCH" and r[1].endswith("/scale")]
        assert scale == [("PATCH", "/apis/apps/v1/namespaces/agents/deployments/agent-server/scale",
                          "application/merge-patch+json", {"spec": {"replicas": 3}})]

        [d] = await scaler.handle([alert("AgentContainerMemoryCritical")])
        await scaler.idle(30)
        assert (d.result, d.current, d.desired) == ("success", 512 * MiB, 1024 * MiB), d
        server, sidecar = (next(c for c in spec["template"]["spec"]["containers"] if c["name"] == n)
                           for n in ("server", "sidecar"))
        assert server["resources"] == {"limits": {"memory": str(1024 * MiB)}, "requests": {"memory": str(1024 * MiB)}}
        assert sidecar["resources"]["limits"] == {"memory": "64Mi"}, "only the named container changes"
        patch = [r for r in fake.requests if r[0] == "PATCH" and not r[1].endswith("/scale")]
        assert [p[2] for p in patch] == ["application/strategic-merge-patch+json"]
    finally:
        await scaler.stop()


async def test_api_errors_are_one_line_reasons(tmp_path, fake):
    url = str(fake.server.make_url("")).rstrip("/")
    fake.forbidden.add(("agents", "agent-server"))
    scaler = scaler_for(tmp_path, url)
    await scaler.start()
    try:
        [d] = await scaler.handle([alert("AgentQueueBacklog")])
        assert (d.outcome, d.reason) == ("skipped", "observe_failed"), "the read is refused: nothing is done blind"
        backend = scaler.backends["kubernetes_deployment"]
        with pytest.raises(ActionError, match=r"^Kubernetes API 403: forbidden \(check the scaler's RBAC\)$"):
            await backend.observe("agents", scaler.config.targets["agents"])
        with pytest.raises(ActionError, match=r"^Kubernetes API 404: not found$"):
            await backend.observe("x", scaler.config.targets["agents"].model_copy(update={"deployment": "nope"}))
        with pytest.raises(ActionError, match=r"has no container 'nope' \(it has sidecar, server\)"):
            fake.forbidden.clear()
            await backend.observe("x", scaler.config.targets["agents"].model_copy(update={"container": "nope"}))
    finally:
        await scaler.stop()


async def test_wrong_token_unreachable_server_and_missing_kubeconfig(tmp_path, fake):
    url = str(fake.server.make_url("")).rstrip("/")
    for server, token, expected in ((url, "wrong-token", "Kubernetes API 401: unauthorized (check the token)"),
                                    (f"http://127.0.0.1:{free_port()}", None, "Kubernetes API unreachable: ")):
        scaler = scaler_for(tmp_path, server, token)
        try:
            with pytest.raises(ActionError) as info:
                await scaler.backends["kubernetes_deployment"].observe("agents", scaler.config.targets["agents"])
            assert str(info.value).startswith(expected), info.value
            assert "wrong-token" not in str(info.value)
        finally:
            await scaler.backends["kubernetes_deployment"].close()
    cfg = config(tmp_path, kubernetes={"kubeconfig": str(tmp_path / "missing")}, targets={"agents": TARGET})
    backend = Scaler(cfg).backends["kubernetes_deployment"]
    with pytest.raises(ActionError, match=r"cannot load Kubernetes credentials from .*missing: \w+"):
        await backend.observe("agents", cfg.targets["agents"])
    await backend.close()


@pytest.mark.parametrize(("quantity", "expected"), [
    ("512Mi", 512 * MiB), ("1Gi", 1024 * MiB), ("1G", 10**9), ("1e9", 10**9), ("2048", 2048), (None, 0), ("", 0),
    ("1.5Gi", 1536 * MiB),
])
def test_memory_quantities(quantity, expected):
    assert memory_bytes(quantity) == expected


def test_a_malformed_quantity_is_a_clear_error():
    with pytest.raises(ActionError, match=r"cannot read the memory quantity 'lots'"):
        memory_bytes("lots")


def test_the_policy_file_names_the_bad_key(tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump({"targets": {"agents": {**TARGET, "deployment": "Not_A_Name"}}, "rules": []}))
    with pytest.raises(ConfigError, match=r"targets\.agents.*deployment"):
        load(path)

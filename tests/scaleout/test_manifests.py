"""deploy/kubernetes validates against the Kubernetes OpenAPI schemas, and says what it should.

The validator is ``kubernetes-validate`` (PyPI), which ships the Kubernetes OpenAPI schemas as JSON
schemas for every minor release, so it works offline; ``strict`` rejects unknown fields, as the API
server's strict field validation does. It has no schemas for prometheus-operator's kinds, which
are custom resources: the PrometheusRule is proved by being the generator's output and by
promtool, the ServiceMonitor by the checks below on the fields the operator reads.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agentwatch.config import load as load_exporter_config
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.config import load as load_scaler_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
#: The oldest release still common in managed clusters, and the newest the validator knows.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, doc) for p in MANIFESTS for doc in yaml.safe_load_all(p.read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("aw_generate_k8s", ROOT / "alert-rules" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCS = documents()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "doc"), [d for d in DOCS if d[1]["kind"] not in CUSTOM_KINDS],
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}")
def test_manifest_validates_against_the_kubernetes_schemas(name, doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_is_strict():
    daemonset = copy.deepcopy(of_kind("DaemonSet")[0])
    daemonset["spec"]["template"]["spec"]["hostPid"] = True  # the real field is hostPID
    with pytest.raises(kubernetes_validate.ValidationError, match="hostPid"):
        kubernetes_validate.validate(daemonset, VERSIONS[-1], strict=True)


def test_every_manifest_is_in_the_kustomization():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [
        "namespace.yaml", "exporter.yaml", "servicemonitor.yaml", "prometheusrule.yaml", "scaler.yaml"]
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_exporter_daemonset_reads_the_node_read_only_and_is_bounded():
    [daemonset] = of_kind("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod["automountServiceAccountToken"] is False, "the exporter never needs the Kubernetes API"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    host_paths = {v["name"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"proc", "cgroup"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert all(mounts[name].get("readOnly") is True for name in host_paths), "every hostPath is mounted read-only"


def test_configmaps_hold_configs_agentwatch_accepts(tmp_path):
    found = {}
    for doc in of_kind("ConfigMap"):
        for key, text in doc["data"].items():
            path = tmp_path / key
            path.write_text(text)
            found[key] = path
    load_exporter_config(found["exporter.yml"])
    policy = load_scaler_config(found["scaler-policy.yml"])
    assert policy.dry_run is True, "shipped in dry run"
    assert {t.kind for t in policy.targets.values()} == {"kubernetes_deployment"}


def test_scaler_rbac_can_only_scale_and_resize_the_deployments_it_names(tmp_path):
    assert not of_kind("ClusterRole") and not of_kind("ClusterRoleBinding"), "no cluster-wide rights"
    [role], [binding] = of_kind("Role"), of_kind("RoleBinding")
    [config_map] = [d for d in of_kind("ConfigMap") if "scaler-policy.yml" in d["data"]]
    policy = ScalerConfig.model_validate(yaml.safe_load(config_map["data"]["scaler-policy.yml"]))
    named = {(t.namespace, t.deployment) for t in policy.targets.values()}
    assert {(role["metadata"]["namespace"], name) for rule in role["rules"] for name in rule["resourceNames"]} == named
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["apps"]
        assert rule["resources"] in (["deployments"], ["deployments/scale"])
        assert set(rule["verbs"]) <= {"get", "patch"}, "no list, watch, create, delete or update"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "agentwatch-scaler"}
    [deployment] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "agentwatch-scaler"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "agentwatch"}]


def test_servicemonitor_scrapes_the_exporter_with_node_and_job_labels():
    [monitor] = of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    [service] = [s for s in of_kind("Service") if s["metadata"]["name"] == "agentwatch-exporter"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["clusterIP"] == "None", "headless: one target per exporter pod"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabel["node"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
    thresholds = yaml.safe_load((ROOT / "alert-rules" / "thresholds.yml").read_text())
    assert relabel["job"]["replacement"] == thresholds["exporter_job"], "the rules select the exporter by job"


def test_prometheusrule_is_generated_from_the_rule_sources_and_current(tmp_path):
    generate = generator()
    outputs = generate.generate()
    shipped = (K8S / "prometheusrule.yaml").read_text()
    assert shipped == generate.prometheus_rule(outputs), "stale: run python alert-rules/generate.py"
    manifest = yaml.safe_load(shipped)
    groups = [g for name in sorted(outputs) for g in yaml.safe_load(outputs[name])["groups"]]
    assert manifest["spec"]["groups"] == groups, "the same groups as alert-rules/*.rules.yml"
    assert {r.get("alert") for g in groups for r in g["rules"]} >= {"AgentServiceCrashLoopOnNode",
                                                                    "AgentContainerOOMKilled"}
    rules = tmp_path / "from-manifest.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    stale = subprocess.run([sys.executable, str(ROOT / "alert-rules" / "generate.py"), "--check"],
                           capture_output=True, text=True, timeout=60)
    assert stale.returncode == 0, stale.stderr


def test_generator_writes_a_prometheusrule_for_an_override(tmp_path):
    override = tmp_path / "mine.yml"
    override.write_text("crash_loop_nodes_count: 3\n")
    out = tmp_path / "rules"
    proc = subprocess.run([sys.executable, str(ROOT / "alert-rules" / "generate.py"), "--thresholds", str(override),
                           "--out-dir", str(out), "--prometheus-rule", str(out / "rule.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    manifest = yaml.safe_load((out / "rule.yaml").read_text())
    across = next(r for g in manifest["spec"]["groups"] for r in g["rules"]
                  if r.get("alert") == "AgentServiceCrashLoopAcrossNodes")
    assert ">= 3\n" in across["expr"]
    assert (ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml").read_text() != (out / "rule.yaml").read_text()

"""deploy/swarm and deploy/central are valid for the tools that read them, and consistent with each other.

Without an engine: ``docker stack config`` checks the stack file against the compose schema,
``promtool check config`` the Prometheus configs, ``agentwatch check-config`` the exporter config.
The real Swarm runs them in test_swarm_e2e.py, the central pair in test_central.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SWARM = ROOT / "deploy" / "swarm"
CENTRAL = ROOT / "deploy" / "central"


def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(argv[0])
    assert binary, f"{argv[0]} is not installed"
    return subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=60, cwd=cwd, check=False,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def stack() -> dict:
    """The stack file as ``docker stack config`` renders it (schema-checked, variables filled).

    Docker CLIs before 23 have no ``stack config``; docker-compose's ``config`` checks the same schema.
    """
    env = {"DOCKER_GID": "999"}
    proc = run("docker", "stack", "config", "-c", "agentwatch-stack.yml", cwd=SWARM, env=env)
    if proc.returncode != 0 and "unknown" in proc.stderr:
        proc = run("docker-compose", "-f", "agentwatch-stack.yml", "config", cwd=SWARM, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(proc.stdout)


def test_exporter_is_a_global_service_reading_the_node_read_only(stack):
    exporter = stack["services"]["exporter"]
    assert exporter["deploy"]["mode"] == "global"
    assert exporter["user"] == "10001:999", "non-root, with the socket's group"
    assert exporter["read_only"] is True and exporter["cap_drop"] == ["ALL"]
    mounts = {m["target"]: m for m in exporter["volumes"]}
    assert set(mounts) == {"/host/proc", "/host/sys/fs/cgroup", "/var/run/docker.sock"}
    assert all(m["read_only"] for m in mounts.values())
    assert exporter["deploy"]["resources"]["limits"]["memory"]
    assert exporter["deploy"]["endpoint_mode"] == "dnsrr", "no virtual IP: each task is scraped"


def test_prometheus_keeps_exactly_the_exporter_tasks_and_names_their_node(stack):
    config = yaml.safe_load((SWARM / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "agentwatch"]
    [sd] = job["dockerswarm_sd_configs"]
    assert (sd["role"], sd["host"]) == ("tasks", "unix:///var/run/docker.sock")
    rules = {tuple(r.get("source_labels", ())): r for r in job["relabel_configs"]}
    label, value = next(iter(stack["services"]["exporter"]["deploy"]["labels"].items()))
    assert rules[(f"__meta_dockerswarm_service_label_{label.replace('.', '_')}",)]["regex"] == value
    assert rules[("__meta_dockerswarm_network_name",)]["regex"] == stack["networks"]["monitoring"]["name"]
    assert rules[("__meta_dockerswarm_node_hostname",)]["target_label"] == "node"
    assert sd["port"] == 9847 and "0.0.0.0:9847" in stack["services"]["exporter"]["command"]
    prometheus = stack["services"]["prometheus"]
    assert prometheus["deploy"]["placement"]["constraints"] == ["node.role == manager"]


def test_the_stack_loads_every_rule_file(stack):
    mounted = {c["target"] for c in stack["services"]["prometheus"]["configs"]}
    rule_files = {f"/etc/prometheus/rules/{p.name}" for p in (ROOT / "alert-rules").glob("*.rules.yml")}
    assert rule_files <= mounted, f"add to agentwatch-stack.yml's configs: {sorted(rule_files - mounted)}"


@pytest.mark.parametrize(("path", "agent"), [(SWARM / "prometheus.yml", False), (CENTRAL / "central.yml", False),
                                             (CENTRAL / "agent.yml", True)], ids=lambda v: getattr(v, "name", v))
def test_prometheus_configs_pass_promtool(path, agent):
    proc = run("promtool", "check", "config", *(["--agent"] if agent else []), path.name, cwd=path.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_central_agent_names_its_node_in_node_and_instance():
    agent = yaml.safe_load((CENTRAL / "agent.yml").read_text())
    assert agent["global"]["external_labels"] == {"node": "@NODE_NAME@"}
    [job] = agent["scrape_configs"]
    assert job["job_name"] == yaml.safe_load((ROOT / "alert-rules" / "thresholds.yml").read_text())["exporter_job"]
    assert job["relabel_configs"] == [{"target_label": "instance", "replacement": "@NODE_NAME@:9847"}]
    assert agent["remote_write"][0]["url"].endswith("/api/v1/write")


def test_swarm_exporter_config_is_valid():
    proc = run("agentwatch", "check-config", str(SWARM / "exporter.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr

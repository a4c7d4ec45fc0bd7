"""The compose file and what it mounts, checked by structure (no engine): what users deploy is safe.

The stack itself is brought up in ``test_compose_stack.py``; Grafana cannot run here, so its part
(profile, provisioning paths, datasource) is checked only here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from agentwatch import __version__
from agentwatch.config import load as load_exporter_config
from agentwatch.scaler.config import load as load_scaler_policy
from tests.stack.compose import COMPOSE_DIR, COMPOSE_FILE, LONG_RUNNING, ONE_SHOT, PROFILED, ROOT, compose_binary

RAW = COMPOSE_FILE.read_text()
COMPOSE = yaml.safe_load(RAW)  # SafeLoader resolves the << merges of the x- anchors
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}")
AGENTWATCH_SERVICES = frozenset(name for name, s in SERVICES.items() if "AGENTWATCH_IMAGE" in s["image"])
#: Variables .env.example may set that the compose file does not read (docker compose itself does).
COMPOSE_OWN = {"COMPOSE_PROJECT_NAME"}


def variable_default(value: str) -> tuple[str, str]:
    match = VARIABLE.fullmatch(value)
    assert match and match.group(2), f"{value!r} is not ${{VARIABLE:-default}}"
    return match.group(1), match.group(2)


def mount(volume: str) -> list[str]:
    """SOURCE:TARGET[:MODE] with variables at their defaults (a default may hold a colon)."""
    return VARIABLE.sub(lambda m: m.group(2) or "", volume).split(":")


def test_the_services_are_the_loop():
    assert set(SERVICES) == LONG_RUNNING | ONE_SHOT | PROFILED
    assert {"exporter", "agent", "scaler", "alertmanager-config"} == AGENTWATCH_SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_a_bounded_restart_and_a_memory_limit(name):
    service = SERVICES[name]
    assert service.get("mem_limit"), f"{name}: no mem_limit"
    if name in ONE_SHOT:
        assert service["restart"] == "no" and service["healthcheck"] == {"disable": True}
        return
    assert re.fullmatch(r"on-failure:[1-9][0-9]?", service["restart"]), f"{name}: a crash loop must end"
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and len(test) > 2
    # The upstream images have busybox's wget and no Python; agentwatch's image has Python and no wget.
    expected = "python3" if name in AGENTWATCH_SERVICES else "wget"
    assert test[1] == expected, f"{name}: {test[1]} may be missing from the image"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_variables_defaulting_to_pinned_upstream_images(name):
    variable, default = variable_default(SERVICES[name]["image"])
    assert variable.endswith("_IMAGE")
    repository, _, tag = default.rpartition(":")
    assert repository and tag and tag != "latest", f"{name}: {default} is not pinned"
    if name in AGENTWATCH_SERVICES:
        assert default == f"agentwatch:{__version__}"


def test_no_service_gains_privileges_or_publishes_beyond_loopback():
    for name, service in SERVICES.items():
        assert not service.get("privileged") and not service.get("cap_add"), name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert str(service.get("user", "")).split(":")[0] not in {"0", "root"}, name
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback"


def test_the_exporter_reads_the_host_and_writes_nothing():
    exporter = SERVICES["exporter"]
    assert exporter["pid"] == "host"
    assert exporter["read_only"] is True
    assert "user" not in exporter  # the image's non-root user
    assert variable_default(exporter["group_add"][0])[0] == "DOCKER_GID"
    mounts = {mount(volume)[1]: volume for volume in exporter["volumes"]}
    for target in ("/host/proc", "/host/sys/fs/cgroup", "/var/run/docker.sock", "/etc/agentwatch/exporter.yml"):
        assert mounts[target].endswith(":ro"), f"{target} must be read-only"
    config = load_exporter_config(COMPOSE_DIR / "exporter.yml")
    assert config.docker.proc_root == config.processes.proc_root == "/host/proc"
    assert config.docker.cgroup_root == "/host/sys/fs/cgroup"
    assert {urlparse(p.url).hostname for p in config.probes} == {"agent"}
    assert all(p.api_key_file == "/run/secrets/agent-server-api-key" for p in config.probes)


def test_the_dockerfile_is_multi_stage_non_root_with_the_base_as_a_build_argument():
    lines = [line.strip() for line in (COMPOSE_DIR / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0].startswith("ARG BASE_IMAGE=python:3.11")
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert "--no-index" in (COMPOSE_DIR / "Dockerfile").read_text()  # an offline build is possible


def test_the_scaler_is_dry_run_with_the_secrets_its_policy_names():
    policy = load_scaler_policy(COMPOSE_DIR / "scaler-policy.yml")
    assert policy.dry_run is True
    scaler = SERVICES["scaler"]
    mounted = {f"/run/secrets/{name}" for name in scaler["secrets"]}
    files = {policy.auth.token_file} | {getattr(t, f, None) for t in policy.targets.values()
                                        for f in ("api_key_file", "url_file")}
    assert files - {None} <= mounted
    assert any(v.endswith(":/var/run/docker.sock") for v in scaler["volumes"])  # it acts on containers
    server = next(t for t in policy.targets.values() if t.kind == "agent_server")
    assert urlparse(server.url).hostname in SERVICES
    compose_targets = [t for t in policy.targets.values() if t.kind == "compose_service"]
    assert all(t.service in SERVICES for t in compose_targets)


def test_every_secret_and_volume_a_service_uses_is_declared():
    for name, service in SERVICES.items():
        assert set(service.get("secrets", [])) <= set(COMPOSE["secrets"]), name
        named = {mount(v)[0] for v in service.get("volumes", []) if not mount(v)[0].startswith(("/", "."))}
        assert named <= set(COMPOSE["volumes"]), name
    for secret in COMPOSE["secrets"].values():
        assert variable_default(secret["file"])[0].endswith("_FILE")


def test_prometheus_scrapes_the_services_and_passes_promtool(tmp_path):
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    hosts = {t.split(":")[0] for job in config["scrape_configs"] for sc in job.get("static_configs", [])
             for t in sc["targets"]}
    hosts |= {n for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]}
    assert hosts - {"localhost"} == {"exporter", "scaler", "agent", "alertmanager"}
    assert "agentwatch" in {job["job_name"] for job in config["scrape_configs"]}  # AgentwatchExporterDown's job
    am_hosts = {t.split(":")[0] for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"]
                for t in sc["targets"]}
    assert am_hosts == {"alertmanager"}
    # The rules directory as the container sees it is ../alert-rules: check the config with the real files.
    rules = next(v for v in SERVICES["prometheus"]["volumes"] if v.startswith("../alert-rules:"))
    inside = mount(rules)[1]
    config["rule_files"] = [p.replace(inside, str(ROOT / "alert-rules")) for p in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    proc = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shipped = len(list((ROOT / "alert-rules").glob("*.rules.yml")))
    assert f"SUCCESS: {shipped} rule files found" in proc.stdout


def test_grafana_is_optional_and_provisioned_from_the_dashboards():
    grafana = SERVICES["grafana"]
    assert grafana["profiles"] == ["grafana"]
    mounts = {mount(v)[0]: mount(v)[1] for v in grafana["volumes"]}
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/agentwatch.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["../dashboards"]
    assert mounts["../dashboards/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["../dashboards/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    source = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text())
    url = urlparse(source["datasources"][0]["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert "--web.listen-address=:9090" in SERVICES["prometheus"]["entrypoint"][-1]


def test_env_example_lists_every_variable():
    used = {m.group(1) for m in VARIABLE.finditer(RAW)}
    listed = {line.split("=", 1)[0] for line in (COMPOSE_DIR / ".env.example").read_text().splitlines()
              if re.match(r"^[A-Z][A-Z0-9_]*=", line)}
    assert used <= listed, f"not in .env.example: {sorted(used - listed)}"
    assert listed - used <= COMPOSE_OWN, f"listed but unused: {sorted(listed - used - COMPOSE_OWN)}"


def test_docker_compose_accepts_the_file(tmp_path):
    """docker-compose 1.29 validates the file (schema, merges, interpolation) without an engine."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    proc = subprocess.run([compose_binary(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr

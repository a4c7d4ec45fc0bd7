"""The real compose file, brought up on the private engine with images built here, then torn down.

No registry is reachable, so ``agentwatch.local.images`` builds every image (a debootstrapped
Debian base, agentwatch's own Dockerfile offline, Prometheus and Alertmanager from Debian
packages) and the compose file gets them through its ``*_IMAGE`` variables. Grafana sits behind
its profile and is not started. The figures measured go to ``bench/results/stack.md``.
"""

from __future__ import annotations

import os
import platform
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from agentwatch.local.dockerd import PrivateDockerd
from agentwatch.local.images import StackImages, build_stack_images
from agentwatch.local.process import free_port, wait_for
from tests.stack.compose import LONG_RUNNING, ONE_SHOT, ROOT, Compose, get_json

pytestmark = [pytest.mark.slow, pytest.mark.docker]

RESULTS = ROOT / "bench" / "results" / "stack.md"
#: Scrape jobs of compose/prometheus.yml, one target each in this stack.
JOBS = {"agentwatch", "agentwatch-scaler", "agent-server", "prometheus", "alertmanager"}
INTERVAL = "2s"
SECRETS = {
    "slack-webhook-url": "https://hooks.slack.example/services/T000/B000/XXXX",
    "discord-webhook-url": "https://discord.example/api/webhooks/1/stack-test",
    "agentwatch-scaler-token": "stack-test-scaler-token",
    "agent-server-api-key": "stack-test-agent-key",
    "grafana-admin-password": "stack-test-grafana",
}


def write_secrets(directory: Path) -> dict[str, str]:
    """Secret files readable by the services' users (0644), and the variables naming them."""
    directory.mkdir(mode=0o755)
    variables = {}
    for name, value in SECRETS.items():
        path = directory / name
        path.write_text(value + "\n")
        path.chmod(0o644)
        variables[name.upper().replace("-", "_") + "_FILE"] = str(path)
    return variables


def rule_names() -> set[str]:
    names = set()
    for path in sorted((ROOT / "alert-rules").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule.get("alert") or rule["record"] for rule in group["rules"]}
    return names


def health(dockerd: PrivateDockerd, project: str) -> dict[str, str]:
    """Service -> healthy | starting | unhealthy | exited(N) | running (no healthcheck)."""
    assert dockerd.client is not None
    states = {}
    for c in dockerd.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}):
        state = c.attrs["State"]
        service = c.labels["com.docker.compose.service"]
        if state["Status"] != "running":
            states[service] = f"exited({state['ExitCode']})"
        else:
            states[service] = state.get("Health", {}).get("Status", "running")
    return states


def diagnosis(dockerd: PrivateDockerd, project: str) -> str:
    """Each service's state and, unless healthy, the end of its log: what a failure message needs."""
    assert dockerd.client is not None
    lines = []
    for c in dockerd.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}):
        state = c.attrs["State"]
        status = state.get("Health", {}).get("Status") or state["Status"]
        lines.append(f"--- {c.name}: {status} (exit {state['ExitCode']}, restarts {c.attrs['RestartCount']})")
        if status != "healthy":
            lines.append(c.logs(tail=15).decode(errors="replace").rstrip())
            lines += [f"    health: {h['Output'].strip()[:300]}" for h in state.get("Health", {}).get("Log", [])[-2:]]
    return "\n".join(lines)


def leftovers(dockerd: PrivateDockerd, project: str) -> list[str]:
    assert dockerd.client is not None
    label = {"label": f"com.docker.compose.project={project}"}
    found = [f"container {c.name}" for c in dockerd.client.containers.list(all=True, filters=label)]
    found += [f"network {n.name}" for n in dockerd.client.networks.list() if n.name.startswith(f"{project}_")]
    found += [f"volume {v.name}" for v in dockerd.client.volumes.list() if v.name.startswith(f"{project}_")]
    return found


def cache_state(images: StackImages) -> str:
    if not any(images.cached.values()):
        return "cold: nothing cached"
    if all(images.cached.values()):
        return "root filesystems and wheels from the /var/tmp cache"
    return "partly cached"


def write_results(images: StackImages, up_seconds: float, total_seconds: float) -> None:
    mb = {tag: f"{size / 1e6:.0f} MB" for tag, size in images.sizes.items()}
    steps = "\n".join(f"| {step} | {seconds:.1f} s | {'cached' if images.cached.get(step) else 'built'} |"
                      for step, seconds in images.seconds.items())
    sizes = "\n".join(f"| `{tag}` | {size} |" for tag, size in mb.items())
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"""# The compose stack on this machine ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)

Written by `tests/stack/test_compose_stack.py`. Machine: {os.cpu_count()} CPUs, {platform.system()} \
{platform.release()}; load average {load} at the end. Private dockerd (vfs storage driver: every
layer and container is a full copy), docker-compose 1.29, healthchecks and scrapes every {INTERVAL}.

## Image build ({cache_state(images)})

| step | time | |
|---|---|---|
{steps}

## Image sizes

| image | size |
|---|---|
{sizes}

## Stack

| | |
|---|---|
| `up -d` to every healthcheck healthy | {up_seconds:.1f} s |
| whole test (build, up, checks, `down -v`) | {total_seconds:.1f} s |
""")


def test_compose_stack_comes_up_healthy_and_leaves_nothing(dockerd: PrivateDockerd, tmp_path: Path) -> None:
    started = time.monotonic()
    assert dockerd.client is not None
    images = build_stack_images(dockerd.client, ROOT)
    project = f"awstack{os.getpid()}"
    ports = {name: free_port() for name in ("PROMETHEUS_PORT", "ALERTMANAGER_PORT", "SCALER_PORT", "GRAFANA_PORT")}
    variables = {
        "DOCKER_HOST": dockerd.host,
        "DOCKER_SOCKET": str(dockerd.sock),
        "DOCKER_GID": str(dockerd.sock.stat().st_gid),
        **images.compose_env(),
        **write_secrets(tmp_path / "secrets"),
        **{k: str(v) for k, v in ports.items()},
        "HEALTHCHECK_INTERVAL": INTERVAL,
        "PROMETHEUS_SCRAPE_INTERVAL": INTERVAL,
        "PROMETHEUS_EVALUATION_INTERVAL": INTERVAL,
        "AGENT_LOAD_PER_MINUTE": "0",
    }
    compose = Compose(project, variables, tmp_path)
    prometheus = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"
    alertmanager = f"http://127.0.0.1:{ports['ALERTMANAGER_PORT']}"
    try:
        compose.run("config", "--quiet")
        up_started = time.monotonic()
        compose.run("up", "-d", "--no-build", timeout=300)
        states = wait_for(lambda: (s := health(dockerd, project)) and all(
            s.get(name) == "healthy" for name in LONG_RUNNING) and s, timeout=180, interval=0.5,
            what="every service healthy")
        up_seconds = time.monotonic() - up_started
        assert {name: states[name] for name in ONE_SHOT} == {name: "exited(0)" for name in ONE_SHOT}

        # Prometheus, through its port published on 127.0.0.1: every target up, the env intervals, every rule.
        def targets_up() -> dict[str, str] | None:
            body = get_json(f"{prometheus}/api/v1/targets")
            found = {t["labels"]["job"]: t["health"] for t in (body or {}).get("data", {}).get("activeTargets", [])}
            return found if set(found) == JOBS and set(found.values()) == {"up"} else None
        wait_for(targets_up, timeout=90, interval=1, what="every Prometheus target up")
        config = yaml.safe_load(get_json(f"{prometheus}/api/v1/status/config")["data"]["yaml"])
        assert config["global"]["scrape_interval"] == INTERVAL
        assert config["global"]["evaluation_interval"] == INTERVAL
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        assert loaded == rule_names()
        assert all(rule["health"] != "err" for group in groups for rule in group["rules"])

        # What the exporter sees from inside its container: the engine, the cgroups, the agent server.
        def exporter_sees_all() -> dict[str, float] | None:
            queries = {
                "docker_up": 'agentwatch_docker_up{job="agentwatch"}',
                "collectors_ok": 'min(agentwatch_collector_success{job="agentwatch"})',
                "probe_ok": 'min(agentwatch_probe_success{job="agentwatch", server="demo"})',
                "agent_limit": 'max(agentwatch_container_memory_limit_bytes{compose_service="agent"})',
            }
            values = {}
            for key, query in queries.items():
                body = get_json(f"{prometheus}/api/v1/query?query={urllib.parse.quote(query)}") or {}
                result = body.get("data", {}).get("result")
                if not result:
                    return None
                values[key] = float(result[0]["value"][1])
            return values
        seen = wait_for(exporter_sees_all, timeout=60, interval=1, what="the exporter's series in Prometheus")
        assert seen == {"docker_up": 1.0, "collectors_ok": 1.0, "probe_ok": 1.0, "agent_limit": 512 * 1024**2}

        # Alertmanager: its rendered config has the scaler (with its token file) and both chat receivers.
        status = get_json(f"{alertmanager}/api/v2/status")
        am_config = yaml.safe_load(status["config"]["original"])
        kinds = {key for receiver in am_config["receivers"] for key in receiver if key.endswith("_configs")}
        assert kinds == {"webhook_configs", "slack_configs", "discord_configs"}
        webhooks = [c for r in am_config["receivers"] for c in r.get("webhook_configs", [])]
        assert [w["url"] for w in webhooks] == ["http://scaler:9848/webhook"]
        assert webhooks[0]["http_config"]["authorization"]["credentials_file"] == "/run/secrets/agentwatch-scaler-token"
        assert am_config["global"]["slack_api_url_file"] == "/run/secrets/slack-webhook-url"
        assert SECRETS["slack-webhook-url"] not in status["config"]["original"]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(dockerd, project)}") from exc
    finally:
        compose.run("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=180, check=False)
    assert leftovers(dockerd, project) == []
    write_results(images, up_seconds, time.monotonic() - started)

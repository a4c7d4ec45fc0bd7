"""The shipped Swarm stack (deploy/swarm) on a real three-node swarm of private engines.

``agentwatch.local.swarm`` makes the nodes: each a private dockerd in network, mount and UTS
namespaces of its own, on a bridge in a namespace the test creates; the host's namespace gets no
address, so all traffic stays inside them. The stack is deployed with ``docker stack deploy`` from
a copy of deploy/swarm whose only change is the Prometheus intervals (2 s instead of 15 s; the
service discovery keeps its shipped 15 s refresh). Prometheus runs as a task on the overlay, so
the test reaches its API from inside its container (busybox ``wget``).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwatch.local.images import StackImages
from agentwatch.local.process import wait_for
from agentwatch.local.swarm import PrivateSwarm

ROOT = Path(__file__).resolve().parents[2]
STACK = "aw"
INTERVAL = "2s"


def stack_copy(work: Path) -> Path:
    """deploy/swarm as shipped, with fast Prometheus intervals, and the rules it names."""
    target = work / "deploy" / "swarm"
    shutil.copytree(ROOT / "deploy" / "swarm", target)
    (work / "alert-rules").symlink_to(ROOT / "alert-rules")
    config = target / "prometheus.yml"
    text = config.read_text()
    for key in ("scrape_interval", "evaluation_interval"):
        assert f"  {key}: 15s\n" in text, f"deploy/swarm/prometheus.yml: global {key} is no longer 15s"
        text = text.replace(f"  {key}: 15s\n", f"  {key}: {INTERVAL}\n")
    config.write_text(text)
    return target


@dataclass
class SwarmStack:
    swarm: PrivateSwarm
    images: StackImages
    directory: Path
    #: What the closing note needs, filled in by the tests.
    figures: dict[str, Any] = field(default_factory=dict)

    def deploy(self) -> str:
        gid = os.stat(self.swarm.manager.sock).st_gid
        env = {"AGENTWATCH_IMAGE": self.images.agentwatch, "PROMETHEUS_IMAGE": self.images.prometheus,
               "DOCKER_GID": str(gid), "EXPORTER_INTERVAL": "2"}
        return self.swarm.cli("stack", "deploy", "-c", "agentwatch-stack.yml", STACK, env=env, cwd=self.directory)

    def prometheus(self) -> Any:
        """The running Prometheus task's container (on the manager), or None."""
        for c in self.swarm.manager.docker.containers.list():
            if c.labels.get("com.docker.swarm.service.name") == f"{STACK}_prometheus":
                return c
        return None

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/``path`` on Prometheus, from inside its container; its ``data``, or None if not up."""
        container = self.prometheus()
        if container is None:
            return None
        url = f"http://127.0.0.1:9090/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        code, output = container.exec_run(["wget", "-q", "-O", "-", url])
        if code != 0:
            return None
        body = json.loads(output)
        return body["data"] if body.get("status") == "success" else None

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return data["result"] if data else []

    def exporter_targets(self) -> list[dict[str, Any]]:
        data = self.api("targets", state="active")
        return [t for t in (data or {}).get("activeTargets", []) if t["labels"].get("job") == "agentwatch"]

    def wait_for_targets(self, hostnames: set[str], timeout: float = 180) -> list[dict[str, Any]]:
        """Wait until exactly one healthy exporter target per hostname has been scraped."""
        def ready() -> list[dict[str, Any]] | None:
            targets = self.exporter_targets()
            nodes = sorted(t["labels"].get("node", "") for t in targets if t["health"] == "up")
            return targets if nodes == sorted(hostnames) and len(targets) == len(hostnames) else None

        return wait_for(ready, timeout, interval=1.0, what=f"one scraped exporter on each of {sorted(hostnames)}")

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        data = self.api("alerts")
        return [a for a in (data or {}).get("alerts", [])
                if a["labels"].get("alertname") == alertname and a["state"] == "firing"]

    def service_inspect(self, name: str) -> dict[str, Any]:
        """``docker service inspect NAME`` through the CLI, as an operator would look."""
        [spec] = json.loads(self.swarm.cli("service", "inspect", name))
        return dict(spec)

    def running_tasks(self, service: str) -> list[dict[str, Any]]:
        return [t for t in self.swarm.manager.docker.api.tasks(filters={"service": service})
                if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]


def first_scrape_after(stack: SwarmStack, hostname: str, since: float, timeout: float = 180) -> float:
    """Seconds from ``since`` (a join) to the first scrape of ``hostname``'s exporter (its first ``up`` sample)."""
    selector = f'up{{job="agentwatch",node="{hostname}"}}'
    wait_for(lambda: stack.query(f"{selector} == 1"), timeout, interval=1.0, what=f"a first scrape of {hostname}")
    [series] = stack.query(f"{selector}[15m]")
    return round(float(series["values"][0][0]) - since, 1)

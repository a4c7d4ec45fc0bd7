"""The real exporter's live /metrics, with the engine up and containers in every state.

One fleet on the private engine (running, exited, OOM-killed, and one that exited 3 and was
restarted by its on-failure policy before the exporter started), one exporter subprocess, and the
exposition checked by the tools Prometheus users run: ``promtool check metrics`` for the text
format and prometheus_client's OpenMetrics parser for OpenMetrics.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from agentwatch.local.dockerd import IMAGE, PrivateDockerd
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for
from agentwatch.local.scrape import Scrape

#: Exits 3 on its first run; the on-failure policy starts it again and then it keeps running.
EXIT_3_THEN_RUN = ["sh", "-c", "if [ -e /ran-once ]; then exec sleep 300; fi; touch /ran-once; exit 3"]


@dataclass
class Fleet:
    exporter: ExporterProcess
    ids: dict[str, str]


def _state(client: Any, cid: str) -> dict[str, Any]:
    info: dict[str, Any] = client.api.inspect_container(cid)
    return info


@pytest.fixture(scope="module")
def fleet(dockerd: PrivateDockerd) -> Iterator[Fleet]:
    client = dockerd.client
    assert client is not None
    made: list[Any] = []

    def run(name: str, cmd: list[str], **kw: Any) -> str:
        made.append(client.containers.run(IMAGE, cmd, name=name, detach=True, network_mode="none", **kw))
        return str(made[-1].id)

    try:
        ids = {
            "running": run("aw-live-running", ["sleep", "300"], mem_limit="64m",
                           labels={"com.docker.compose.project": "live", "com.docker.compose.service": "agent"}),
            "exited": run("aw-live-exited", ["sh", "-c", "exit 5"]),
            "oom": run("aw-live-oom", ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
                       mem_limit="32m", memswap_limit="32m"),
            "restarted": run("aw-live-restarted", EXIT_3_THEN_RUN,
                             restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}),
        }
        wait_for(lambda: _state(client, ids["exited"])["State"]["Status"] == "exited"
                 and _state(client, ids["oom"])["State"]["OOMKilled"]
                 and _state(client, ids["restarted"])["RestartCount"] >= 1
                 and _state(client, ids["restarted"])["State"]["Status"] == "running", 60,
                 what="the fleet to reach its states")
        assert _state(client, ids["restarted"])["State"]["ExitCode"] == 0, "the engine resets ExitCode on start"
        config = {"docker": {"host": dockerd.host, "timeout_seconds": 5},
                  "probes": [{"name": "absent", "url": "http://127.0.0.1:9", "interval_seconds": 1}]}
        with ExporterProcess(config) as exporter:
            exporter.wait_for_cycles(2)
            yield Fleet(exporter, ids)
    finally:
        for c in made:
            try:
                c.remove(force=True)
            except Exception:
                pass


def _metrics(fleet: Fleet, accept: str | None = None) -> tuple[str, str]:
    """(Content-Type, body) of one scrape of the live exporter."""
    request = urllib.request.Request(fleet.exporter.url + "/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        return resp.headers["Content-Type"], resp.read().decode()


def test_text_exposition_passes_promtool(fleet):
    """promtool must find no problem at all: errors break ingestion, and its lint warnings (counter
    names without _total, non-base units, names with reserved suffixes) are naming mistakes the
    catalog's conventions already forbid, so a warning is a regression too."""
    content_type, text = _metrics(fleet)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert "agentwatch_container_state{" in text and "agentwatch_docker_up 1.0" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)


def test_openmetrics_exposition_parses_to_the_end(fleet):
    content_type, text = _metrics(fleet, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    families = list(parse_openmetrics(text))  # raises on metadata after samples, duplicates, bad syntax
    names = [f.name for f in families]
    assert len(names) == len(set(names)), "every family once"
    assert "agentwatch_docker_stats_source" in names and "agentwatch_container_state" in names


def test_every_family_is_emitted_once_in_the_text_format(fleet):
    _, text = _metrics(fleet)
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    assert len(helps) == len(set(helps)), sorted({h for h in helps if helps.count(h) > 1})


def test_a_restarted_container_keeps_the_exit_code_of_its_last_run(fleet):
    scrape = Scrape.parse(_metrics(fleet)[1])
    restarted = {"container": "aw-live-restarted"}
    assert scrape.value("agentwatch_container_state", state="running", **restarted) == 1
    assert scrape.value("agentwatch_container_restarts_total", **restarted) >= 1
    assert scrape.value("agentwatch_container_last_exit_code", **restarted) == 3
    assert scrape.value("agentwatch_container_last_exit_code", container="aw-live-exited") == 5
    assert scrape.value("agentwatch_container_last_exit_code", container="aw-live-oom") == 137
    assert scrape.value("agentwatch_container_oom_killed", container="aw-live-oom") == 1
    assert scrape.value("agentwatch_container_last_exit_code", container="aw-live-running") == 0, \
        "never finished: 0"


def test_container_info_carries_the_short_id(fleet):
    scrape = Scrape.parse(_metrics(fleet)[1])
    for name, cid in fleet.ids.items():
        (labels, value), = scrape.series("agentwatch_container_info", container=f"aw-live-{name}")
        assert labels["container_id"] == cid[:12] and value == 1
    (labels, _), = scrape.series("agentwatch_container_info", container="aw-live-running")
    assert (labels["compose_project"], labels["compose_service"]) == ("live", "agent")


async def test_an_exit_seen_by_one_cycle_is_kept_after_a_manual_start(dockerd, docker_client):
    """The exit code comes from the cycle that saw the container stopped, with no event lookup."""
    import asyncio

    from prometheus_client.exposition import generate_latest

    from agentwatch.collectors.containers import ContainerCollector
    from agentwatch.config import DockerConfig
    from agentwatch.exposition import Families

    async def scrape() -> Scrape:
        return Scrape.parse(generate_latest(Families(await collector.collect())).decode())

    box = await asyncio.to_thread(docker_client.containers.run, IMAGE, EXIT_3_THEN_RUN, name="aw-live-manual",
                                  detach=True, network_mode="none")
    await asyncio.to_thread(box.wait, timeout=30)
    collector = ContainerCollector(DockerConfig(host=dockerd.host, name_filter="^aw-live-manual$", events=False))
    lookups: list[str] = []
    real_lookup = collector._die_exit_code
    collector._die_exit_code = lambda cid, state: lookups.append(cid) or real_lookup(cid, state)  # type: ignore[method-assign]
    try:
        first = await scrape()
        assert first.value("agentwatch_container_last_exit_code", container="aw-live-manual") == 3
        await asyncio.to_thread(box.start)
        await asyncio.to_thread(wait_for, lambda: _state(docker_client, box.id)["State"]["Status"] == "running",
                                30, what="the manual start")
        second = await scrape()
    finally:
        await collector.stop()
    assert second.value("agentwatch_container_state", container="aw-live-manual", state="running") == 1
    assert second.value("agentwatch_container_last_exit_code", container="aw-live-manual") == 3
    assert lookups == [], "the stopped inspect was remembered; no event lookup needed"

"""Every YAML config block of the README works: tagged with what it is, checked by the tool that
reads it, and the exporter's probe example run for real against the demo agent server.

A YAML block must follow a tag line naming its kind, e.g. ``<!-- config: exporter -->``:

- ``exporter`` / ``scaler``: ``agentwatch check-config`` accepts it; an exporter block with probes
  is then run by the real exporter against the real demo server (as shipped: its default key
  variable and address), with the key in the variable the block names, and every probe must succeed;
- ``prometheus``: ``promtool check config`` accepts it (its rule files: the repo's rules);
- ``alertmanager``: ``amtool check-config`` accepts it (a receivers-only fragment gets a route).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentwatch.demo.cli import DEFAULT_KEY_ENV, DEFAULT_LISTEN
from agentwatch.local.pack import DemoProcess, ExporterProcess
from agentwatch.local.process import wait_for
from agentwatch.local.scrape import Scrape
from tests.rules.helpers import RULES_DIR, binary, run

README = Path(__file__).resolve().parents[2] / "README.md"
KINDS = ("exporter", "scaler", "prometheus", "alertmanager")
TAG = re.compile(r"^<!-- config: ([a-z-]+) -->$")
FENCE = re.compile(r"^```(\S*)\s*$")


def blocks() -> list[tuple[int, str, str | None, str]]:
    """(line, language, tag or None, text) of every fenced block; the tag is the line just above it."""
    out = []
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        tag = TAG.match(above)
        out.append((i + 1, fence.group(1), tag.group(1) if tag else None, "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return out


YAML_BLOCKS = [b for b in blocks() if b[1] in ("yaml", "yml")]


def _id(block: tuple[int, str, str | None, str]) -> str:
    return f"line{block[0]}-{block[2]}"


def test_every_yaml_block_is_tagged_and_every_tag_has_a_block() -> None:
    untagged = [line for line, _, tag, _ in YAML_BLOCKS if tag is None]
    assert not untagged, (f"README.md: YAML blocks at lines {untagged} have no '<!-- config: KIND -->' line above "
                          f"them (KIND: {', '.join(KINDS)})")
    unknown = [(line, tag) for line, _, tag, _ in YAML_BLOCKS if tag not in KINDS]
    assert not unknown, f"README.md: unknown config kinds {unknown}"
    tags = sum(1 for line in README.read_text().splitlines() if TAG.match(line.strip()))
    assert tags == len(YAML_BLOCKS), "a config tag is not followed by a YAML block"
    assert {tag for _, _, tag, _ in YAML_BLOCKS} >= {"exporter", "scaler", "prometheus"}


def _check_config(text: str, kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.yml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "agentwatch.cli", "check-config", str(path), "--kind", kind],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("block", [b for b in YAML_BLOCKS if b[2] in ("exporter", "scaler")], ids=_id)
def test_agentwatch_blocks_pass_check_config(block, tmp_path) -> None:
    _, _, kind, text = block
    _check_config(text, str(kind), tmp_path)


@pytest.mark.parametrize("block", [b for b in YAML_BLOCKS if b[2] == "prometheus"], ids=_id)
def test_prometheus_blocks_pass_promtool(block, tmp_path) -> None:
    config = yaml.safe_load(block[3])
    if "rule_files" in config:  # the shipped rules, wherever the block says they live
        config["rule_files"] = [str(RULES_DIR / Path(p).name) for p in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = run(binary("promtool"), "check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    if "rule_files" in config:
        assert re.search(r"SUCCESS: [1-9][0-9]* rules found", done.stdout), done.stdout


@pytest.mark.parametrize("block", [b for b in YAML_BLOCKS if b[2] == "alertmanager"], ids=_id)
def test_alertmanager_blocks_pass_amtool(block, tmp_path) -> None:
    config = yaml.safe_load(block[3])
    config.setdefault("route", {"receiver": config["receivers"][0]["name"]})
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    done = run(binary("amtool"), "check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


PROBE_BLOCKS = [b for b in YAML_BLOCKS if b[2] == "exporter" and yaml.safe_load(b[3]).get("probes")]


def test_there_is_a_probe_example() -> None:
    assert PROBE_BLOCKS, "the README's probe config example is gone or untagged"


@pytest.mark.parametrize("block", PROBE_BLOCKS, ids=_id)
def test_probe_examples_work_against_the_demo_server_as_shipped(block, tmp_path) -> None:
    config: dict[str, Any] = yaml.safe_load(block[3])
    probes = config["probes"]
    for probe in probes:
        # what a user copies must fit `agentwatch demo-agents` run with its defaults
        assert probe["url"].rstrip("/") == f"http://{DEFAULT_LISTEN}", probe["url"]
        assert probe.get("api_key_env") == DEFAULT_KEY_ENV, "the demo server reads its key from " + DEFAULT_KEY_ENV
    with DemoProcess() as demo:
        demo.start_agent("haiku", 60)
        env: dict[str, str] = {}
        for probe in probes:
            probe["url"] = demo.url  # the demo runs on a free port here, not on 8700
            env[probe["api_key_env"]] = demo.key
        with ExporterProcess(config, env=env) as exporter:
            def probed() -> Scrape | None:
                s = exporter.scrape()
                done = all(s.value("agentwatch_probe_success", server=p["name"], endpoint=ep) is not None
                           for p in probes for ep in _endpoints(p))
                return s if done else None

            assert wait_for(probed, 30), exporter.log()
            scrape = exporter.wait_for_cycles(1)
    for probe in probes:
        server = probe["name"]
        for endpoint in _endpoints(probe):
            assert scrape.value("agentwatch_probe_success", server=server, endpoint=endpoint) == 1, (
                server, endpoint, scrape.series("agentwatch_probe_failures_total", server=server))
        failures = {(lbl["endpoint"], lbl["reason"]): v
                    for lbl, v in scrape.series("agentwatch_probe_failures_total", server=server) if v}
        assert not failures, failures  # missing_field (a field mapping that does not fit) above all
        assert scrape.value("agentwatch_agents_running", server=server, model="haiku") == 1
        info = scrape.series("agentwatch_app_info", server=server)
        assert [lbl.get("container", "") for lbl, _ in info] == [probe.get("container", "")]


def _endpoints(probe: dict[str, Any]) -> list[str]:
    """The endpoints a probe target fetches: the defaults, less the ones it sets to null."""
    from agentwatch.config import ProbeEndpoints

    configured = ProbeEndpoints.model_validate(probe.get("endpoints") or {})
    return [ep for ep, path in configured.model_dump().items() if path is not None]

"""The fleet page of a real exporter watching real containers, rendered by headless chromium.

Three containers on the private engine: a steady one, one that exits 1 and one allocating past
its limit; two carry compose labels made to break out of the HTML. The browser's DOM must show
every container and both deaths with their advice, and none of the labels may become markup.
The screenshot stays under the test's tmp dir as an artefact. The same exporter then answers the
``crashes``, ``health`` and ``top`` commands, run as real processes without a terminal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentwatch.engine import COMPOSE_PROJECT, COMPOSE_SERVICE
from agentwatch.local.dockerd import IMAGE
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for
from tests.views import browser, dom
from tests.views.samples import EVIL_PROJECT, EVIL_SERVICE

MiB = 1 << 20
STEADY = ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null; exec sleep 300"]
SPIKE = ["sh", "-c", "sleep 3; dd if=/dev/zero of=/dev/null bs=100M count=1"]
ERROR = ["sh", "-c", "sleep 2; exit 1"]
EVIL_LABELS = {COMPOSE_PROJECT: EVIL_PROJECT, COMPOSE_SERVICE: EVIL_SERVICE}


def _run(client: Any, name: str, cmd: list[str], **kw: Any) -> Any:
    return client.containers.run(IMAGE, cmd, name=name, detach=True, network_mode="none", **kw)


def _cli(exp: ExporterProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentwatch.cli", *args, "--url", exp.url], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, cwd="/")


def test_the_fleet_page_in_a_real_browser(dockerd, docker_client, tmp_path: Path):
    _run(docker_client, "aw-v-steady", STEADY, mem_limit="64m", labels=EVIL_LABELS)
    config = {"interval_seconds": 0.5, "docker": {"host": dockerd.host, "timeout_seconds": 5},
              "insights": {"window_seconds": 30, "min_samples": 3}}
    with ExporterProcess(config) as exp:
        exp.wait_for_cycles(2)
        _run(docker_client, "aw-v-error", ERROR, labels=EVIL_LABELS)
        _run(docker_client, "aw-v-spike", SPIKE, mem_limit="32m", memswap_limit="32m")

        def judged() -> dict[str, Any] | None:
            status, body = exp.get("/api/crashes")
            causes = {c["container"]: c["cause"] for c in json.loads(body)["crashes"]} if status == 200 else {}
            return causes if {"aw-v-error", "aw-v-spike"} <= causes.keys() else None

        causes = wait_for(judged, 60, interval=0.5, what="both deaths to be judged")
        status, _ = exp.get("/fleet")
        raw = exp.get("/fleet")[1].decode()
        page = dom.parse(browser.dump_dom(f"{exp.url}/fleet", tmp_path))
        shot = tmp_path / "fleet-page.png"
        size = browser.screenshot(f"{exp.url}/fleet", shot)
        crashes_cli = _cli(exp, "crashes")
        health_cli = _cli(exp, "health", "--json")
        top_cli = _cli(exp, "top")

    assert status == 200
    assert causes["aw-v-error"] == "error" and causes["aw-v-spike"] in ("memory_spike", "oom"), causes
    assert page.find("title").text == "agentwatch fleet"
    rows = {r.find("div", "name").text: r for r in page.find_all("tr", "container")}
    assert {"aw-v-steady", "aw-v-error", "aw-v-spike"} <= rows.keys(), rows.keys()
    steady = rows["aw-v-steady"]
    assert steady.attrs["data-threshold"] == "normal"
    assert "16.0 MiB of 64.0 MiB" in steady.text or "MiB of 64.0 MiB" in steady.text, steady.text
    assert steady.find("svg", "bar").attrs["aria-label"].startswith("aw-v-steady: ")
    # the labels are shown as text, exactly, and never became elements
    assert f"{EVIL_PROJECT} / {EVIL_SERVICE}" in steady.text
    assert not page.find_all("img") and not page.find_all("script")
    assert not [n for n in page.iter() if n.attrs.get("id") == "pwned" or "onerror" in n.attrs]
    assert "<script>" not in raw and "<img" not in raw

    crash_rows = {r.find("div", "name").text: r for r in page.find_all("tr", "crash")}
    assert crash_rows["aw-v-error"].attrs["data-cause"] == "error"
    assert crash_rows["aw-v-spike"].attrs["data-cause"] == causes["aw-v-spike"]
    for row in crash_rows.values():
        assert row.find("ul", "advice").find_all("li"), row.text
    assert "137 (SIGKILL)" in crash_rows["aw-v-spike"].text

    assert size == (1280, 900) and shot.stat().st_size > 20_000, (size, shot)

    assert crashes_cli.returncode == 0, crashes_cli.stderr
    lines = crashes_cli.stdout.splitlines()
    assert lines[1].split()[:3] == ["WHEN", "AGE", "CONTAINER"], lines[:2]
    assert any("aw-v-error" in line and " error " in line for line in lines), crashes_cli.stdout
    assert any(line.startswith("    advice: ") for line in lines), crashes_cli.stdout
    assert "\x1b" not in crashes_cli.stdout  # no terminal: no colour
    assert health_cli.returncode == 0, health_cli.stderr
    assert {"aw-v-steady", "aw-v-spike"} <= {c["container"] for c in json.loads(health_cli.stdout)["containers"]}
    assert top_cli.returncode == 0 and "aw-v-steady" in top_cli.stdout and "64.0 MiB" in top_cli.stdout, top_cli


def test_the_page_says_why_when_insights_are_off(tmp_path: Path):
    with ExporterProcess({"docker": {"enabled": False}, "insights": {"enabled": False}}) as exp:
        status, body = exp.get("/fleet")
        crashes = _cli(exp, "crashes")
    page = dom.parse(body.decode())
    assert status == 503
    (error,) = page.find_all("section", "error")
    assert "insights are disabled" in error.text
    assert crashes.returncode == 1 and "insights are disabled" in crashes.stderr
    assert len(crashes.stderr.strip().splitlines()) == 1 and not crashes.stdout

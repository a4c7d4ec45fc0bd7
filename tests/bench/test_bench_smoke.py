"""CI smoke run of ``python -m bench`` at the smallest sizes, so the benchmark cannot rot.

The benchmark runs only as a subprocess, as a user runs it: tests never import ``bench``.

It asserts only that the run produced a complete report (every row, every column, JSON and
Markdown present and consistent) and cleaned up after itself, also when interrupted; the figures
themselves are reported, never asserted against timings.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE_ARGS = ["--containers", "2", "--processes", "10", "--scrapes", "20", "--interval", "0.5",
              "--window", "2", "--repeat", "1", "--sdk-sample", "1", "--webhooks", "40", "--in-flight", "5",
              "--distinct", "16"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)  # the benchmark starts and uses its own engine only
    return env


def _paths_from_log(log: str) -> list[str]:
    """The workload directory and the private engine's directory the run announced."""
    return re.findall(r"(?:workload directory|Docker engine in) (\S+)", log)


def _processes_mentioning(paths: list[str]) -> list[tuple[str, bytes]]:
    """Engine, shims, agent-like processes and container processes all name one of the run's dirs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(p.encode() in cmdline for p in paths):
            found.append((entry.name, cmdline.replace(b"\0", b" ")[:120]))
    return found


def _assert_cleaned_up(paths: list[str]) -> None:
    assert paths, "the run did not announce its directories"
    for path in paths:
        assert not Path(path).exists(), f"{path} left behind"
    left = _processes_mentioning(paths)
    assert not left, f"processes of the run still alive: {left}"


def _render(results: Path, *flags: str) -> str:
    """The report as ``python -m bench.report`` renders it from the JSON (tests never import bench)."""
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(results), *flags], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _tables(md: str) -> dict[str, list[list[str]]]:
    """Each Markdown table under its ``##`` heading: the header row, then the body rows, as cells."""
    tables: dict[str, list[list[str]]] = {}
    heading = ""
    for line in md.splitlines():
        if line.startswith("## "):
            heading = line.split(" (")[0]
        elif line.startswith("|") and not line.startswith("|---"):
            tables.setdefault(heading, []).append([cell.strip() for cell in line.strip("|").split(" | ")])
    return tables


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_smoke_run_writes_a_complete_consistent_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", *SMOKE_ARGS, "--out", str(out)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=150, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "latest.json").read_text())
    md = (out / "latest.md").read_text()

    shape = [(p["kind"], p["containers"], p["processes"]) for p in data["points"]]
    assert shape == [("processes", 0, 10), ("containers", 2, 0), ("combined", 2, 10)]

    for point in data["points"]:
        aw = point["agentwatch"]
        for key in ("cycle_median_s", "cpu_per_cycle_s", "cpu_per_scrape_s", "peak_rss_bytes", "series"):
            assert _finite(aw[key]) and aw[key] >= 0, (key, aw[key])
        assert 0 < aw["scrape"]["median_s"] <= aw["scrape"]["p99_s"] <= aw["scrape"]["max_s"]
        assert aw["scrape"]["count"] == 20 and aw["cycles_in_window"] >= 1
        assert aw["peak_rss_bytes"] > 10e6 and aw["series"] > 0
        if point["processes"]:
            for pe in (point["process_exporter"], point["process_exporter_lean"]):
                assert pe["processes_matched"] == point["processes"], pe
                assert pe["scrape"]["count"] == 20 and pe["series"] > 0 and pe["peak_rss_bytes"] > 1e6
            assert aw["processes_matched"] == point["processes"], aw
        else:
            assert point["process_exporter"] is None and point["process_exporter_lean"] is None
        if point["containers"]:
            assert point["docker_stats"]["rows"] == point["containers"]
            assert point["docker_stats"]["wall_median_s"] > 0
            assert point["sdk_loop"]["sampled"] == 1 and point["sdk_loop"]["containers"] == 2
            assert point["sdk_loop"]["extrapolated"] is True
            assert _finite(aw["engine_cpu_per_cycle_s"])
            assert aw["containers_seen"] == point["containers"], aw
            bare = point["bare_reads"]
            assert bare["containers"] == point["containers"] and bare["files"] >= 5 * point["containers"], bare
            assert bare["wall_median_s"] > 0 and bare["cpu_median_s"] >= 0
        else:
            assert point["docker_stats"] is None and point["sdk_loop"] is None and point["bare_reads"] is None
        assert point["ratios"] and all(_finite(v) and v >= 0 for v in point["ratios"].values())

    # Every row of both tables has every column filled, and the Markdown is the JSON rendered.
    burst, serial = data["scaler"]["burst"], data["scaler"]["serial"]
    assert (burst["webhooks"], burst["in_flight"], burst["answered_ok"]) == (40, 5, 40), burst
    assert burst["acted"] == 2 * 16 and burst["duplicates"] == 2 * (40 - 16), burst  # two rules per alert
    assert serial["answered_ok"] == serial["webhooks"] and serial["in_flight"] == 1, serial
    assert 0 < burst["latency_p50_s"] <= burst["latency_p99_s"] <= burst["latency_max_s"]

    tables = _tables(md)
    for title, rows in (("## Per-process stats", 2), ("## Per-container stats", 2),
                        ("## Scaler under a burst of webhooks", 2), ("## Targets", 12)):
        header, *body = tables[title]
        assert len(body) == rows, (title, body)
        for row in body:
            assert len(row) == len(header) and all(row), (title, header, row)
    assert md == _render(out / "latest.json", "--markdown")
    assert md.strip() in proc.stdout

    ids = {t["id"] for t in data["targets"]}
    assert ids == {"scrape_p99_vs_process_exporter", "cpu_vs_process_exporter", "cpu_vs_process_exporter_lean",
                   "processes_collector_with_containers", "scrape_p99_combined", "rss_combined",
                   "containers_collector_vs_docker_stats", "containers_collector_vs_bare_reads",
                   "containers_per_container_flat", "scaler_burst", "series_linear_in_n", "series_constant_in_m"}
    readme = _render(out / "latest.json")
    for t in data["targets"]:
        assert t["met"] in (True, False, None)
        assert f"| {t['target']} | {t['at']} |" in md and f"| {t['target']} | {t['at']} |" in readme
    _assert_cleaned_up(_paths_from_log(proc.stderr))


#: Start the command with SIGINT ignored, as a shell starts a background job: the benchmark must
#: still stop cleanly on SIGINT, so the test does not depend on how pytest itself was launched.
SIGINT_IGNORED = ["sh", "-c", "trap '' INT; exec \"$@\"", "sh"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_cleans_up_everything(tmp_path: Path, signum: signal.Signals) -> None:
    """Ctrl-C or a timeout's SIGTERM while containers run and peers are measured, in a run started
    as a background job (SIGINT inherited ignored): no process, container or dir left."""
    log_path = tmp_path / "bench.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*SIGINT_IGNORED, sys.executable, "-m", "bench", *SMOKE_ARGS,
                                 "--out", str(tmp_path / "r")],
                                cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 90
        # The second exporter measurement is the container point: engine, containers and exporter all up.
        while log_path.read_text().count("agentwatch:") < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert proc.poll() is None, log_path.read_text()
        alive = _processes_mentioning(_paths_from_log(log_path.read_text()))
        assert any(b"urandom" in cmd for _, cmd in alive), alive  # the containers' processes run now
        assert any(b"dockerd" in cmd for _, cmd in alive), alive
        proc.send_signal(signum)
        assert proc.wait(timeout=90) == 128 + signum, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = log_path.read_text()
    assert "interrupted" in text
    assert not (tmp_path / "r").exists()
    _assert_cleaned_up(_paths_from_log(text))

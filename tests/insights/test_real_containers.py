"""Crash insights on real containers of the private engine, through a real exporter process.

Five containers: a steady one (no insight), one leaking slowly until the OOM killer ends it
(memory_leak), one allocating at once past its limit (memory_spike, or oom), one exiting 1
(error), and one crash-looping under on-failure:3 (error, the repeat and the spent budget found).
Then the exporter restarts on the same database and the insights are still there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agentwatch.local.dockerd import IMAGE
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for

MiB = 1 << 20
#: Holds 16 MiB in /dev/shm (charged to the container's memory cgroup), then sleeps.
STEADY = ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null; exec sleep 300"]
#: tail keeps its one (never ending) line in memory: about 5 MB more every second, until the OOM kill.
LEAK = ["sh", "-c", "while head -c 1000000 /dev/zero; do sleep 0.2; done | tail -n 1"]
#: A few quiet seconds (samples near zero), then one 100 MB allocation in a 32 MiB container.
SPIKE = ["sh", "-c", "sleep 4; dd if=/dev/zero of=/dev/null bs=100M count=1"]
ERROR = ["sh", "-c", "sleep 2; exit 1"]
LOOP = ["sh", "-c", "sleep 1; exit 3"]


def _run(client: Any, name: str, cmd: list[str], **kw: Any) -> Any:
    return client.containers.run(IMAGE, cmd, name=name, detach=True, network_mode="none", **kw)


def _crashes(exp: ExporterProcess, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in {"limit": "200", **query}.items())
    status, body = exp.get(f"/api/crashes?{qs}")
    assert status == 200, body
    return json.loads(body)["crashes"]


def _config(dockerd: Any, db: Path) -> dict[str, Any]:
    return {"interval_seconds": 0.5,
            "docker": {"host": dockerd.host, "timeout_seconds": 5},
            "processes": {"enabled": False},
            "insights": {"db_path": str(db), "window_seconds": 30, "min_samples": 4,
                         "min_slope_bytes_per_second": 65536, "leak_min_seconds": 4,
                         "pattern_window_seconds": 600}}


def test_real_deaths_are_classified_with_advice_and_survive_a_restart(dockerd, docker_client, tmp_path):
    steady = _run(docker_client, "aw-i-steady", STEADY, mem_limit="64m")
    wait_for(lambda: docker_client.api.stats(steady.id, stream=False, one_shot=True)["memory_stats"]["usage"]
             > 12 * MiB, 30, what="the steady container to fill its memory")
    db = tmp_path / "insights.sqlite3"
    with ExporterProcess(_config(dockerd, db)) as exp:
        exp.wait_for_cycles(2)
        _run(docker_client, "aw-i-leak", LEAK, mem_limit="48m", memswap_limit="48m")
        _run(docker_client, "aw-i-spike", SPIKE, mem_limit="32m", memswap_limit="32m")
        _run(docker_client, "aw-i-error", ERROR)
        _run(docker_client, "aw-i-loop", LOOP, restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})

        seen: list[tuple[str, str, list[str]]] = []

        def all_judged() -> dict[str, list[dict[str, Any]]] | None:
            by_name: dict[str, list[dict[str, Any]]] = {}
            for c in _crashes(exp):
                by_name.setdefault(c["container"], []).append(c)
            seen[:] = [(c["container"], c["cause"], [p["kind"] for p in c["patterns"]])
                       for cs in by_name.values() for c in cs]
            loop = by_name.get("aw-i-loop", [])
            done = (all(n in by_name for n in ("aw-i-leak", "aw-i-spike", "aw-i-error")) and len(loop) == 4
                    and any(p["kind"] == "budget_exhausted" for p in loop[0]["patterns"]))
            return by_name if done else None

        try:
            by_name = wait_for(all_judged, 120, interval=0.5, what="every death to be judged")
        except AssertionError as exc:
            states = {c.name: (c.status, c.attrs["State"]["ExitCode"], c.attrs["RestartCount"])
                      for c in docker_client.containers.list(all=True)}
            raise AssertionError(f"{exc}; judged: {seen}; engine: {states}") from None
        scrape = exp.wait_for_cycles(2)  # the API saw the store; let the snapshot catch up with the counters
        status, body = exp.get("/api/health")
        assert status == 200
        health = json.loads(body)

    assert "aw-i-steady" not in by_name, by_name.get("aw-i-steady")
    (leak,) = by_name["aw-i-leak"]
    assert leak["cause"] == "memory_leak", (leak["summary"], leak["evidence"])
    assert leak["oom"] and leak["exit_code"] == 137 and leak["signal"] == 9
    assert leak["evidence"]["samples"] >= 4 and leak["evidence"]["trend"] == "growing", leak["evidence"]
    actions = {r["action"] for r in leak["recommendations"]}
    assert {"find_leak", "raise_memory_limit", "drain_before_restart"} <= actions, actions
    raise_to = next(r["value"] for r in leak["recommendations"] if r["action"] == "raise_memory_limit")
    assert raise_to >= 48 * MiB * 1.25

    (spike,) = by_name["aw-i-spike"]
    assert spike["cause"] in ("memory_spike", "oom"), (spike["summary"], spike["evidence"])
    assert spike["oom"] and spike["exit_code"] == 137
    assert "raise_memory_limit" in {r["action"] for r in spike["recommendations"]}

    (error,) = by_name["aw-i-error"]
    assert (error["cause"], error["exit_code"], error["oom"]) == ("error", 1, False), error
    assert [r["action"] for r in error["recommendations"]] == ["read_logs"]

    loop = by_name["aw-i-loop"]  # newest first
    assert [c["cause"] for c in loop] == ["error"] * 4 and {c["exit_code"] for c in loop} == {3}
    kinds = {p["kind"] for p in loop[0]["patterns"]}
    assert {"repeated", "budget_exhausted"} <= kinds, loop[0]["patterns"]
    assert {"read_logs", "fix_then_start"} <= {r["action"] for r in loop[0]["recommendations"]}
    for insight in (leak, spike, error, *loop):
        assert insight["recommendations"] and all(r["text"] for r in insight["recommendations"]), insight

    # the counters: every cause present for the steady container, at 0; one per death elsewhere
    for cause in ("oom", "memory_leak", "memory_spike", "signal", "error", "clean"):
        assert scrape.value("agentwatch_container_crashes_total", container="aw-i-steady", cause=cause) == 0
    assert scrape.value("agentwatch_container_crashes_total", container="aw-i-leak", cause="memory_leak") == 1
    assert scrape.value("agentwatch_container_crashes_total", container="aw-i-loop", cause="error") == 4
    assert scrape.value("agentwatch_container_memory_trend", container="aw-i-steady", trend="growing") == 0
    assert scrape.value("agentwatch_container_memory_threshold_state", container="aw-i-steady", state="normal") == 1
    assert scrape.value("agentwatch_container_memory_high_watermark_bytes", container="aw-i-steady") > 12 * MiB
    assert scrape.value("agentwatch_container_health_score", container="aw-i-steady") == 100
    assert scrape.value("agentwatch_container_health_score", container="aw-i-loop") <= 60
    assert 0 <= scrape.value("agentwatch_host_health_score") <= 100
    rows = {c["container"]: c for c in health["containers"]}
    assert rows["aw-i-steady"]["score"] == 100 and rows["aw-i-steady"]["memory"]["limit_bytes"] == 64 * MiB
    assert rows["aw-i-loop"]["crashes_in_window"] == 4
    assert [p["part"] for p in rows["aw-i-loop"]["parts"]] == ["state", "memory", "trend", "crashes"]

    # a new exporter process on the same database still has them
    with ExporterProcess(_config(dockerd, db)) as again:
        again.wait_for_cycles(1)
        after = _crashes(again)
        status, body = again.get("/api/crashes?container=aw-i-loop&limit=1")
    assert {c["id"] for c in after} == {c["id"] for cs in by_name.values() for c in cs}
    assert status == 200 and json.loads(body)["crashes"][0]["patterns"] == loop[0]["patterns"]
    assert json.loads(body)["store"]["persistent"] is True
    assert time.time() - leak["at"] < 600

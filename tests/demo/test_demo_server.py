"""The demo agent server as a real subprocess: auth, capacity, concurrency, drain, agents, reaping."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from agentwatch.config import default_process_groups
from agentwatch.local.pack import KEY, DemoProcess
from agentwatch.local.process import wait_for
from agentwatch.local.scrape import Scrape

PROTECTED = [("GET", "/api/health"), ("GET", "/ready"), ("GET", "/api/agents/running"), ("POST", "/api/agents"),
             ("GET", "/api/deploy/status"), ("PUT", "/api/deploy/concurrency"), ("POST", "/api/deploy/drain"),
             ("GET", "/api/pools")]


@pytest.fixture(scope="module")
def demo():
    with DemoProcess("--max-concurrency", "2") as server:
        yield server


def _wait_idle(demo: DemoProcess, timeout: float = 15.0) -> None:
    assert wait_for(lambda: not demo.running()["agents"], timeout), demo.running()


def test_auth_required_except_live_and_metrics(demo: DemoProcess) -> None:
    for method, path in PROTECTED:
        for key in (None, "wrong-key-123456"):
            status, _, body = demo.call(method, path, {}, key=key)
            assert status == 401, (method, path, key, status, body)
    assert demo.call("GET", "/live", key=None)[0] == 200
    status, _, text = demo.call("GET", "/metrics", key=None)
    assert status == 200 and "agentwatch_app_requests_total" in text
    assert demo.call("GET", "/api/health")[0] == 200
    assert KEY not in demo.log()


def test_capacity_gives_503_with_retry_after_and_concurrency_changes_apply(demo: DemoProcess) -> None:
    _wait_idle(demo)
    first = demo.start_agent("haiku", 4)
    demo.start_agent("sonnet", 4)
    status, headers, body = demo.call("POST", "/api/agents", {"model": "opus", "seconds": 1})
    assert status == 503, body
    assert int(headers["Retry-After"]) >= 1
    assert demo.call("GET", "/api/deploy/status")[2]["accepting"] is False

    status, _, body = demo.call("PUT", "/api/deploy/concurrency", {"maxConcurrency": 3})
    assert status == 200 and body == {"maxConcurrency": 3, "previous": 2}
    third = demo.start_agent("opus", 4)
    assert demo.call("POST", "/api/agents", {"model": "opus", "seconds": 1})[0] == 503

    status, _, body = demo.call("POST", "/api/deploy/concurrency", {"maxConcurrency": 1})
    assert status == 200 and body["previous"] == 3
    deploy = demo.call("GET", "/api/deploy/status")[2]
    assert deploy["maxConcurrency"] == 1 and deploy["running"] == 3 and deploy["available"] == 0
    assert demo.call("POST", "/api/agents", {"model": "haiku", "seconds": 1})[0] == 503
    for agent in (first, third):
        assert demo.call("DELETE", f"/api/agents/{agent['id']}")[0] == 202
    for bad in ({"maxConcurrency": "5"}, {"maxConcurrency": -1}, {"maxConcurrency": True}, [], {"x": 1}):
        assert demo.call("PUT", "/api/deploy/concurrency", bad)[0] == 400, bad
    demo.call("PUT", "/api/deploy/concurrency", {"maxConcurrency": 2})
    _wait_idle(demo)


def test_bad_payloads_are_rejected(demo: DemoProcess) -> None:
    for body in ({"model": "bad model!"}, {"seconds": -1}, {"seconds": "10"}, {"mb": 1.5}, {"tool": 3}, [1, 2]):
        status, _, answer = demo.call("POST", "/api/agents", body)
        assert status == 400 and "error" in answer, (body, status, answer)
    assert demo.call("POST", "/api/agents", raw=b"{not json")[0] == 400
    assert demo.call("POST", "/api/agents", raw=b"x" * (200 * 1024))[0] == 413
    assert demo.call("DELETE", "/api/agents/nope")[0] == 404


def test_agents_are_real_processes_with_outcomes(demo: DemoProcess) -> None:
    _wait_idle(demo)
    ok = demo.start_agent("opus", 1.5)
    pid = demo.wait_for_pid(ok["id"])
    proc = psutil.Process(pid)
    cmdline = " ".join(proc.cmdline())
    # opus holds 600 MiB * 0.02 = 12 MiB on top of the interpreter
    assert wait_for(lambda: proc.memory_info().rss >= 12 * 1024 * 1024, 5), proc.memory_info()
    # the process collector's default group recognises it, with its model
    python_agent = next(g for g in default_process_groups() if g.name == "python-agent")
    match = re.search(python_agent.cmdline or "", cmdline)
    assert match and match.group("model") == "opus", cmdline
    failing = demo.start_agent("haiku", 0.2, fail=True)
    _wait_idle(demo)
    recent = {a["id"]: a for a in demo.running()["recent"]}
    assert recent[ok["id"]]["outcome"] == "success" and recent[ok["id"]]["exit_code"] == 0
    assert recent[failing["id"]]["outcome"] == "error" and recent[failing["id"]]["exit_code"] == 1
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_killed_agent_is_an_error_unless_forgotten(demo: DemoProcess) -> None:
    _wait_idle(demo)
    agent = demo.start_agent("sonnet", 60)
    os.kill(demo.wait_for_pid(agent["id"]), signal.SIGKILL)
    assert wait_for(lambda: not demo.running()["agents"], 10)
    gone = next(a for a in demo.running()["recent"] if a["id"] == agent["id"])
    assert gone["outcome"] == "error" and gone["exit_code"] == -9 and "signal 9" in gone["error"]


def test_drain_stops_new_agents_reports_progress_and_finishes() -> None:
    with DemoProcess("--max-concurrency", "5", "--exit-after-drain") as demo:
        demo.start_agent("haiku", 1.0)
        demo.start_agent("opus", 2.5)
        status, _, body = demo.call("POST", "/api/deploy/drain")
        assert status == 202 and body["draining"] is True
        assert body["drain"]["running_at_start"] == 2 and body["drain"]["remaining"] == 2
        assert body["drain"]["finished"] is False
        status, _, body = demo.call("POST", "/api/agents", {"model": "haiku", "seconds": 1})
        assert status == 503 and "draining" in body["error"]
        assert demo.call("GET", "/ready")[0] == 503

        def progress() -> float | None:
            try:
                return demo.call("GET", "/api/deploy/status", timeout=2)[2]["drain"]["progress"]
            except OSError:
                return None
        assert wait_for(lambda: progress() == 0.5, 10)
        # the last agent finishes, the drain completes and the server exits on its own
        assert demo.proc is not None
        assert wait_for(lambda: demo.proc is not None and demo.proc.poll() is not None, 15), demo.log()
        assert demo.proc.returncode == 0, demo.log()
        assert "drain finished" in demo.log()


def test_undrain_accepts_again() -> None:
    with DemoProcess() as demo:
        assert demo.call("POST", "/api/deploy/drain")[2]["drain"]["finished"] is True  # nothing was running
        assert demo.call("DELETE", "/api/deploy/drain")[2]["draining"] is False
        assert demo.call("GET", "/ready")[0] == 200
        demo.start_agent("haiku", 0.1)


def test_children_are_reaped_on_shutdown() -> None:
    demo = DemoProcess().start()
    try:
        pids = [demo.wait_for_pid(demo.start_agent(m, 120)["id"]) for m in ("haiku", "sonnet")]
        assert all(psutil.pid_exists(p) for p in pids)
    finally:
        code = demo.stop()
    assert code == 0, demo.log()
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), 10), pids


def test_workers_exit_when_the_server_is_killed() -> None:
    demo = DemoProcess().start()
    try:
        pid = demo.wait_for_pid(demo.start_agent("haiku", 120)["id"])
        assert demo.proc is not None
        demo.proc.kill()  # no chance to reap: the worker notices its parent is gone
        demo.proc.wait(5)
        assert wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 10)
    finally:
        demo.stop()


def test_requires_a_key_unless_told_otherwise() -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_DEMO_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "agentwatch.cli", "demo-agents", "--listen", "127.0.0.1:1"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "no API key" in done.stderr


def test_block_event_loop_endpoint_only_when_enabled(demo: DemoProcess) -> None:
    assert demo.call("POST", "/api/test/block-event-loop", {"seconds": 0.1})[0] == 404
    with DemoProcess("--enable-test-endpoints") as test_demo:
        assert test_demo.call("POST", "/api/test/block-event-loop", {"seconds": 1})[0] == 202
        time.sleep(0.2)
        started = time.monotonic()
        assert test_demo.call("GET", "/live", timeout=10)[0] == 200
        assert time.monotonic() - started >= 0.5  # the loop really was blocked


def test_a_bounded_queue_at_capacity_admits_in_order_and_a_drain_cancels_it() -> None:
    with DemoProcess("--max-concurrency", "1", "--max-queue", "2") as demo:
        first = demo.start_agent("haiku", 60)
        queued = [demo.start_agent("sonnet", 60), demo.start_agent("opus", 0.2)]
        assert [a["status"] for a in queued] == ["queued", "queued"] and "started_at" not in queued[0]
        status, headers, body = demo.call("POST", "/api/agents", {"model": "haiku", "seconds": 1})
        assert status == 503 and "2 queued" in body["error"] and int(headers["Retry-After"]) >= 1
        deploy = demo.call("GET", "/api/deploy/status")[2]
        assert (deploy["queued"], deploy["maxQueue"], deploy["accepting"]) == (2, 2, False)
        listing = demo.running()
        assert [a["id"] for a in listing["agents"]] == [first["id"]]
        assert [a["id"] for a in listing["queued"]] == [a["id"] for a in queued]

        # a queued agent can be removed; a free slot admits the oldest one left
        assert demo.call("DELETE", f"/api/agents/{queued[0]['id']}")[2]["outcome"] == "cancelled"
        assert demo.call("DELETE", f"/api/agents/{first['id']}")[0] == 202
        assert wait_for(lambda: any(a["id"] == queued[1]["id"] and a["outcome"] == "success"
                                    for a in demo.running()["recent"]), 15), demo.running()
        assert demo.call("GET", "/api/deploy/status")[2]["queued"] == 0

        # raising maxConcurrency admits queued agents at once; a drain cancels the ones still waiting
        demo.start_agent("haiku", 60)
        waiting = [demo.start_agent("haiku", 60)["id"] for _ in range(2)]
        demo.call("PUT", "/api/deploy/concurrency", {"maxConcurrency": 2})
        assert demo.call("GET", "/api/deploy/status")[2]["queued"] == 1
        demo.call("POST", "/api/deploy/drain")
        recent = {a["id"]: a for a in demo.running()["recent"]}
        assert recent[waiting[1]]["outcome"] == "cancelled" and "drain" in recent[waiting[1]]["error"]
        assert demo.call("GET", "/api/deploy/status")[2]["queued"] == 0


def test_own_metrics_show_queue_depth_request_latency_and_where_it_runs() -> None:
    with DemoProcess("--max-concurrency", "0", "--max-queue", "5", "--container", "agentwatch-agent-1",
                     "--compose-service", "agent") as demo:
        for _ in range(3):
            assert demo.start_agent("haiku", 1)["status"] == "queued"
        health = demo.call("GET", "/api/health")[2]
        assert health["queue_depth"] == 3 and health["compose_service"] == "agent"
        assert health["request_duration_seconds"]["count"] >= 3
        scrape = Scrape.parse(demo.call("GET", "/metrics", key=None)[2])
        assert scrape.value("agentwatch_app_queue_depth") == 3
        assert scrape.value("agentwatch_app_info", container="agentwatch-agent-1", compose_service="agent") == 1
        assert scrape.value("agentwatch_app_request_duration_seconds_count") >= 4

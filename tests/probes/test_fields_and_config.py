"""Field extraction over many JSON shapes, and the probe config's validation."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from agentwatch.collectors.probe_fields import Fields, timestamp
from agentwatch.config import ProbeFields, load
from agentwatch.configfile import ConfigError
from agentwatch.vocabulary import health_state, outcome_of

F = Fields(ProbeFields())


def test_health_shapes() -> None:
    health, problems, dropped = F.health({"status": "ok", "checks": {
        "database": {"status": "up", "latency_ms": 12.5}, "redis": "down", "memory": {"state": "warn"},
        "disk": {"status": "healthy", "latency_seconds": 0.25}}}, max_checks=10)
    assert not problems and dropped == 0
    assert health.status == "healthy"
    by_name = {c.name: c for c in health.checks}
    assert by_name["database"].status == "healthy" and by_name["database"].latency_seconds == 0.0125
    assert by_name["redis"].status == "unhealthy" and by_name["memory"].status == "degraded"
    assert by_name["disk"].latency_seconds == 0.25

    # a list of named checks, no overall word: the worst check decides
    health, problems, _ = F.health({"components": [{"name": "db", "status": "UP"}, {"name": "q", "status": "DEGRADED"},
                                                   {"status": "up"}, 5]}, max_checks=10)
    assert health.status == "degraded" and [c.name for c in health.checks] == ["db", "q"]
    assert {(p.reason, p.fatal) for p in problems} == {("missing_field", False), ("bad_type", False)}

    health, problems, dropped = F.health({"status": "pass", "checks": {f"c{i}": "ok" for i in range(5)}},
                                         max_checks=3)
    assert len(health.checks) == 3 and dropped == 2

    _, problems, _ = F.health({"uptime": 5}, max_checks=3)
    assert problems[0].reason == "missing_field" and problems[0].fatal


def test_running_shapes_and_custom_mapping() -> None:
    now = datetime.now(UTC)
    running, problems = F.running({"agents": [
        {"id": "a", "model": "opus", "started_at": now.isoformat(), "pid": 42},
        {"agentId": "b", "modelName": "haiku", "startedAt": 1_700_000_000_000},
        {"id": "c", "pid": "x", "started_at": "yesterday"},
        {"model": "no-id"},
        {"id": "a", "model": "dup"}]}, max_agents=100)
    assert [a.id for a in running.agents] == ["a", "b", "c"]
    a, b, c = running.agents
    assert a.model == "opus" and a.pid == 42 and abs(a.started_at - now.timestamp()) < 0.01
    assert b.model == "haiku" and b.started_at == 1_700_000_000.0
    assert c.model == "unknown" and c.pid is None and c.started_at is None
    assert sorted(p.reason for p in problems) == ["bad_type", "bad_type", "missing_field"]
    assert not any(p.fatal for p in problems)

    running, problems = F.running([{"id": "x"}], max_agents=100)  # a bare list body
    assert [a.id for a in running.agents] == ["x"] and not problems
    running, problems = F.running({"agents": {"k1": {"model": "m"}}}, max_agents=100)  # keyed by id
    assert running.agents[0].id == "k1"
    assert F.running({"agents": "none"}, max_agents=100)[1][0].reason == "bad_type"
    assert F.running({"count": 3}, max_agents=100)[1][0].reason == "missing_field"
    running, _ = F.running({"agents": [{"id": str(i)} for i in range(10)]}, max_agents=4)
    assert len(running.agents) == 4 and running.dropped == 6

    custom = Fields(ProbeFields(running_agents="data.sessions", agent_id="sid", agent_model="llm.name",
                                agent_started_at="t0"))
    running, problems = custom.running({"data": {"sessions": [{"sid": 7, "llm": {"name": "gpt"}, "t0": 1.7e9}]}},
                                       max_agents=10)
    assert not problems and (running.agents[0].id, running.agents[0].model) == ("7", "gpt")


def test_deploy_pools_counters() -> None:
    deploy, problems = F.deploy({"draining": True, "maxConcurrency": 8})
    assert (deploy.draining, deploy.max_concurrency, problems) == (True, 8.0, [])
    _, problems = F.deploy({"draining": "yes", "maxConcurrency": "ten"})
    assert [p.reason for p in problems] == ["bad_type", "bad_type"]
    assert F.deploy({"other": 1})[1][0].reason == "missing_field"

    pools, problems, dropped = F.pools({"pools": [{"name": "mcp", "maxSize": 20, "size": 5, "inUse": 4},
                                                  {"name": "db", "max": 10, "active": "x"}]}, max_pools=5)
    assert pools[0].values == {"max_size": 20, "size": 5, "in_use": 4, "idle": 1}
    assert pools[1].values == {"max_size": 10} and problems[0].reason == "bad_type"
    pools, _, dropped = F.pools({"a": {"size": 1}, "b": {"size": 2}, "ts": 5}, max_pools=1)
    assert [p.name for p in pools] == ["a"] and dropped == 1
    assert F.pools({"status": "ok"}, max_pools=5)[1][0].reason == "missing_field"
    assert F.counters({"stats": {"requests": 10, "errors": 2}}).errors_total == 2


def test_words_and_timestamps() -> None:
    assert [health_state(v) for v in ("OK", "passing", "Degraded", "critical", True, False, "??", 3)] == [
        "healthy", "healthy", "degraded", "unhealthy", "healthy", "unhealthy", "unknown", "unknown"]
    assert [outcome_of(v) for v in ("completed", "FAILED", "canceled", "oom_killed", "lost", "weird")] == [
        "success", "error", "cancelled", "error", "lost", "unknown"]
    assert timestamp("2024-01-01T00:00:00Z") == 1704067200.0
    assert timestamp("2024-01-01T00:00:00") == 1704067200.0
    assert timestamp(1704067200123) == pytest.approx(1704067200.123)
    assert timestamp("1704067200") == 1704067200.0
    assert timestamp(True) is None and timestamp("soon") is None and timestamp(-5) is None


def test_bad_jmespath_and_keys_are_config_errors(tmp_path) -> None:
    path = tmp_path / "agentwatch.yml"
    path.write_text("probes:\n  - name: a\n    url: http://127.0.0.1:1\n    fields:\n      pool_size: 'pools[?'\n"
                    "      typo_field: x\n    endpoints:\n      health: api/health\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert f"{path}: probes[0].fields.pool_size: not a valid JMESPath expression" in text
    assert f"{path}: probes[0].fields.typo_field: unknown key" in text
    assert f"{path}: probes[0].endpoints.health: expected a path starting with /" in text
    done = subprocess.run([sys.executable, "-m", "agentwatch.cli", "check-config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "probes[0].fields.pool_size" in done.stderr


def test_full_example_config_loads(tmp_path) -> None:
    path = tmp_path / "agentwatch.yml"
    path.write_text("""
probes:
  - name: agents-1
    url: http://127.0.0.1:8700
    api_key_env: AGENT_API_KEY
    timeout_seconds: 2
    interval_seconds: 5
    max_body_bytes: 1048576
    max_models: 20
    max_pools: 20
    max_checks: 30
    check_pids: auto
    containers: {enabled: true, docker_host: unix:///var/run/docker.sock}
    endpoints: {stats: /api/stats, pools: null}
    fields:
      running_agents: data.sessions
      agent_model: llm.name
""")
    target = load(path).probes[0]
    assert target.endpoints.pools is None and target.endpoints.stats == "/api/stats"
    assert target.fields.agent_model == "llm.name" and target.fields.health_status == ProbeFields().health_status

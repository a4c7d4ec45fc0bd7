"""The real exporter process with a corrupt or a locked insights database: one clear line, a fresh store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from agentwatch.local.pack import ExporterProcess


def _config(db: Path) -> dict[str, Any]:
    # no engine needed: the process collector alone feeds the insights
    return {"docker": {"enabled": False}, "insights": {"db_path": str(db)}, "log_format": "json"}


def _log_lines(exp: ExporterProcess, needle: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (exp.dir / "exporter.log").read_text().splitlines() if line.startswith("{")]
    return [r for r in lines if needle in r["msg"]]


def test_a_corrupt_database_is_set_aside_and_the_apis_answer(tmp_path):
    db = tmp_path / "insights.sqlite3"
    db.write_bytes(b"\x00garbage, not SQLite\n" * 512)
    with ExporterProcess(_config(db)) as exp:
        scrape = exp.wait_for_cycles(1)
        status, body = exp.get("/api/crashes")
        assert status == 200, body
        crashes = json.loads(body)
        status, body = exp.get("/api/health")
        assert status == 200, body
        health = json.loads(body)
        bad = {q: exp.get(f"/api/crashes?{q}") for q in ("limit=0", "limit=x", "cause=nope", "since=-1")}
        assert exp.alive()
        (line,) = _log_lines(exp, "not a usable database")
    assert line["level"] == "error" and str(db) in line["msg"] and "moved it to" in line["msg"]
    assert len(list(tmp_path.glob("insights.sqlite3.corrupt-*"))) == 1
    assert sqlite3.connect(db).execute("SELECT value FROM meta").fetchone() == ("1",), "a fresh store"
    assert crashes["crashes"] == [] and crashes["store"] == {"persistent": True, "path": str(db), "records": 0}
    assert 0 <= health["host"]["score"] <= 100 and health["host"]["memory_total_bytes"] > 0
    assert [p["part"] for p in health["host"]["parts"]] == ["memory", "containers", "crashes", "leaks"]
    for query, (status, payload) in bad.items():
        assert status == 400 and json.loads(payload)["error"].split(":")[0] in query, (query, payload)
    assert scrape.value("agentwatch_insights_store_errors_total", reason="corrupt") == 1
    assert scrape.value("agentwatch_insights_store_errors_total", reason="locked") == 0
    assert scrape.value("agentwatch_host_health_score") is not None


def test_a_locked_database_is_left_alone_and_insights_kept_in_memory(tmp_path):
    db = tmp_path / "insights.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE mine (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with ExporterProcess(_config(db)) as exp:
            scrape = exp.wait_for_cycles(1)
            status, body = exp.get("/api/crashes")
            assert exp.alive()
            (line,) = _log_lines(exp, "locked by another process")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert line["level"] == "error" and "in memory" in line["msg"]
    assert status == 200 and json.loads(body)["store"] == {"persistent": False, "path": None, "records": 0}
    assert scrape.value("agentwatch_insights_store_errors_total", reason="locked") == 1
    assert sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall() == [("mine",)], "untouched"

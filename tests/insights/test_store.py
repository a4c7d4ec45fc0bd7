"""The SQLite store: it survives reopening, stays bounded, and a corrupt or locked file never stops it."""

from __future__ import annotations

import logging
import os
import sqlite3
import time

from agentwatch.insights.crashes import Insight
from agentwatch.insights.store import InsightStore


def insight(n: int, container: str = "worker-1", cause: str = "error", at: float | None = None) -> Insight:
    return Insight(at=at if at is not None else time.time() - 1000 + n, container=container,
                   container_id="0123456789ab", image="agent:local", compose_project="p", compose_service="s",
                   exit_code=1, signal=None, oom=False, cause=cause, summary=f"exited with error code 1 ({n})",
                   evidence={"samples": n}, patterns=[], recommendations=[{"action": "read_logs", "text": "t",
                                                                            "value": None}])


def test_insights_survive_reopening(tmp_path):
    path = tmp_path / "state" / "insights.sqlite3"
    store = InsightStore(str(path))
    stored = store.add(insight(1))
    store.add(insight(2, container="other", cause="memory_leak"))
    assert stored.id is not None and store.persistent
    store.replace_patterns(stored.id, [{"kind": "budget_exhausted", "count": 3, "detail": "d"}],
                           stored.recommendations)
    store.close()
    again = InsightStore(str(path))
    assert again.records() == 2
    newest, oldest = again.recent()
    assert (newest.container, newest.cause) == ("other", "memory_leak")
    assert oldest.as_json() == {**stored.as_json(), "patterns": [{"kind": "budget_exhausted", "count": 3,
                                                                   "detail": "d"}]}
    assert [i.container for i in again.recent(container="worker-1")] == ["worker-1"]
    assert [i.cause for i in again.recent(cause="memory_leak")] == ["memory_leak"]
    assert again.recent(since=time.time() + 10) == []
    assert again.count_cause("worker-1", "error", 0) == 1
    assert again.latest_for("0123456789abcdef").id == 2
    assert again.crashes_since(0)["worker-1"][:1] == (1,)


def test_records_and_age_are_bounded(tmp_path):
    store = InsightStore(str(tmp_path / "db"), max_records=10)
    for n in range(30):  # 1000 s to 970 s old
        store.add(insight(n))
    assert store.records() == 10
    assert [i.evidence["samples"] for i in store.recent(limit=3)] == [29, 28, 27]
    store.close()
    younger = InsightStore(str(tmp_path / "db"), max_records=10, retention_seconds=500)
    younger.add(insight(99, at=time.time() - 10))
    assert [i.evidence["samples"] for i in younger.recent(limit=100)] == [99]


def test_file_size_is_bounded(tmp_path):
    path = tmp_path / "db"
    store = InsightStore(str(path), max_bytes=256 * 1024, max_records=100_000)
    big = "x" * 6000
    for n in range(400):
        i = insight(n)
        i.summary = big
        store.add(i)
    assert os.path.getsize(path) <= 256 * 1024
    assert 0 < store.records() < 400
    assert store.recent(limit=1)[0].evidence["samples"] == 399, "the newest is always kept"


def test_a_corrupt_file_is_set_aside_with_one_log_line_and_a_fresh_store(tmp_path, caplog):
    path = tmp_path / "insights.sqlite3"
    path.write_bytes(b"this is not a database, " * 100)
    errors: list[str] = []
    with caplog.at_level(logging.ERROR, logger="agentwatch.insights.store"):
        store = InsightStore(str(path), on_error=errors.append)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "not a usable database" in lines[0] and str(path) in lines[0], lines
    assert errors == ["corrupt"]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("insights.sqlite3.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert store.persistent and store.add(insight(1)).id == 1 and store.records() == 1


def test_a_newer_schema_is_set_aside_too(tmp_path, caplog):
    path = tmp_path / "db"
    InsightStore(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with caplog.at_level(logging.ERROR, logger="agentwatch.insights.store"):
        store = InsightStore(str(path))
    assert "schema version 99" in caplog.text
    assert store.records() == 0 and store.persistent


def test_a_locked_file_is_left_alone_and_insights_kept_in_memory(tmp_path, caplog):
    path = tmp_path / "db"
    InsightStore(str(path)).add(insight(1))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    errors: list[str] = []
    try:
        with caplog.at_level(logging.ERROR, logger="agentwatch.insights.store"):
            store = InsightStore(str(path), on_error=errors.append)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "locked by another process" in lines[0], lines
        assert errors == ["locked"] and not store.persistent
        assert store.add(insight(2)).id == 1 and store.records() == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert InsightStore(str(path)).records() == 1, "the other process's file is untouched"


def test_a_file_that_cannot_be_created_means_memory(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.ERROR, logger="agentwatch.insights.store"):
        store = InsightStore(str(blocker / "sub" / "db"))
    assert "cannot create the insights store" in caplog.text
    assert not store.persistent and store.add(insight(1)).id == 1


def test_a_write_that_fails_later_is_logged_once_and_never_raises(tmp_path, caplog):
    path = tmp_path / "db"
    errors: list[str] = []
    store = InsightStore(str(path), on_error=errors.append)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, logger="agentwatch.insights.store"):
            for n in range(3):
                assert store.add(insight(n)).id is None
            assert store.recent() == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert errors.count("locked") == 4
    assert len([r for r in caplog.records if "failed to add" in r.getMessage()]) == 1
    assert store.add(insight(9)).id is not None, "writable again once the lock is gone"

"""Crash insights on disk: a small SQLite database (the standard library's) that outlives the exporter.

Schema (version 1; ``meta.schema_version``)::

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE crashes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,                -- the death, Unix seconds (engine clock)
        container TEXT NOT NULL, container_id TEXT NOT NULL, image TEXT NOT NULL,
        compose_project TEXT NOT NULL, compose_service TEXT NOT NULL,
        exit_code INTEGER, signal INTEGER, oom INTEGER NOT NULL,
        cause TEXT NOT NULL,             -- oom | memory_leak | memory_spike | signal | error | clean
        summary TEXT NOT NULL,
        evidence TEXT NOT NULL,          -- JSON object
        patterns TEXT NOT NULL,          -- JSON list
        recommendations TEXT NOT NULL    -- JSON list
    );
    CREATE INDEX crashes_at ON crashes (at);
    CREATE INDEX crashes_container ON crashes (container, at);

Bounded: at most ``max_records`` rows (the oldest go first), none older than ``retention_seconds``,
and the file never grows past ``max_bytes`` (``PRAGMA max_page_count``; when full, the oldest half
goes). Texts are cut to a few KiB. A file that is not a database (or a newer schema) is renamed to
``<path>.corrupt-<unix time>`` and a fresh one made; a file another process holds locked is left
alone and the insights are kept in memory for this run. Either way: one log line, a counted error
(``agentwatch_insights_store_errors_total``), never a crash. Every call is serialised on one lock;
each is a few small statements.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentwatch.insights.crashes import Insight
from agentwatch.log import OnceLogger

log = logging.getLogger("agentwatch.insights.store")

SCHEMA_VERSION = 1
#: Longest text kept in one column (JSON included).
MAX_TEXT = 8192
#: How long a statement waits for another process's lock before giving up.
BUSY_TIMEOUT_SECONDS = 0.5
STORE_ERRORS = ("corrupt", "locked", "write", "read")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS crashes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    container TEXT NOT NULL,
    container_id TEXT NOT NULL,
    image TEXT NOT NULL,
    compose_project TEXT NOT NULL,
    compose_service TEXT NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    oom INTEGER NOT NULL,
    cause TEXT NOT NULL,
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL,
    patterns TEXT NOT NULL,
    recommendations TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS crashes_at ON crashes (at);
CREATE INDEX IF NOT EXISTS crashes_container ON crashes (container, at);
"""
_COLUMNS = ("id", "at", "container", "container_id", "image", "compose_project", "compose_service", "exit_code",
            "signal", "oom", "cause", "summary", "evidence", "patterns", "recommendations")


class StoreUnusable(Exception):
    """The file cannot serve as the store; ``reason`` is corrupt or locked."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= MAX_TEXT else json.dumps({"truncated": True})


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class InsightStore:
    """Stored crash insights (see the module docstring); ``path`` None keeps them in memory."""

    def __init__(self, path: str | None, max_bytes: int = 16 * 1024 * 1024, max_records: int = 5000,
                 retention_seconds: float = 30 * 86400.0,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.retention_seconds = retention_seconds
        self._on_error = on_error or (lambda reason: None)
        self._lock = threading.Lock()
        self._once = OnceLogger(log)
        self.path: str | None = None
        self._db = self._open(path)

    # -- opening ---------------------------------------------------------------------------------

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def _open(self, path: str | None) -> sqlite3.Connection:
        if path is None:
            return self._connect(":memory:")
        target = os.path.expanduser(path)
        try:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            db = self._connect(target)
            self.path = target
            return db
        except StoreUnusable as exc:
            self._on_error(exc.reason)
            if exc.reason == "locked":
                log.error("insights store %s is locked by another process (%s); keeping insights in memory "
                          "for this run", target, exc)
                return self._connect(":memory:")
            aside = f"{target}.corrupt-{int(time.time())}"
            try:
                os.replace(target, aside)
            except OSError as move:
                log.error("insights store %s is unusable (%s) and cannot be moved aside (%s); keeping insights "
                          "in memory for this run", target, exc, move.strerror or move)
                return self._connect(":memory:")
            for suffix in ("-journal", "-wal", "-shm"):
                try:
                    os.replace(target + suffix, aside + suffix)
                except OSError:
                    pass
            log.error("insights store %s is not a usable database (%s); moved it to %s and started a fresh "
                      "store", target, exc, aside)
            try:
                db = self._connect(target)
            except StoreUnusable as again:
                log.error("fresh insights store %s is unusable too (%s); keeping insights in memory", target, again)
                return self._connect(":memory:")
            self.path = target
            return db
        except OSError as exc:
            self._on_error("write")
            log.error("cannot create the insights store %s (%s); keeping insights in memory for this run",
                      target, exc.strerror or exc)
            return self._connect(":memory:")

    def _connect(self, target: str) -> sqlite3.Connection:
        """A ready connection with the schema, or StoreUnusable (corrupt or locked)."""
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False,
                                 isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            check = db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise StoreUnusable("corrupt", f"integrity check: {check[0] if check else 'no answer'}")
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(16, self.max_bytes // page_size)}")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreUnusable("corrupt", f"schema version {row[0]}, this agentwatch reads {SCHEMA_VERSION}")
            got = {r[1] for r in db.execute("PRAGMA table_info(crashes)")}
            if not set(_COLUMNS) <= got:
                raise StoreUnusable("corrupt", "the crashes table lacks columns of schema version 1")
            db.execute("COMMIT")
            return db
        except StoreUnusable:
            if db is not None:
                db.close()
            raise
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            if _is_locked(exc):
                raise StoreUnusable("locked", str(exc)) from None
            raise StoreUnusable("corrupt", str(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- calls -----------------------------------------------------------------------------------

    def _failed(self, reason: str, what: str, exc: Exception) -> None:
        self._on_error(reason)
        self._once.problem(f"{reason}:{what}", "insights store %s failed to %s: %s", self.path or "(memory)",
                           what, exc)

    def add(self, insight: Insight) -> Insight:
        """Store one insight (its ``id`` set); on a write failure it is returned unstored."""
        row = (insight.at, _cut(insight.container, 256), insight.container_id[:64], _cut(insight.image, 512),
               _cut(insight.compose_project, 256), _cut(insight.compose_service, 256), insight.exit_code,
               insight.signal, int(insight.oom), insight.cause, _cut(insight.summary, 1024),
               _json(insight.evidence), _json(insight.patterns), _json(insight.recommendations))
        with self._lock:
            for attempt in range(2):
                try:
                    cur = self._db.execute(
                        "INSERT INTO crashes (at, container, container_id, image, compose_project, compose_service, "
                        "exit_code, signal, oom, cause, summary, evidence, patterns, recommendations) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                    insight.id = cur.lastrowid
                    self._prune()
                    self._once.cleared("write:add", "insights store writable again")
                    return insight
                except sqlite3.Error as exc:
                    if attempt == 0 and "full" in str(exc).lower():
                        self._drop_oldest_half()
                        continue
                    self._failed("locked" if _is_locked(exc) else "write", "add", exc)
                    return insight
        return insight

    def replace_patterns(self, record_id: int, patterns: list[dict[str, Any]],
                         recommendations: list[dict[str, Any]]) -> None:
        with self._lock:
            try:
                self._db.execute("UPDATE crashes SET patterns = ?, recommendations = ? WHERE id = ?",
                                 (_json(patterns), _json(recommendations), record_id))
            except sqlite3.Error as exc:
                self._failed("locked" if _is_locked(exc) else "write", "update", exc)

    def _prune(self) -> None:
        self._db.execute("DELETE FROM crashes WHERE at < ?", (time.time() - self.retention_seconds,))
        self._db.execute("DELETE FROM crashes WHERE id <= (SELECT id FROM crashes ORDER BY id DESC "
                         "LIMIT 1 OFFSET ?)", (self.max_records,))

    def _drop_oldest_half(self) -> None:
        try:
            self._db.execute("DELETE FROM crashes WHERE id <= (SELECT id FROM crashes ORDER BY id "
                             "LIMIT 1 OFFSET (SELECT COUNT(*) / 2 FROM crashes))")
            self._db.execute("VACUUM")
        except sqlite3.Error as exc:
            self._failed("write", "make room", exc)

    def _query(self, sql: str, args: tuple[Any, ...], what: str) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                self._failed("locked" if _is_locked(exc) else "read", what, exc)
                return []
        self._once.cleared(f"read:{what}", "insights store readable again")
        return rows

    def recent(self, limit: int = 50, container: str | None = None, cause: str | None = None,
               since: float | None = None) -> list[Insight]:
        """The newest insights first, filtered."""
        where: list[str] = []
        args: list[Any] = []
        if container is not None:
            where.append("container = ?")
            args.append(container)
        if cause is not None:
            where.append("cause = ?")
            args.append(cause)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM crashes" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY at DESC, id DESC LIMIT ?")
        return [_insight(r) for r in self._query(sql, (*args, limit), "read recent")]

    def latest_for(self, container_id: str) -> Insight | None:
        rows = self._query(f"SELECT {', '.join(_COLUMNS)} FROM crashes WHERE container_id = ? "
                           "ORDER BY at DESC, id DESC LIMIT 1", (container_id[:12],), "read latest")
        return _insight(rows[0]) if rows else None

    def count_cause(self, container: str, cause: str, since: float) -> int:
        rows = self._query("SELECT COUNT(*) FROM crashes WHERE container = ? AND cause = ? AND at >= ?",
                           (container, cause, since), "count")
        return int(rows[0][0]) if rows else 0

    def crashes_since(self, since: float) -> dict[str, tuple[int, float, str, int | None]]:
        """Per container: non-clean crashes since ``since``, and the time, cause and exit code of the last."""
        rows = self._query(
            "SELECT c.container, n.total, c.at, c.cause, c.exit_code FROM crashes c JOIN "
            "(SELECT container, COUNT(*) AS total, MAX(id) AS last FROM crashes WHERE at >= ? AND cause != 'clean' "
            "GROUP BY container) n ON c.id = n.last", (since,), "summarise")
        return {r[0]: (int(r[1]), float(r[2]), str(r[3]), r[4]) for r in rows}

    def records(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM crashes", (), "count records")
        return int(rows[0][0]) if rows else 0


def _insight(row: tuple[Any, ...]) -> Insight:
    data = dict(zip(_COLUMNS, row, strict=True))

    def parsed(key: str, empty: Any) -> Any:
        try:
            value = json.loads(data[key])
        except (TypeError, ValueError):
            return empty
        return value if isinstance(value, type(empty)) else empty

    return Insight(at=float(data["at"]), container=data["container"], container_id=data["container_id"],
                   image=data["image"], compose_project=data["compose_project"],
                   compose_service=data["compose_service"], exit_code=data["exit_code"], signal=data["signal"],
                   oom=bool(data["oom"]), cause=data["cause"], summary=data["summary"],
                   evidence=parsed("evidence", {}), patterns=parsed("patterns", []),
                   recommendations=parsed("recommendations", []), id=int(data["id"]))

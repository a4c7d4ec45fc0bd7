"""The audit trail: one JSON object per line for every decision and every action result.

Writes happen on the scaler's I/O thread (never on the event loop). A write that fails is logged
once and counted; the decision itself is not lost (it is still in /actions and the metrics).

The file is rotated by size so it cannot fill the disk: when a line would take it past
``max_bytes``, ``audit.jsonl`` becomes ``audit.jsonl.1`` (``.1`` becomes ``.2`` and so on) and the
oldest beyond ``backups`` is deleted. At most ``backups + 1`` files exist; the newest records are
always in ``audit.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from agentwatch.log import OnceLogger, redact

logger = logging.getLogger("agentwatch.scaler.audit")

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


class AuditLog:
    """Append-only JSON lines, rotated by size; secrets are redacted before anything reaches the file."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.errors = 0
        self._lock = threading.Lock()
        self._once = OnceLogger(logger)

    def backup(self, n: int) -> Path:
        """The n-th rotated file (1 is the most recent)."""
        return self.path.with_name(f"{self.path.name}.{n}")

    def append(self, record: dict[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        """Write records in order with one open of the file (a burst of decisions is one write)."""
        lines = [(redact(json.dumps(r, separators=(",", ":"), default=str)) + "\n").encode("utf-8", "replace")
                 for r in records]
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                size = self._size()
                pending: list[bytes] = []
                for line in lines:
                    if size and size + len(line) > self.max_bytes:
                        self._write(pending)
                        pending = []
                        self._rotate()
                        size = 0
                    pending.append(line)
                    size += len(line)
                self._write(pending)
                self._once.cleared("write", "audit log %s writable again", str(self.path))
            except OSError as exc:
                self.errors += 1
                self._once.problem("write", "cannot write audit log %s: %s", str(self.path), exc.strerror or exc)

    def _write(self, lines: list[bytes]) -> None:
        if lines:
            with open(self.path, "ab") as fh:
                fh.write(b"".join(lines))

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _rotate(self) -> None:
        """audit.jsonl -> .1 -> .2 ... ; the file past ``backups`` is deleted (all of it when 0)."""
        if self.backups == 0:
            os.truncate(self.path, 0)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.backup(self.backups))
        for n in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.backup(n), self.backup(n + 1))
        os.replace(self.path, self.backup(1))

    def files(self) -> list[Path]:
        """The audit files that exist, oldest first (the live file last)."""
        candidates = [self.backup(n) for n in range(self.backups, 0, -1)] + [self.path]
        return [p for p in candidates if p.exists()]

    def read(self) -> list[dict[str, Any]]:
        """Every record still kept, oldest first (for tests and tools); unreadable lines are skipped."""
        out: list[dict[str, Any]] = []
        for path in self.files():
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

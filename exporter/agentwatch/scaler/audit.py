"""The audit trail: one JSON object per line for every decision and every action result.

Writes happen on the scaler's I/O thread (never on the event loop). A write that fails is logged
once and counted; the decision itself is not lost (it is still in /actions and the metrics).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from agentwatch.log import OnceLogger, redact

logger = logging.getLogger("agentwatch.scaler.audit")


class AuditLog:
    """Append-only JSON lines; secrets are redacted before anything reaches the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.errors = 0
        self._lock = threading.Lock()
        self._once = OnceLogger(logger)

    def append(self, record: dict[str, Any]) -> None:
        line = redact(json.dumps(record, separators=(",", ":"), default=str)) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
                self._once.cleared("write", "audit log %s writable again", str(self.path))
            except OSError as exc:
                self.errors += 1
                self._once.problem("write", "cannot write audit log %s: %s", str(self.path), exc.strerror or exc)

    def read(self) -> list[dict[str, Any]]:
        """Every record (for tests and tools); unreadable lines are skipped."""
        out: list[dict[str, Any]] = []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

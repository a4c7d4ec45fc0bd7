"""Structured logs: one JSON object per line (default) or plain text.

Secrets registered with ``register_secret`` are replaced by ``***`` in every record, so an API
key or webhook URL that ends up in an exception message never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

#: Replaced, never mutated, under the lock (copy on write): ``redact`` reads it without the lock
#: while other threads register secrets, and always sees a whole tuple.
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()
_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def register_secret(value: str | None) -> None:
    """Never log this value (ignored when empty or very short, to avoid redacting noise)."""
    global _secrets
    if value and len(value) >= 6:
        with _secrets_lock:
            if value not in _secrets:
                # longest first, so a secret that contains another is replaced whole
                _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``; safe while others register."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STD_ATTRS and not k.startswith("_")}
        line = super().format(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return redact(line)


def setup(fmt: str = "json", level: str = "info") -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("docker").setLevel(logging.WARNING)


class OnceLogger:
    """Log a condition once when it starts and once when it clears, not on every cycle."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._active: set[str] = set()

    def problem(self, key: str, msg: str, *args: Any, **extra: Any) -> None:
        if key not in self._active:
            self._active.add(key)
            self._logger.warning(msg, *args, extra=extra)

    def cleared(self, key: str, msg: str, *args: Any, **extra: Any) -> None:
        if key in self._active:
            self._active.discard(key)
            self._logger.info(msg, *args, extra=extra)

    def is_active(self, key: str) -> bool:
        return key in self._active

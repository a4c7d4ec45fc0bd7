"""Secrets are redacted from every log line, also while other threads register new ones."""

from __future__ import annotations

import io
import logging
import sys
import threading
from types import ModuleType

from agentwatch import log

REGISTERING_THREADS = 4
SECRETS_PER_THREAD = 300
REDACTING_THREADS = 4
REDACTS_PER_THREAD = 2000


def hammer(module: ModuleType, tag: str) -> list[BaseException]:
    """Register secrets from some threads while others redact; return what the threads raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(REGISTERING_THREADS + REDACTING_THREADS)

    def register(t: int) -> None:
        start.wait()
        for i in range(SECRETS_PER_THREAD):
            module.register_secret(f"{tag}-secret-{t}-{i:05d}")

    def redact() -> None:
        start.wait()
        try:
            for i in range(REDACTS_PER_THREAD):
                module.redact(f"line {i} with {tag}-secret-0-00000 in it")
        except BaseException as exc:  # what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(t,)) for t in range(REGISTERING_THREADS)]
    threads += [threading.Thread(target=redact) for _ in range(REDACTING_THREADS)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows at once
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    finally:
        sys.setswitchinterval(old)
    return errors


def test_redact_while_secrets_are_registered_from_other_threads():
    errors = hammer(log, "h3race")
    assert errors == [], f"redact raised while secrets were registered: {errors[:1]!r}"
    for t in range(REGISTERING_THREADS):
        for i in (0, SECRETS_PER_THREAD - 1):
            assert log.redact(f"key=h3race-secret-{t}-{i:05d}!") == "key=***!"


def test_a_secret_containing_another_is_replaced_whole():
    log.register_secret("h3nest-abcdef")
    log.register_secret("h3nest-abcdef-longer")
    assert log.redact("a h3nest-abcdef-longer b h3nest-abcdef") == "a *** b ***"


def test_log_lines_carry_no_registered_secret():
    log.register_secret("h3line-topsecret")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log.TextFormatter())
    logger = logging.getLogger("agentwatch.test_log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("failed with key %s", "h3line-topsecret", extra={"url": "http://x/?k=h3line-topsecret"})
    finally:
        logger.removeHandler(handler)
    assert "h3line-topsecret" not in out.getvalue() and "***" in out.getvalue()

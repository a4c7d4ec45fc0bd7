"""What the demo saw, when: one clock, one printer, a list of events and bounded waits on them.

Every line the demo prints starts with the time since it started, so a reader can follow the loop
(failure, alert pending, firing, delivered, decided, resolved) and see how long each hop took. The
watchers and the chat receivers print from their own threads, hence the lock. Every wait is bounded
and prints a progress line every few seconds, so a long ``for:`` never looks like a hang.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

T = TypeVar("T")
PROGRESS_EVERY = 5.0
POLL = 0.5


class DurationReached(Exception):
    """``--duration`` has elapsed: stop, successfully."""


@dataclass(frozen=True)
class Event:
    """One observation: an alert changed state, a message arrived, the scaler decided, the engine acted."""

    at: float  # time.monotonic()
    source: str  # prometheus, slack, discord, scaler, engine, agents
    kind: str  # pending, firing, resolved, delivered, decision, ...
    alertname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


class Timeline:
    """The demo's clock, printer and event list; ``deadline`` (monotonic) ends every wait when given."""

    def __init__(self, out: IO[str] | None = None, deadline: float | None = None) -> None:
        self.start = time.monotonic()
        self.deadline = deadline
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def since(self, at: float | None = None) -> float:
        return (time.monotonic() if at is None else at) - self.start

    def say(self, source: str, text: str, at: float | None = None) -> None:
        """Print ``text`` (first line stamped, later lines indented) and flush: the output may be a pipe."""
        stamp = f"+{self.since(at):7.1f}s"
        lines = text.splitlines() or [""]
        with self._lock:
            self.out.write(f"{stamp}  {source:<10} {lines[0]}\n")
            for line in lines[1:]:
                self.out.write(f"{'':>9}  {'':<10} {line}\n")
            self.out.flush()

    def plain(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def add(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def find(self, predicate: Callable[[Event], bool], after: float = 0.0) -> Event | None:
        """The first event at or after ``after`` (monotonic) that matches."""
        return next((e for e in self.events() if e.at >= after and predicate(e)), None)

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DurationReached

    def sleep(self, seconds: float) -> None:
        """Sleep, but no further than the deadline."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.check_deadline()
            time.sleep(min(POLL, left))
        self.check_deadline()

    def wait(self, what: str, check: Callable[[], T | None], timeout: float) -> T | None:
        """Poll ``check`` until it returns something truthy; None after ``timeout``; progress every few seconds."""
        started = time.monotonic()
        shown = started
        while True:
            self.check_deadline()
            result = check()
            if result:
                return result
            now = time.monotonic()
            if now - started >= timeout:
                return None
            if now - shown >= PROGRESS_EVERY:
                shown = now
                self.say("...", f"waiting for {what} ({now - started:.0f}s, at most {timeout:.0f}s)")
            time.sleep(POLL)

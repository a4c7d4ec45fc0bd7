"""The figures of one client pool, as the pool reports them (hooks, or ``set`` for pools that keep
their own figures); the wait time is a prometheus_client histogram."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from prometheus_client import Histogram

#: Keys of ``PoolMetrics.figures()`` and of a ``pool_stats`` source, and the metric each one feeds.
FIGURE_METRICS = {"max_size": "agentwatch_pool_max_size", "size": "agentwatch_pool_size",
                  "in_use": "agentwatch_pool_in_use", "idle": "agentwatch_pool_idle",
                  "waiting": "agentwatch_pool_waiting", "evictions": "agentwatch_pool_evictions_total"}


class PoolMetrics:
    """Figures of one client pool; the pool calls these hooks (or ``set``) as it works.

    Size, use and evictions stay plain numbers, read at scrape time: ``set`` copies in figures a
    pool keeps itself (evictions as its running total), which a prometheus_client Counter cannot take.
    """

    def __init__(self, name: str, max_size: int, wait: Histogram) -> None:
        self.name = name
        self.max_size = max_size
        self.size = 0
        self.in_use = 0
        self.waiting = 0
        self.evictions = 0
        #: Time callers waited for a client (``agentwatch_pool_wait_seconds`` of this pool).
        self.wait = wait
        self._idle: int | None = None
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        return self._idle if self._idle is not None else max(0, self.size - self.in_use)

    def opened(self, n: int = 1) -> None:
        with self._lock:
            self.size += n

    def closed(self, n: int = 1, evicted: bool = False) -> None:
        with self._lock:
            self.size = max(0, self.size - n)
            if evicted:
                self.evictions += n

    def checked_out(self) -> None:
        with self._lock:
            self.in_use += 1

    def checked_in(self) -> None:
        with self._lock:
            self.in_use = max(0, self.in_use - 1)

    @contextlib.contextmanager
    def waiting_for_client(self) -> Iterator[None]:
        """Wrap the wait for a client: counts the waiter and observes the wait time."""
        with self._lock:
            self.waiting += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.waiting -= 1
            self.wait.observe(time.perf_counter() - start)

    def set(self, *, max_size: int | None = None, size: int | None = None, in_use: int | None = None,
            idle: int | None = None, waiting: int | None = None, evictions: int | None = None) -> None:
        """For pools that keep their own figures: copy them in (evictions is a running total)."""
        with self._lock:
            for key, value in (("max_size", max_size), ("size", size), ("in_use", in_use),
                               ("waiting", waiting), ("evictions", evictions)):
                if value is not None:
                    setattr(self, key, value)
            if idle is not None:
                self._idle = idle

    def figures(self) -> dict[str, float]:
        """The current figures, keyed like ``FIGURE_METRICS``."""
        with self._lock:
            return {"max_size": self.max_size, "size": self.size, "in_use": self.in_use, "idle": self.idle,
                    "waiting": self.waiting, "evictions": self.evictions}

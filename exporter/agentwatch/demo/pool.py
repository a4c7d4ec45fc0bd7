"""An MCP-style client pool: bounded size, reuse by key, LRU eviction of idle clients, idle cleanup.

Agent servers keep one client per tool server (MCP) and reuse it across agents; the pool is where
they run out first. When the pool is full, an idle client of another key is evicted (least recently
used first); when every client is in use, callers wait (counted in ``waiting``) up to a deadline.
Figures go to an ``agentwatch.instrument.PoolMetrics`` so the server exports them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from agentwatch.instrument import PoolMetrics


class PoolTimeout(Exception):
    """No client became free before the deadline."""


@dataclass(eq=False)
class Client:
    """A stand-in for a connected MCP client (the pool logic around it is the real part)."""

    key: str
    id: int
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False

    async def close(self) -> None:
        self.closed = True


class ClientPool:
    def __init__(self, metrics: PoolMetrics, max_size: int = 20, idle_seconds: float = 60.0) -> None:
        self.metrics = metrics
        self.max_size = max_size
        self.idle_seconds = idle_seconds
        self._idle: OrderedDict[Client, None] = OrderedDict()  # least recently used first
        self._in_use: set[Client] = set()
        self._reserved = 0
        self._waiting = 0
        self.evictions = 0
        self._ids = itertools.count(1)
        self._cond = asyncio.Condition()
        self._cleaner: asyncio.Task[None] | None = None
        self._publish()

    def stats(self) -> dict[str, int]:
        return {"max_size": self.max_size, "size": len(self._idle) + len(self._in_use) + self._reserved,
                "in_use": len(self._in_use) + self._reserved, "idle": len(self._idle),
                "waiting": self._waiting, "evictions": self.evictions}

    def _publish(self) -> None:
        self.metrics.set(**self.stats())

    async def acquire(self, key: str, timeout: float = 30.0) -> Client:
        """A client for ``key``: an idle one, a new one, or (full pool) one freed by LRU eviction."""
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        evicted: Client | None = None
        async with self._cond:
            while True:
                same = next((c for c in self._idle if c.key == key), None)
                if same is not None:
                    del self._idle[same]
                    same.last_used = time.monotonic()
                    self._in_use.add(same)
                    client: Client | None = same
                    break
                size = len(self._idle) + len(self._in_use) + self._reserved
                if size < self.max_size or self._idle:
                    if size >= self.max_size:
                        evicted, _ = self._idle.popitem(last=False)
                        self.evictions += 1
                    self._reserved += 1
                    client = None
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    self.metrics.wait.observe(time.perf_counter() - start)
                    raise PoolTimeout(f"no {key} client within {timeout:g}s ({self.max_size} in use)")
                self._waiting += 1
                self._publish()
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), timeout=left)
                finally:
                    self._waiting -= 1
            self._publish()
        if evicted is not None:
            await evicted.close()
        if client is None:
            client = Client(key, next(self._ids))  # "connect" outside the lock
            async with self._cond:
                self._reserved -= 1
                self._in_use.add(client)
                self._publish()
        self.metrics.wait.observe(time.perf_counter() - start)
        return client

    async def release(self, client: Client) -> None:
        async with self._cond:
            if client in self._in_use:
                self._in_use.discard(client)
                client.last_used = time.monotonic()
                self._idle[client] = None
            self._publish()
            self._cond.notify()

    async def close_idle(self, older_than: float | None = None) -> int:
        """Close idle clients unused for ``older_than`` seconds (default: idle_seconds)."""
        limit = self.idle_seconds if older_than is None else older_than
        now = time.monotonic()
        async with self._cond:
            old = [c for c in self._idle if now - c.last_used >= limit]
            for c in old:
                del self._idle[c]
            self.evictions += len(old)
            self._publish()
            self._cond.notify_all()
        for c in old:
            await c.close()
        return len(old)

    def start(self) -> None:
        if self._cleaner is None:
            self._cleaner = asyncio.get_running_loop().create_task(self._clean(), name="demo-pool-cleaner")

    async def _clean(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.idle_seconds / 4))
            await self.close_idle()

    async def stop(self) -> None:
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
            self._cleaner = None
        async with self._cond:
            clients = [*self._idle, *self._in_use]
            self._idle.clear()
            self._in_use.clear()
            self._publish()
        for c in clients:
            await c.close()

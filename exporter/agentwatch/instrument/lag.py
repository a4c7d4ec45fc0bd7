"""Event-loop lag: how late the loop wakes a sleeping task, the worst of a recent window."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol


class LagSink(Protocol):
    """Where the measured lag goes (``AgentMetrics``)."""

    event_loop_lag: float | None


class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeping task; reports the worst lag of a window.

    While the loop is blocked nothing can run (this monitor included); the block shows up as lag as
    soon as the loop runs again, and stays the reported value for ``window`` seconds so a health
    probe that arrives after the block still sees it.
    """

    def __init__(self, metrics: LagSink, interval: float = 0.25, window: float = 10.0) -> None:
        self.metrics = metrics
        self.interval = interval
        self.window = window
        self._task: asyncio.Task[None] | None = None
        self._recent: list[tuple[float, float]] = []

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="agentwatch-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def record(self, lag: float) -> None:
        now = time.monotonic()
        self._recent = [(t, v) for t, v in self._recent if now - t <= self.window]
        self._recent.append((now, max(0.0, lag)))
        self.metrics.event_loop_lag = max(v for _, v in self._recent)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.record(loop.time() - before - self.interval)

    async def cleanup_ctx(self, app: Any) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx.append(monitor.cleanup_ctx)``."""
        self.start()
        yield
        await self.stop()

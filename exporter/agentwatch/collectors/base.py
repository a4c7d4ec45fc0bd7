"""What every collector is: an object with a name, a timeout and an async ``collect()``.

A collector returns fresh metric families each time it is called and keeps no globals. Blocking
work (the docker SDK, psutil, file reads) runs in the collector's own bounded thread pool via
``run_sync``, so one slow source can neither block the event loop nor starve another collector.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prometheus_client.core import Metric

T = TypeVar("T")

#: Stages (``Collector.stage``): the /proc scan alone first, then the sources that wait on others
#: (the engine), then the collectors that only read what the others published.
STAGE_FIRST, STAGE_SOURCES, STAGE_DERIVED = 0, 1, 2


class Collector(ABC):
    """Base class: subclasses set ``name`` and implement ``collect``."""

    name: str = "collector"
    #: When in the cycle this collector starts: the collectors of one stage run together, and the next
    #: stage starts when they are all done, or after ``snapshot.HEAD_START_SECONDS`` at most (the
    #: cycle never waits longer for a slow one). Under the interpreter lock, work that is Python and
    #: system calls gains nothing beside other such work and takes as long as all of it together
    #: (issue 14's profiles: a /proc scan beside the others took three times its own time).
    stage: int = STAGE_SOURCES

    def __init__(self, timeout: float, max_workers: int = 2) -> None:
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"aw-{self.name}")

    async def run_sync(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run blocking ``fn`` in this collector's pool, off the event loop thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Start background work (an event stream, say). Default: nothing."""

    async def stop(self) -> None:
        """Stop background work and release the pool."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    @abstractmethod
    async def collect(self) -> list[Metric]:
        """Return this source's metric families for one snapshot; raise on failure."""

    def known(self) -> list[Metric]:
        """What this collector can report without asking its source, for a cycle whose ``collect``
        timed out (its source down, its last-known state marked as such). Default: nothing."""
        return []

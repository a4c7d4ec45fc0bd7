"""One agent run as a context manager: running while inside, then timed and counted by outcome."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

#: Outcomes the agent-run context manager records (the probe path adds lost and unknown).
RUN_OUTCOMES = ("success", "error", "cancelled")


class RunLedger(Protocol):
    """What a run reports to (``AgentMetrics``)."""

    def run_started(self, run: AgentRun) -> None: ...

    def run_finished(self, run: AgentRun, seconds: float) -> None: ...


class AgentRun:
    """One agent run: counted as running until it exits, then timed and counted by outcome."""

    def __init__(self, ledger: RunLedger, model: str) -> None:
        self._ledger = ledger
        self.model = model
        #: None: decided on exit (error on an exception, cancelled on cancellation, else success).
        self.outcome: str | None = None
        self.started_at = 0.0

    def fail(self) -> None:
        self.outcome = "error"

    def __enter__(self) -> AgentRun:
        self.started_at = time.time()
        self._ledger.run_started(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self.outcome is None:
            if exc_type is None:
                self.outcome = "success"
            elif issubclass(exc_type, asyncio.CancelledError | KeyboardInterrupt):
                self.outcome = "cancelled"
            else:
                self.outcome = "error"
        self._ledger.run_finished(self, time.time() - self.started_at)

    async def __aenter__(self) -> AgentRun:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.__exit__(exc_type, *rest)

"""The one periodic loop: the collection cycle and every probed server run on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def run_every(interval: float, step: Callable[[], Awaitable[object]],
                    on_error: Callable[[Exception], None]) -> None:
    """Run ``step`` forever, one start per ``interval``.

    A slow step delays the next one and never overlaps it; a step that raises is reported through
    ``on_error`` and the loop goes on, so one bad cycle cannot end a background task.
    """
    while True:
        started = time.monotonic()
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_error(exc)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

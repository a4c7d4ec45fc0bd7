"""Turn SIGINT, SIGTERM and SIGHUP into an exception, so that ``finally`` blocks stop what was started.

Python's default leaves SIGTERM and SIGHUP fatal (no cleanup at all), and a process started as a
background job inherits SIGINT *ignored*, so Ctrl-C or ``kill -INT`` would do nothing. A run that
owns a Docker engine, containers or servers installs these handlers first, whatever it inherited.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Interrupted(KeyboardInterrupt):
    """Raised by a stop signal; a KeyboardInterrupt so that ``except Exception`` cannot swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def raise_on_stop_signals(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> dict[signal.Signals, Handler]:
    """Install the raising handler for ``signals`` (main thread only); return the previous handlers.

    Each signal raises again if it comes again, so a second one may cut a slow cleanup short: the
    private engine's watchdog (``agentwatch.local.watchdog``) finishes that cleanup.
    """
    return {sig: signal.signal(sig, _raise) for sig in signals}


def restore(previous: dict[signal.Signals, Handler]) -> None:
    """Put back the handlers ``raise_on_stop_signals`` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

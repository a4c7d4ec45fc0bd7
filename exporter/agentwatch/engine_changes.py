"""Which containers the engine's event stream saw change: it tells the containers collector when
what it asked the engine before is still right.

Every change to a container the collector reports (created, started, died, restarted, updated,
renamed, health changed, removed) comes through the event stream as it happens. So while the stream
has stayed connected since the collector asked:

- and it delivered no change at all, the last container listing is still right: the collector
  only pings the engine (is it alive?) instead of listing every container again;
- and no event named a container, that container's inspect is still right: it is not refreshed
  every ``INSPECT_MAX_AGE``; an event that names it makes it stale at once (``docker update``
  does not show in the listing, but does here).

Issue 14's profiles put the listing and the refreshes at over half of a collection's time, and most
of the engine's CPU for it. The event stream thread writes here, the containers collector reads;
neither imports the other.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Literal

#: Event actions that change nothing an inspect says (the part before any ``:``, as in
#: ``exec_start: sh -c ...``): health checks alone send three exec events per run.
IGNORED_ACTIONS = frozenset({"exec_create", "exec_start", "exec_die", "exec_detach", "attach", "detach",
                             "resize", "top", "export", "commit", "copy", "archive-path", "extract-to-dir"})
#: Containers whose last change is remembered; past that the oldest are forgotten and every mark
#: made before counts as stale.
MAX_TRACKED = 10_000

#: A point in the feed: (connection epoch, change sequence number).
Mark = tuple[int, int]
Verdict = Literal["changed", "unchanged", "unknown"]


class ChangeFeed:
    """Thread-safe; ``mark()`` before asking the engine, then ``quiet(mark)`` or ``since(id, mark)``."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self._lock = threading.Lock()
        self._live = False
        self._epoch = 0
        self._seq = 0
        self._floor = 0  # marks below this are stale (ids were forgotten)
        self._last: OrderedDict[str, int] = OrderedDict()
        self._max = max_tracked

    def connected(self) -> None:
        """The stream (re)connected: what happened while it was down may never be seen."""
        with self._lock:
            self._live, self._epoch = True, self._epoch + 1

    def disconnected(self) -> None:
        with self._lock:
            self._live, self._epoch = False, self._epoch + 1

    def event(self, container_id: str, action: str) -> None:
        if action.split(":", 1)[0].strip() in IGNORED_ACTIONS:
            return
        with self._lock:
            self._seq += 1
            self._last.pop(container_id, None)
            self._last[container_id] = self._seq
            while len(self._last) > self._max:
                _, seq = self._last.popitem(last=False)
                self._floor = max(self._floor, seq)

    def mark(self) -> Mark | None:
        """Now, if the stream is connected (else None: nothing can be vouched for)."""
        with self._lock:
            return (self._epoch, self._seq) if self._live else None

    def quiet(self, mark: Mark | None) -> bool:
        """True when the stream stayed connected since ``mark`` and delivered no change at all."""
        if mark is None:
            return False
        with self._lock:
            return self._live and mark == (self._epoch, self._seq)

    def since(self, container_id: str, mark: Mark | None) -> Verdict:
        """Since ``mark``: ``changed`` (an event named the container), ``unchanged`` (the stream stayed
        connected and named it in no event) or ``unknown`` (the stream was not connected throughout)."""
        if mark is None:
            return "unknown"
        with self._lock:
            if not self._live or mark[0] != self._epoch or mark[1] < self._floor:
                return "unknown"
            return "changed" if self._last.get(container_id, 0) > mark[1] else "unchanged"

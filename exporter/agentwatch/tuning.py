"""Process-wide interpreter settings for the long-running commands (exporter, scaler), set once at start.

Both settings come from issue 14's profiles of a busy process:

- ``gc.freeze()`` once start-up is done: the ~50,000 objects imports and set-up allocated live as
  long as the process, yet every full collection walked them all, blocking the event loop for
  about 50 ms (a /metrics or webhook p99 tail).
- a 0.5 ms switch interval instead of 5 ms: a thread that leaves the interpreter for a system call
  (a /proc read, a cgroup read, an fsync) must take the interpreter lock back to go on; while
  another thread runs Python it waited up to the whole interval each time, and a scan makes
  thousands of such calls. A process scan beside the container collector took three times its
  own time; a state write beside a busy event loop, seven times.
"""

from __future__ import annotations

import gc
import sys

#: Seconds a thread may hold the interpreter lock while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.0005


def settle_process() -> None:
    """Call once, after imports and set-up, before serving (not from tests: it changes the process)."""
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL)

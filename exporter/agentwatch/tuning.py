"""Process-wide settings for the long-running commands (exporter, scaler), set once at start.

All of them come from issue 14's profiles of a busy process:

- ``gc.freeze()`` once start-up is done: the ~50,000 objects imports and set-up allocated live as
  long as the process, yet every full collection walked them all, blocking the event loop for
  about 50 ms (a /metrics or webhook p99 tail).
- a 0.5 ms switch interval instead of 5 ms: a thread that leaves the interpreter for a system call
  (a /proc read, a cgroup read, an fsync) must take the interpreter lock back to go on; while
  another thread runs Python it waited up to the whole interval each time, and a scan makes
  thousands of such calls. A process scan beside the container collector took three times its
  own time; a state write beside a busy event loop, seven times.
- at most two malloc arenas (glibc): by default every thread that allocates outside Python's own
  allocator (a large body, a rendering) gets an arena of its own, up to 8 per core, each keeping
  its free memory; the interpreter lock lets one thread run at a time, so more arenas only cost
  resident memory (about 1 MB of the exporter's peak with 14 threads, measured).
"""

from __future__ import annotations

import gc
import os
import sys

#: Seconds a thread may hold the interpreter lock while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.0005
#: glibc's ``M_ARENA_MAX`` parameter number, and the arenas allowed.
_M_ARENA_MAX, MALLOC_ARENAS = -8, 2


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads started from now on; False where there is no glibc
    (musl, macOS) or ``MALLOC_ARENA_MAX`` is set (the operator's choice wins)."""
    if os.environ.get("MALLOC_ARENA_MAX") or not _glibc():
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


def settle_process() -> None:
    """Call once, after imports and set-up, before serving (not from tests: it changes the process)."""
    cap_malloc_arenas()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL)

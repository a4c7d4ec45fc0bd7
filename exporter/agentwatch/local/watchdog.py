"""``python -m agentwatch.local.watchdog BASE PID``: tear down a private engine whose owner died.

``PrivateDockerd`` starts this beside its dockerd with a pipe on stdin that only the owner holds.
A normal stop writes ``stopped`` and closes it: nothing to do. End of file without it means the
owner is gone (SIGKILL, a crash, a stop cut short by a second signal): the watchdog then does what
``PrivateDockerd.stop`` would have done, so no daemon, container, shim, mount or directory is left.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agentwatch.local.dockerd import STOPPED, teardown


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or not args[1].isdigit() or not Path(args[0]).is_absolute():
        print("usage: python -m agentwatch.local.watchdog BASE_DIR DOCKERD_PID", file=sys.stderr)
        return 2
    base, pid = Path(args[0]), int(args[1])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # outlive the owner's stop signals: this is the last resort
    told = sys.stdin.buffer.read(len(STOPPED))  # blocks until the owner writes or is gone
    if told == STOPPED:
        return 0
    teardown(base, pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())

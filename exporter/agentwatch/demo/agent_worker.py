"""One demo agent: hold some memory for some time, then exit (stdlib only, run as a script).

The server starts it as ``python .../agent_worker.py --model sonnet --mb 500 --seconds 30`` so its
cmdline looks like a Python agent's and the process collector's default ``python-agent`` group
picks it up with its model. It exits 0 when done, 1 with ``--fail``, 143 on SIGTERM, and on its
own as soon as its parent (the server) is gone, so a killed server never leaves agents behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

MiB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--mb", type=int, default=100, help="resident memory to hold, in MiB")
    p.add_argument("--seconds", type=float, default=30.0, help="how long the run lasts")
    p.add_argument("--fail", action="store_true", help="exit 1 at the end (a failed run)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit as soon as this is no longer our parent (default: the parent at start)")
    args = p.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parent = args.parent_pid or os.getppid()  # passed in: the server may die before we get here
    if os.getppid() != parent:
        return 129
    ballast = bytearray(b"\x01") * (max(0, args.mb) * MiB)  # written, so resident, not just reserved
    deadline = time.monotonic() + max(0.0, args.seconds)
    while (left := deadline - time.monotonic()) > 0:
        if os.getppid() != parent:  # the server died without reaping us
            return 129
        time.sleep(min(0.2, left))
    del ballast
    return 1 if args.fail else 0


if __name__ == "__main__":
    sys.exit(main())

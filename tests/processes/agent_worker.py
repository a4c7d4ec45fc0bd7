"""An agent-like child process for the tests: holds a known amount of memory, threads and fds.

Run as ``python3 agent_worker.py --run ID --model NAME --mb N [--threads T] [--fds F] [--busy]``.
It prints ``ready`` once every page is touched, then idles (or spins with ``--busy``) until killed,
and exits on its own when its parent goes away so a crashed test never leaks it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

PAGE = 4096


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--model", default="none")
    parser.add_argument("--mb", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--fds", type=int, default=0)
    parser.add_argument("--busy", action="store_true")
    args = parser.parse_args()

    buf = bytearray(args.mb * 2**20)
    buf[::PAGE] = b"\x01" * len(range(0, len(buf), PAGE))  # touch every page: resident, private
    stop = threading.Event()
    for _ in range(args.threads):
        threading.Thread(target=stop.wait, daemon=True).start()
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(args.fds)]
    parent = os.getppid()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    deadline = time.monotonic() + 600
    while os.getppid() == parent and time.monotonic() < deadline:
        if args.busy:
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                pass
        else:
            time.sleep(0.5)
    del buf, held


if __name__ == "__main__":
    main()

"""Run one process collection as an unprivileged user and print the exposition.

Imports happen as root (the interpreter's packages may live where ``nobody`` cannot read), then
the process drops to uid/gid 65534 before it reads ``/proc``, so the kernel's permission checks
(``fd/`` and ``smaps_rollup`` of other users' processes, mode-000 files) apply for real.
Usage: ``python as_nobody.py '<processes config as JSON>'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from prometheus_client.exposition import generate_latest

from agentwatch.collectors.processes import ProcessCollector
from agentwatch.config import ProcessesConfig

NOBODY = 65534


class _Families:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> list:
        return self.families


async def main() -> None:
    config = ProcessesConfig.model_validate(json.loads(sys.argv[1]))
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    assert os.geteuid() == NOBODY
    collector = ProcessCollector(config)
    families = await collector.collect()
    sys.stdout.write(generate_latest(_Families(families)).decode())
    await collector.stop()


if __name__ == "__main__":
    asyncio.run(main())

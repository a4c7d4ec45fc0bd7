"""The real Alertmanager 0.25 (Debian package) on a free loopback port, without clustering.

Routing, inhibition and the webhook to the scaler are proved with the server users run; clustering
is off so that no gossip port is opened and two test runs never find each other.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from agentwatch.local.process import ManagedProcess, free_port, http_status

BINARY = "/usr/bin/prometheus-alertmanager"


class AlertmanagerProcess(ManagedProcess):
    """``prometheus-alertmanager --config.file=config`` on 127.0.0.1; a context manager."""

    def __init__(self, config: Path, workdir: Path | None = None, ready_timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus-alertmanager") or BINARY
        if not Path(binary).exists():
            raise RuntimeError("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="aw-am-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([binary, f"--config.file={config}", f"--storage.path={self.dir / 'am-data'}",
                          f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
                         self.dir / "alertmanager.log", name="alertmanager",
                         ready=lambda: http_status(f"{self.url}/-/ready") == 200, ready_timeout=ready_timeout)

"""``agentwatch scaler`` as a managed process on a free loopback port, with a policy given as data.

The demo runs the real scaler command (config parsing, auth, signal handling and all), so what it
shows is what a user deploys. The bearer token reaches it through the environment only.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from agentwatch.local.process import ManagedProcess, free_port, http_status

TOKEN_ENV = "AGENTWATCH_SCALER_TOKEN"


class ScalerProcess(ManagedProcess):
    """``agentwatch scaler --config policy.yml``; ``policy`` may be changed until ``start``."""

    def __init__(self, policy: dict[str, Any], token: str, workdir: Path | None = None,
                 env: dict[str, str] | None = None, ready_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="aw-scaler-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.policy_path = self.dir / "policy.yml"
        self.policy: dict[str, Any] = {
            "state_file": str(self.dir / "state.json"), "audit_log": str(self.dir / "audit.jsonl"),
            **policy, "listen": f"127.0.0.1:{self.port}", "auth": {"token_env": TOKEN_ENV},
        }
        super().__init__([sys.executable, "-m", "agentwatch.cli", "scaler", "--config", str(self.policy_path)],
                         self.dir / "scaler.log", env={**os.environ, **(env or {}), TOKEN_ENV: token}, name="scaler",
                         ready=lambda: http_status(f"{self.url}/healthz") == 200, ready_timeout=ready_timeout)

    def prepare(self) -> None:
        self.policy_path.write_text(yaml.safe_dump(self.policy, sort_keys=False))

    def decisions(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """GET /actions: the recent decisions, newest first; OSError or ValueError when unreachable."""
        req = urllib.request.Request(f"{self.url}/actions", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
        decisions = body.get("decisions") if isinstance(body, dict) else None
        if not isinstance(decisions, list):
            raise ValueError("GET /actions: no decisions list")
        return [d for d in decisions if isinstance(d, dict)]


"""Running the real compose file with Debian's docker-compose 1.29 against the private engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
#: Services that keep running (and must turn healthy); the rest are one-shot or behind a profile.
LONG_RUNNING = frozenset({"exporter", "agent", "prometheus", "alertmanager", "scaler"})
ONE_SHOT = frozenset({"alertmanager-config"})
PROFILED = frozenset({"grafana"})


class ComposeError(AssertionError):
    """docker-compose failed; the message holds its last output lines."""


def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if not binary:
        raise ComposeError("docker-compose is not installed (apt-get install docker-compose)")
    return binary


class Compose:
    """``docker-compose -f compose/docker-compose.yml -p PROJECT`` with a clean, explicit environment.

    The ambient environment's ``DOCKER_*`` and ``COMPOSE_*`` variables and a developer's
    ``compose/.env`` never leak in: the variables are given, and ``--env-file`` names an empty file.
    """

    def __init__(self, project: str, variables: dict[str, str], workdir: Path) -> None:
        self.project = project
        env_file = workdir / "empty.env"
        env_file.write_text("")
        self.argv = [compose_binary(), "--ansi", "never", "-f", str(COMPOSE_FILE), "-p", project,
                     "--env-file", str(env_file)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        self.env.update(variables)

    def run(self, *args: str, timeout: float = 120.0, check: bool = True) -> str:
        try:
            proc = subprocess.run([*self.argv, *args], env=self.env, capture_output=True, text=True,
                                  timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ComposeError(f"docker-compose {' '.join(args)}: no result within {timeout:.0f}s") from None
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise ComposeError(f"docker-compose {' '.join(args)} exited with {proc.returncode}:\n{tail}")
        return proc.stdout


def get_json(url: str, timeout: float = 5.0) -> Any:
    """The JSON body of a GET, or None when the server does not answer (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):  # refused, reset, HTTP errors, a half-written body
        return None

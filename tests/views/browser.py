"""Debian's headless chromium: the fleet page as a browser renders it (a DOM dump and a screenshot)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

TIMEOUT_SECONDS = 120
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium)", pytrace=False)
    return path


def _run(args: list[str], workdir: Path) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="aw-chromium-") as profile:
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              cwd=workdir, capture_output=True, timeout=TIMEOUT_SECONDS, stdin=subprocess.DEVNULL,
                              env={"HOME": profile, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done


def dump_dom(url: str, workdir: Path) -> str:
    """The DOM after the page loaded, serialised by the browser."""
    return _run(["--dump-dom", url], workdir).stdout.decode()


def screenshot(url: str, out: Path, width: int = 1280, height: int = 900) -> tuple[int, int]:
    """Write a PNG of the page to ``out``; return its (width, height) from the PNG header."""
    _run([f"--screenshot={out}", f"--window-size={width},{height}", url], out.parent)
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return w, h

"""A plain ``pip install .`` (not editable) into a fresh venv gives commands that work from any directory.

The package is built from a copy of the sources, installed without dependencies into a venv that
sees this machine's site-packages (offline and fast), and its commands run from a directory outside
the checkout with no ``AGENTWATCH_*`` variable set: what a new user does first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with agentwatch installed by a plain, non-editable ``pip install``."""
    base = tmp_path_factory.mktemp("plain-install")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "exporter", src / "exporter",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    env = _env()
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(base / "venv")],
                   check=True, timeout=120, env=env)
    proc = subprocess.run([str(base / "venv" / "bin" / "pip"), "install", "-q", "--no-deps", str(src)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=base, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base / "venv"


def _env() -> dict[str, str]:
    """This environment without anything that points at the checkout or configures the renderer."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AGENTWATCH_", "PYTHON")) and k not in ("VIRTUAL_ENV", "DOCKER_HOST")}


def _run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "agentwatch"), *args], capture_output=True, text=True, timeout=120,
                          env=_env(), cwd=cwd, check=False)


def test_version_from_a_plain_install(venv: Path, tmp_path: Path) -> None:
    proc = _run(venv, tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "agentwatch 0.1.0"


def test_render_alertmanager_from_a_plain_install_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    proc = _run(venv, tmp_path, "render-alertmanager", "--out", "x.yml", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    assert "discord left out" in proc.stderr  # no Discord URL given: optional, and said so
    config = yaml.safe_load((tmp_path / "x.yml").read_text())
    # The notification templates are the installed package's, not the checkout's.
    (templates,) = config["templates"]
    assert templates.startswith(str(venv)), templates
    assert list(Path(templates).parent.glob("*.tmpl")), f"no templates in {Path(templates).parent}"

"""A test run stopped by a signal, or killed outright, leaves no daemon, container, mount or directory.

Each case runs pytest as a child on a tiny test that holds the ``dockerd`` fixture with a container
running, stops it once the engine is up, and then looks for anything of that engine still alive.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.local.process import wait_for

REPO = Path(__file__).resolve().parents[2]
#: Start the command with SIGINT ignored, as a shell starts a background job.
SIGINT_IGNORED = ["sh", "-c", "trap '' INT; exec \"$@\"", "sh"]
INTERRUPTED = 2  # pytest's exit code for an interrupted session: the orderly path, finalizers run

TINY_TEST = '''
import os
import tempfile
import time
from pathlib import Path

from agentwatch.local.dockerd import IMAGE


def test_holds_the_engine(dockerd, docker_client):
    container = docker_client.containers.run(IMAGE, ["sleep", "600"], detach=True, network_mode="none")
    container.reload()
    Path(os.environ["AW_ENGINE_UP"] + ".tmp").write_text(tempfile.gettempdir())
    Path(os.environ["AW_ENGINE_UP"]).write_text(f"{dockerd.base}\\n{container.attrs['State']['Pid']}\\n")
    time.sleep(600)
'''


def _mentioning(base: str) -> list[str]:
    """Command lines of live processes naming the engine's directory (dockerd, containerd, shims, watchdog)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if base.encode() in cmdline and state != "Z":
                shown = cmdline.replace(b"\0", b" ")[:150].decode(errors="replace")
                found.append(f"{entry.name}: {shown}")
    return found


def _is_container_process(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00600\x00"
    except OSError:
        return False


def _mounts_below(base: str) -> list[str]:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [m for m in mounts if m == base or m.startswith(base + "/")]


@pytest.mark.docker
@pytest.mark.parametrize(("signum", "sigint_ignored"), [
    (signal.SIGTERM, False),
    (signal.SIGTERM, True),
    (signal.SIGINT, True),
    (signal.SIGKILL, False),
], ids=["SIGTERM", "SIGTERM-with-SIGINT-ignored", "SIGINT-inherited-ignored", "SIGKILL"])
def test_stopped_test_run_leaves_nothing_behind(tmp_path: Path, signum: signal.Signals, sigint_ignored: bool) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    (tmp_path / "test_tiny.py").write_text(TINY_TEST)
    marker = tmp_path / "engine-up"
    env = {**os.environ, "AW_ENGINE_UP": str(marker), "PYTHONPATH": str(REPO)}
    env.pop("DOCKER_HOST", None)
    prefix = SIGINT_IGNORED if sigint_ignored else []
    log_path = tmp_path / "pytest.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "--rootdir", str(tmp_path), "test_tiny.py"],
                                cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    base = ""
    try:
        wait_for(lambda: (marker.exists() and marker.read_text().count("\n") == 2) or proc.poll() is not None,
                 timeout=120, what="the engine and its container")
        assert proc.poll() is None, log_path.read_text()
        base, container_pid = marker.read_text().split()
        assert any("dockerd" in cmd for cmd in _mentioning(base)), _mentioning(base)
        assert _is_container_process(int(container_pid))
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    output = log_path.read_text(errors="replace")
    if signum != signal.SIGKILL:
        assert code == INTERRUPTED, f"pytest ended with {code}, not through its orderly interrupt:\n{output}"
    # After SIGKILL the watchdog does the work: give it the time a graceful daemon stop takes.
    wait_for(lambda: not _mentioning(base), timeout=60, what=f"every process of {base} to exit")
    assert not _is_container_process(int(container_pid)), "the container's process survived"
    assert not _mounts_below(base), _mounts_below(base)
    assert not Path(base).exists(), f"{base} left behind"
    run_root = Path((tmp_path / "engine-up.tmp").read_text())  # the run's temporary root (tests/conftest.py)
    assert run_root.name.startswith("aw-tests-"), run_root
    if signum == signal.SIGKILL:  # nothing runs after SIGKILL to remove the (now empty) root
        shutil.rmtree(run_root, ignore_errors=True)
    assert not run_root.exists(), f"{run_root} left behind"

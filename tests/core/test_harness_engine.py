"""The harness's private engine runs real containers (a missing engine fails, never skips)."""

import os
import signal
import subprocess
import time
from pathlib import Path


def test_private_engine_runs_a_container(docker_client):
    out = docker_client.containers.run("agent:local", ["echo", "hi"], network_mode="none", remove=True)
    assert out.strip() == b"hi"


def test_the_engine_s_temporary_files_stay_in_its_directory(dockerd):
    """containerd writes its goroutine stacks to the temporary directory when dockerd stops it the
    hard way (SIGUSR1); one such file per run was left in /tmp. Now they land in the engine's
    directory, which its teardown removes."""
    found = subprocess.run(["pgrep", "-f", f"^containerd .*{dockerd.base}"], capture_output=True, text=True,
                           timeout=10).stdout.split()
    assert found, "the private engine's containerd is running"
    pid = int(found[0])
    os.kill(pid, signal.SIGUSR1)
    dump = dockerd.base / "tmp" / f"containerd.{pid}.stacks.log"
    deadline = time.monotonic() + 10
    while not dump.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dump.exists() and not Path(f"/tmp/containerd.{pid}.stacks.log").exists()
    dump.unlink()

"""A private Docker engine for tests, started and stopped by the harness itself.

It has its own socket, data root and exec root, so it never touches a daemon it did not start.
No image can be pulled here, so ``import_busybox`` builds ``agent:local`` from the static busybox.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker

BUSYBOX_APPLETS = ("sh", "sleep", "cat", "echo", "dd", "head", "yes", "true", "false", "kill", "ls", "tail")
IMAGE = "agent:local"


class EngineUnavailable(RuntimeError):
    """dockerd is missing or did not come up: in CI that is a failure, not a skip."""


class PrivateDockerd:
    """One dockerd with private paths; use as a context manager."""

    def __init__(self, base: Path | None = None, start_timeout: float = 60.0) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="aw-dockerd-", dir="/tmp"))
        self.sock = self.base / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.pidfile = self.base / "docker.pid"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: docker.DockerClient | None = None

    def start(self) -> PrivateDockerd:
        binary = shutil.which("dockerd")
        if not binary:
            raise EngineUnavailable("dockerd is not installed (apt-get install docker.io busybox-static)")
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "dockerd.log", "wb")  # noqa: SIM115 - kept open for the daemon's life
        self.proc = subprocess.Popen(
            [binary, "--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec"),
             "-H", self.host, "--pidfile", str(self.pidfile), "--iptables=false", "--ip-masq=false",
             "--bridge=none", "--storage-driver=vfs"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineUnavailable(f"dockerd exited with {self.proc.returncode}: {self.log_tail()}")
            if self.sock.exists():
                try:
                    client = docker.DockerClient(base_url=self.host, timeout=30)
                    client.ping()
                    self.client = client
                    return self
                except Exception:
                    pass
            time.sleep(0.2)
        self.stop()
        raise EngineUnavailable(f"dockerd did not answer within {self.start_timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.base / "dockerd.log").read_text(errors="replace").splitlines()[-n:])
        return ""

    def import_busybox(self, tag: str = IMAGE) -> str:
        """Import a one-binary busybox image under ``tag``; return the tag."""
        assert self.client is not None
        busybox = shutil.which("busybox") or "/bin/busybox"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            tar.add(busybox, arcname="bin/busybox")
            for applet in BUSYBOX_APPLETS:
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        self.client.images.client.api.import_image_from_data(buf.getvalue(), repository=tag.split(":")[0],
                                                             tag=tag.split(":")[1])
        return tag

    def remove_all_containers(self) -> None:
        if self.client is None:
            return
        for c in self.client.containers.list(all=True):
            with contextlib.suppress(Exception):
                c.remove(force=True)

    def stop(self) -> None:
        """Stop this daemon only (by its own process), then delete its files."""
        with contextlib.suppress(Exception):
            self.remove_all_containers()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        unmount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PrivateDockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def unmount_below(base: Path) -> None:
    """Lazily unmount whatever this daemon left mounted under ``base`` (netns, vfs layers)."""
    prefix = str(base.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


@contextlib.contextmanager
def private_engine() -> Iterator[PrivateDockerd]:
    """A started private engine with ``agent:local``, stopped after; raises EngineUnavailable."""
    engine = PrivateDockerd()
    engine.start()
    try:
        engine.import_busybox()
        yield engine
    finally:
        engine.stop()

"""A private Docker engine, started and stopped by its owner (a test session, the benchmark, the demo).

It has its own socket, data root and exec root, so it never touches a daemon it did not start.
No image can be pulled here, so ``import_busybox`` builds ``agent:local`` from the static busybox.

Nothing may outlive the owner: ``stop`` removes the containers, stops the daemon, kills any stray
containerd or shim, unmounts and deletes the directory. It runs from the owner's ``finally``
blocks (stop signals become exceptions, see ``agentwatch.local.signals``), at interpreter exit,
and, when the owner is killed outright, from a watchdog process (``agentwatch.local.watchdog``)
that notices the owner is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import docker

BUSYBOX_APPLETS = ("sh", "sleep", "cat", "echo", "dd", "head", "yes", "true", "false", "kill", "ls", "tail")
IMAGE = "agent:local"
#: What a normal stop writes to the watchdog before closing its pipe: "stand down".
STOPPED = b"stopped\n"


class EngineUnavailable(RuntimeError):
    """dockerd is missing or did not come up: in CI that is a failure, not a skip."""


class PrivateDockerd:
    """One dockerd with private paths; use as a context manager or ``start()``/``stop()``."""

    def __init__(self, base: Path | None = None, start_timeout: float = 60.0, watchdog: bool = True,
                 launcher: Sequence[str] = (), extra_args: Sequence[str] = ()) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="aw-dockerd-", dir="/tmp"))
        #: Run dockerd through this (e.g. nsenter into a network namespace: ``agentwatch.local.swarm``).
        self.launcher = list(launcher)
        self.extra_args = list(extra_args)
        self.sock = self.base / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.pidfile = self.base / "docker.pid"
        self.start_timeout = start_timeout
        self.use_watchdog = watchdog
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: docker.DockerClient | None = None
        self._log: IO[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateDockerd:
        """Start dockerd and wait until it answers a ping; on any failure or interrupt, clean up first."""
        binary = shutil.which("dockerd")
        if not binary:
            raise EngineUnavailable("dockerd is not installed (apt-get install docker.io busybox-static)")
        self.base.mkdir(parents=True, exist_ok=True)
        self._log = open(self.base / "dockerd.log", "wb")  # noqa: SIM115 - kept open for the daemon's life
        # The engine's own temporary files (containerd writes its goroutine stacks there when dockerd
        # stops it the hard way: one file per run was left in /tmp) stay inside its directory.
        (self.base / "tmp").mkdir(exist_ok=True)
        atexit.register(self.stop)
        try:
            # Its own session: Ctrl-C in a terminal reaches the owner, which stops the engine in order.
            self.proc = subprocess.Popen(
                [*self.launcher, binary, *self.extra_args, "--data-root", str(self.base / "data"),
                 "--exec-root", str(self.base / "exec"), "-H", self.host, "--pidfile", str(self.pidfile),
                 "--iptables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=vfs"],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "TMPDIR": str(self.base / "tmp")},
            )
            if self.use_watchdog:
                self._watchdog = start_watchdog(self.base, self.proc.pid)
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_up(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineUnavailable(f"dockerd exited with {self.proc.returncode}: {self.log_tail()}")
            if self.sock.exists():
                try:
                    client = docker.DockerClient(base_url=self.host, timeout=30)
                    client.ping()
                    self.client = client
                    return
                except Exception:
                    pass
            time.sleep(0.2)
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
        repository, _, version = tag.partition(":")
        self.client.api.import_image_from_data(buf.getvalue(), repository=repository, tag=version or "latest")
        return tag

    def remove_all_containers(self) -> None:
        if self.client is not None:
            remove_all_containers(self.client)

    def stop(self) -> None:
        """Stop this daemon only (by its own process) and everything it started, then delete its files.

        Safe to call twice and from ``atexit``; if it is cut short, the watchdog finishes the job.
        """
        pid = self.proc.pid if self.proc is not None else None
        spare = frozenset({self._watchdog.pid}) if self._watchdog is not None else frozenset()
        teardown(self.base, pid, self.client, spare=spare)
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)  # reap: teardown already waited for the exit
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._watchdog is not None:
            release_watchdog(self._watchdog)
            self._watchdog = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PrivateDockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- teardown, shared by PrivateDockerd.stop and the watchdog -----------------------------------

def remove_all_containers(client: docker.DockerClient) -> None:
    """Force-remove every container, so their processes die with them (each call bounded by the client)."""
    with contextlib.suppress(Exception):
        for c in client.containers.list(all=True):
            with contextlib.suppress(Exception):
                c.remove(force=True)


def teardown(base: Path, pid: int | None, client: docker.DockerClient | None = None,
             term_timeout: float = 20.0, spare: frozenset[int] = frozenset()) -> None:
    """Stop the engine rooted at ``base`` whose dockerd is ``pid``; leave no process, mount or file.

    Containers are removed through the API first (a graceful daemon stop would only stop them);
    then dockerd gets SIGTERM, and SIGKILL after ``term_timeout``; then whatever still names
    ``base`` on its command line (containerd, shims) is killed with its descendants (container
    processes), except ``spare``; then mounts below ``base`` are detached and the directory is deleted.
    """
    sock = base / "docker.sock"
    owned = client
    if owned is None and sock.exists() and pid is not None and _names(pid, base):
        with contextlib.suppress(Exception):
            owned = docker.DockerClient(base_url=f"unix://{sock}", timeout=10)
    if owned is not None:
        remove_all_containers(owned)
        if client is None:
            with contextlib.suppress(Exception):
                owned.close()
    if pid is not None and _names(pid, base):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, term_timeout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # dockerd leads its own process group
            _wait_gone(pid, 10)
    kill_strays(base, spare)
    unmount_below(base)
    shutil.rmtree(base, ignore_errors=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _names(pid: int, base: Path) -> bool:
    """``pid`` is still a process that names ``base`` (not a recycled pid)."""
    return str(base).encode() in _cmdline(pid)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
    return out


def kill_strays(base: Path, spare: frozenset[int] = frozenset()) -> list[int]:
    """SIGKILL every process naming ``base`` on its command line, and its descendants; the pids killed.

    This process and ``spare`` (the watchdog, whose arguments name ``base``) are left alone.
    """
    spare = spare | {os.getpid()}
    parents = _parents()
    roots = {pid for pid in parents if pid not in spare and _names(pid, base)}
    doomed = set(roots)
    for _ in range(64):  # bounded: process trees are not that deep
        children = {pid for pid, ppid in parents.items() if ppid in doomed and pid not in doomed | spare}
        if not children:
            break
        doomed |= children
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in doomed:
        _wait_gone(pid, 5)
    return sorted(doomed)


def unmount_below(base: Path) -> None:
    """Lazily unmount whatever this daemon left mounted under ``base`` (netns, vfs layers, data root)."""
    prefix = str(base.resolve())
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return
    for target in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False, timeout=30)


# --- the watchdog, for an owner killed without a chance to clean up --------------------------------

def start_watchdog(base: Path, pid: int) -> subprocess.Popen[bytes]:
    """Start ``python -m agentwatch.local.watchdog BASE PID`` holding the read end of a pipe only we write.

    The write end is not inherited by other children (Python's pipes are close-on-exec), so the
    watchdog reads end of file exactly when this process exits, however it dies. It runs in its own
    session so that a signal to the owner's process group (Ctrl-C, a timeout) does not reach it.
    """
    return subprocess.Popen([sys.executable, "-m", "agentwatch.local.watchdog", str(base), str(pid)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def release_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    """Tell the watchdog the engine is gone, so it exits without acting."""
    with contextlib.suppress(OSError, ValueError):
        assert watchdog.stdin is not None
        watchdog.stdin.write(STOPPED)
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout=5)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait(timeout=5)


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

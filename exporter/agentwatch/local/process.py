"""One way to run a real server on this machine: start it, wait until it answers, stop it, bounded.

Every server the product, the tests and the benchmark start (the exporter, the demo agents,
Prometheus, Alertmanager, the scaler) is a ``ManagedProcess``, so each is started, awaited and
reaped the same way and none can outlive its owner by a forgotten ``wait``.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.2,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; bounded in time, then AssertionError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    """A free TCP port on the loopback address (servers here never listen anywhere else)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET, or None when nothing answers: the readiness probe of every server here."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class ManagedProcess:
    """A subprocess whose output goes to ``log_path``; ``start`` waits until ``ready()``.

    Subclasses give ``ready`` (and write their config files in ``prepare``) so that ``start()``
    and ``with`` need no arguments; ``start(ready, timeout)`` still serves one-off processes.
    ``new_session`` starts it in a session of its own, so a Ctrl-C in the owner's terminal reaches
    only the owner, which then stops its servers in order (``agentwatch demo`` does this).
    """

    new_session = False

    def __init__(self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 name: str = "process", ready: Callable[[], bool] | None = None,
                 ready_timeout: float = 30.0) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.name = name
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        """Write what the process reads (config files) just before it starts; nothing by default."""

    def start(self, ready: Callable[[], bool] | None = None, timeout: float | None = None) -> Self:
        """Start, then poll ``ready`` until it is true; on exit or timeout raise with the log's tail."""
        ready = ready or self.ready
        timeout = self.ready_timeout if timeout is None else timeout
        self.prepare()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         stdin=subprocess.DEVNULL, start_new_session=self.new_session)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
                if ready is None or ready():
                    return self
                time.sleep(0.1)
            raise RuntimeError(f"{self.name} not ready within {timeout}s:\n{self.log()[-4000:]}")
        except BaseException:  # an interrupt while waiting must not leave the process behind
            self.stop()
            raise

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        """Started and not exited yet."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps. Returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

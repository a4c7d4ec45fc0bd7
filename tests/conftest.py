"""Fixtures shared by every test: the private Docker engine lives here.

A run stopped by SIGTERM (a CI timeout), SIGHUP or SIGINT (also when started as a background job,
which inherits SIGINT ignored) turns the signal into an interrupt, so pytest ends the session and
every fixture's finalizer runs: no daemon, container or process is left behind. A run killed
outright is cleaned up by the engine's watchdog (``agentwatch.local.watchdog``).

Every temporary directory the run makes (the exporters' and demo servers' work directories with
their logs, the private engine's state) is made under one root for the run, removed when it ends:
logs stay readable until then, and a run leaves no directory behind (it used to leave one per
exporter and demo server it started, some 270 per run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from agentwatch.local.dockerd import EngineUnavailable, PrivateDockerd, private_engine
from agentwatch.local.signals import raise_on_stop_signals, restore

_PREVIOUS_HANDLERS: list[dict] = []
#: (the previous tempfile.tempdir, this run's root)
_TEMP_ROOTS: list[tuple[str | None, str]] = []


def pytest_configure(config: pytest.Config) -> None:
    _PREVIOUS_HANDLERS.append(raise_on_stop_signals())
    root = tempfile.mkdtemp(prefix="aw-tests-")
    os.chmod(root, 0o711)  # others may pass through to what a test opens to them (as /tmp allowed)
    _TEMP_ROOTS.append((tempfile.tempdir, root))
    tempfile.tempdir = root


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PREVIOUS_HANDLERS:
        restore(_PREVIOUS_HANDLERS.pop())
    if _TEMP_ROOTS:
        previous, root = _TEMP_ROOTS.pop()
        tempfile.tempdir = previous
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[PrivateDockerd]:
    """A private dockerd with the busybox image ``agent:local``; a missing engine fails the test."""
    try:
        with private_engine() as engine:
            yield engine
    except EngineUnavailable as exc:
        pytest.fail(f"private Docker engine unavailable: {exc}", pytrace=False)


@pytest.fixture
def docker_client(dockerd: PrivateDockerd):
    """The SDK client of the private engine; containers made by a test are removed after it."""
    assert dockerd.client is not None
    before = {c.id for c in dockerd.client.containers.list(all=True)}
    yield dockerd.client
    for c in dockerd.client.containers.list(all=True):
        if c.id not in before:
            try:
                c.remove(force=True)
            except Exception:
                pass


@pytest.fixture(autouse=True, scope="session")
def _no_ambient_docker_host() -> Iterator[None]:
    """Tests never talk to a daemon they did not start."""
    saved = os.environ.pop("DOCKER_HOST", None)
    yield
    if saved is not None:
        os.environ["DOCKER_HOST"] = saved

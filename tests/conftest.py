"""Fixtures shared by every test: the private Docker engine lives here."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from agentwatch.local.dockerd import EngineUnavailable, PrivateDockerd, private_engine


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

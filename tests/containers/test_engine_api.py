"""The exporter's read-only engine client against the fake engine: answers, errors, timeouts, streams."""

from __future__ import annotations

import threading
import time

import pytest

from agentwatch.engine import is_silent, is_unreachable, read_client
from agentwatch.engine_api import EngineClient, EngineError, NotFound
from tests.containers.fake_engine import CONTAINER_ID, FakeEngine


@pytest.fixture
def engine(tmp_path):
    fake = FakeEngine(tmp_path / "engine.sock")
    fake.start()
    yield fake
    fake.hold_streams = False
    fake.stop()


def test_answers_are_decoded_and_connections_reused(engine):
    client = read_client(engine.host, timeout=2)
    try:
        assert client.ping()
        assert [c["Id"] for c in client.containers(all=True)] == [CONTAINER_ID]
        assert client.inspect_container(CONTAINER_ID)["RestartCount"] == 2
        assert client.stats(CONTAINER_ID)["pids_stats"]["current"] == 3
        assert len(client._idle) == 1, "one kept connection served every call in turn"
    finally:
        client.close()


def test_engine_errors_name_the_call_and_the_engine_message(engine):
    client = read_client(engine.host, timeout=2)
    try:
        with pytest.raises(NotFound, match="No such container"):
            client.inspect_container("nope")
        engine.mode = "malformed"
        with pytest.raises(ValueError, match="/containers/json: not JSON"):
            client.containers()
        engine.events_mode = "broken"
        with pytest.raises(EngineError, match="500 events log unavailable"):
            client.events({"type": ["container"]})
    finally:
        client.close()


def test_no_engine_is_unreachable_and_a_hung_one_is_silent(engine, tmp_path):
    gone = EngineClient(f"unix://{tmp_path / 'missing.sock'}", timeout=1)
    with pytest.raises(OSError) as missing:
        gone.ping()
    assert is_unreachable(missing.value) and not is_silent(missing.value)

    engine.mode = "hang"
    client = EngineClient(engine.host, timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as hung:
            client.containers()
        assert time.monotonic() - started < 5
        assert is_silent(hung.value) and not is_unreachable(hung.value)
    finally:
        engine.mode = "ok"
        client.close()


def test_a_live_stream_is_read_without_timeout_and_closed_from_another_thread(engine):
    engine.events_per_stream, engine.hold_streams, engine.replay_last = 1, True, False
    client = EngineClient(engine.host, timeout=0.3)  # shorter than the quiet gap below
    stream = client.events({"type": ["container"]})
    seen: list[dict] = []
    reader = threading.Thread(target=lambda: seen.extend(stream), daemon=True)
    reader.start()
    time.sleep(1.0)  # quiet for longer than the client's timeout: the stream must stay open
    engine.push_event()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e["Action"] for e in seen] == ["die", "die"]
    stream.close()
    reader.join(5)
    assert not reader.is_alive(), "close() ends a blocked read"


def test_addresses_are_the_sdks(monkeypatch):
    assert EngineClient("unix:///run/docker.sock", 1)._unix == "/run/docker.sock"
    assert EngineClient("/run/docker.sock", 1)._unix == "/run/docker.sock"
    assert EngineClient("tcp://10.0.0.2:2375", 1)._address == ("10.0.0.2", 2375)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert EngineClient(None, 1)._address == ("127.0.0.1", 2375)
    monkeypatch.delenv("DOCKER_HOST")
    assert EngineClient(None, 1)._unix == "/var/run/docker.sock"
    with pytest.raises(ValueError, match="expected unix:///path"):
        EngineClient("ftp://engine", 1)

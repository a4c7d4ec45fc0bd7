"""Limits that keep the scaler alive under abuse: read timeouts, a connection cap, bounded state, audit rotation.

Before: 71 sockets sending headers or a body slowly were all still open after 30-35 s; 40 bursts
of 1,000 alerts grew state.json to 4.4 MB (and every decision rewrites it); the audit log grew
without end. Sockets here are real and the scaler is the real process; the timeouts are set short
in the test policy, and the assertions are generous bounds on when a socket is closed, not
measurements.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import time
from pathlib import Path

from agentwatch.scaler.audit import AuditLog
from agentwatch.scaler.executor import Scaler
from agentwatch.scaler.model import Alert
from agentwatch.scaler.state import State, StateStore
from tests.scaler.helpers import TOKEN, ScalerProcess, config, http

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
#: Allowance for a loaded machine on top of the configured timeouts.
SLACK = 4.0


def slow_policy(tmp_path: Path, **http_limits: float) -> dict:
    return {"state_file": str(tmp_path / "state.json"), "audit_log": str(tmp_path / "audit.jsonl"),
            "log_level": "debug",
            "http": {"header_timeout_seconds": HEADER_TIMEOUT, "body_timeout_seconds": BODY_TIMEOUT,
                     "max_connections": 64, **http_limits},
            "targets": {"chat": {"kind": "notify", "url_env": "AW_LIMITS_NOPE"}},
            "rules": [{"name": "page", "alertname": "Page", "action": "notify", "target": "chat"}]}


def body_head(length: int) -> bytes:
    return (f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


class SlowClient:
    """One socket that trickles ``first`` then one byte of ``trickle`` at a time, and notes when it is closed."""

    def __init__(self, port: int, kind: str) -> None:
        self.kind = kind
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.closed_after: float | None = None
        self.received = b""
        first, self.trickle = {"idle": (b"", b""),
                               "slow_headers": (b"POST /webhook HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 500),
                               "slow_body": (body_head(1000), b" " * 1000)}[kind]
        if first:
            self.sock.sendall(first)

    def step(self) -> None:
        """Send the next byte, read what came back; note the close (EOF, reset or broken pipe)."""
        if self.closed_after is not None:
            return
        try:
            if self.trickle:
                self.sock.send(self.trickle[:1])
                self.trickle = self.trickle[1:]
            while select.select([self.sock], [], [], 0)[0]:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError
                self.received += chunk
        except (ConnectionResetError, BrokenPipeError):
            self.closed_after = time.monotonic() - self.opened
            self.sock.close()


def test_slow_and_idle_sockets_are_closed_and_the_scaler_keeps_serving(tmp_path):
    with ScalerProcess(slow_policy(tmp_path), tmp_path) as scaler:
        clients = [SlowClient(scaler.port, kind) for kind in ["idle", "slow_headers", "slow_body"] * 7][:20]
        healthy_meanwhile = []
        deadline = time.monotonic() + HEADER_TIMEOUT + BODY_TIMEOUT + SLACK + 2
        while time.monotonic() < deadline and any(c.closed_after is None for c in clients):
            for client in clients:
                client.step()
            if len(healthy_meanwhile) < 3:
                healthy_meanwhile.append(http("GET", scaler.url + "/healthz", token=None)[0])
            time.sleep(0.1)
        for client in clients:
            if client.closed_after is None:
                client.sock.close()
        still_open = [c.kind for c in clients if c.closed_after is None]
        assert not still_open, f"still open after {HEADER_TIMEOUT + BODY_TIMEOUT + SLACK + 2:g}s: {still_open}"
        for client in clients:
            bound = HEADER_TIMEOUT + SLACK if client.kind != "slow_body" else BODY_TIMEOUT + HEADER_TIMEOUT + SLACK
            assert client.closed_after is not None and client.closed_after <= bound, (client.kind, client.closed_after)
        slow_bodies = [c for c in clients if c.kind == "slow_body"]
        assert all(c.received.startswith(b"HTTP/1.1 408") for c in slow_bodies), [c.received[:80] for c in slow_bodies]
        assert all(b"body not received within 1s" in c.received for c in slow_bodies)
        assert healthy_meanwhile == [200, 200, 200], "answered while the slow sockets were open"
        assert http("GET", scaler.url + "/healthz", token=None)[0] == 200
        assert scaler.actions() == []
        log = scaler.log()
    assert "Traceback" not in log
    assert not [line for line in log.splitlines() if '"level": "error"' in line]


def test_connections_over_the_cap_get_503_until_some_close(tmp_path):
    with ScalerProcess(slow_policy(tmp_path, max_connections=4, header_timeout_seconds=2.0), tmp_path) as scaler:
        held = [socket.create_connection(("127.0.0.1", scaler.port), timeout=5) for _ in range(4)]
        try:
            time.sleep(0.2)  # the server has accepted them
            with socket.create_connection(("127.0.0.1", scaler.port), timeout=5) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := extra.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
            assert answer.endswith(b"too many open connections\n")
            for sock in held:  # the held ones, idle, are closed after the header timeout
                sock.settimeout(2.0 + SLACK)
                assert sock.recv(1) == b""
        finally:
            for sock in held:
                sock.close()
        assert http("GET", scaler.url + "/healthz", token=None)[0] == 200, "serving again once they are gone"
        log = scaler.log()
    messages = [json.loads(line)["msg"] for line in log.splitlines() if line.startswith("{")]
    assert any("4 connections open (max_connections)" in m for m in messages)


def test_a_client_that_goes_away_mid_body_is_one_info_line(tmp_path):
    with ScalerProcess(slow_policy(tmp_path), tmp_path) as scaler:
        for how in ("close", "reset"):
            sock = socket.create_connection(("127.0.0.1", scaler.port), timeout=5)
            sock.sendall(body_head(5000) + b'{"version": "4", ')
            time.sleep(0.2)
            if how == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        time.sleep(0.5)
        assert http("GET", scaler.url + "/healthz", token=None)[0] == 200
        assert scaler.actions() == [], "the body never arrived: nothing decided"
        log = scaler.log()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert "Traceback" not in log
    assert not [r for r in records if r["level"] in ("error", "critical")], [r["msg"] for r in records]


# -- bounded state ----------------------------------------------------------------------------------
def burst(n: int, size: int = 1000) -> list[Alert]:
    """``size`` distinct alert instances aimed at one target: one wins, the rest lose on priority."""
    return [Alert("firing", {"alertname": "Page", "n": str(i)}, {}, "2024-01-01T00:00:00Z", "",
                  f"burst-{n}-alert-{i}-" + "f" * 40) for i in range(size)]


async def _bursts(cfg, count: int) -> tuple[list[int], list[int], Scaler]:
    scaler = Scaler(cfg, backends={})
    await scaler.start()
    sizes, entries = [], []
    try:
        for n in range(count):
            await scaler.handle(burst(n))
            sizes.append(os.stat(cfg.state_file).st_size)
            entries.append(len(scaler.state.seen))
        await scaler.idle(30)
    finally:
        await scaler.stop()
    return sizes, entries, scaler


def test_forty_bursts_of_a_thousand_alerts_keep_the_state_and_audit_bounded(tmp_path):
    """With the default dedupe settings the state file stops growing at the cap (it was 4.4 MB and
    still growing); the audit log rotates, keeping at most audit_backups + 1 files."""
    cfg = config(tmp_path, dry_run=True, audit_max_bytes="1MiB", audit_backups=2,
                 rate_limit={"max_actions": 1000, "per_seconds": 60},
                 targets={"chat": {"kind": "notify", "url_env": "AW_LIMITS_NOPE"}},
                 rules=[{"name": "page", "alertname": "Page", "action": "notify", "target": "chat",
                         "cooldown_seconds": 0}])
    sizes, entries, scaler = asyncio.run(_bursts(cfg, 40))
    cap = cfg.max_dedupe_entries
    assert cap == 10_000, "the documented default"
    assert entries[:10] == [1000 * (n + 1) for n in range(10)]
    assert entries[10:] == [cap] * 30, "held at the cap once reached"
    assert max(sizes) < 40 * cap, f"about 30 bytes per remembered alert instance: {max(sizes)} bytes"
    assert sizes[-1] <= sizes[10] * 1.02, f"no growth past the cap: {sizes[10]} -> {sizes[-1]}"
    files = scaler.audit.files()
    assert [p.name for p in files] == ["audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
    assert all(p.stat().st_size <= 1024 * 1024 for p in files)
    last = scaler.audit.read()[-1]
    assert last["event"] == "decision" and last["fingerprint"].startswith("burst-39-"), "the newest are kept"


def test_start_forgets_what_the_policy_no_longer_has_and_applies_a_lowered_cap(tmp_path):
    cfg = config(tmp_path, max_dedupe_entries=100, targets={"chat": {"kind": "notify", "url_env": "X"}},
                 rules=[{"name": "page", "alertname": "Page", "action": "notify", "target": "chat"}])
    state = State(cooldowns={"chat|notify": 4e9, "gone|notify": 4e9}, baselines={"gone|replicas": 2.0},
                  applied={"page|chat": 1.0, "page|gone": 1.0, "old-rule|chat": 1.0})
    for i in range(500):
        state.mark_seen(f"k{i}", 1e9, 4e9, 10_000)
    StateStore(cfg.state_file).save(state)

    async def start_and_stop() -> None:
        scaler = Scaler(cfg, backends={})
        await scaler.start()
        await scaler.stop()

    asyncio.run(start_and_stop())
    saved = StateStore(cfg.state_file).load()
    assert saved.cooldowns == {"chat|notify": 4e9}
    assert saved.baselines == {} and saved.applied == {"page|chat": 1.0}
    assert len(saved.seen) == 100 and saved.is_seen("k499", 2e9) and not saved.is_seen("k0", 2e9)


def test_dedupe_keys_from_an_older_state_file_still_match():
    key = "page|fp|2024-01-01T00:00:00Z|firing"
    state = State.from_json({"version": 1, "seen": {key: 4e9}})
    assert state.is_seen(key, 1e9)
    assert all(len(k) == 16 for k in state.seen)


# -- audit rotation ---------------------------------------------------------------------------------
def test_audit_log_rotates_by_size_and_keeps_the_newest(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl", max_bytes=4096, backups=2)
    for seq in range(400):
        audit.append({"event": "decision", "seq": seq, "pad": "x" * 50})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"], "at most backups + 1 files"
    assert all((tmp_path / name).stat().st_size <= 4096 for name in files)
    seqs = [r["seq"] for r in audit.read()]
    assert seqs[-1] == 399 and seqs == list(range(seqs[0], 400)), "the newest records, in order, none lost between"
    live = [json.loads(line)["seq"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert live[-1] == 399
    kept_none = AuditLog(tmp_path / "solo.jsonl", max_bytes=4096, backups=0)
    for seq in range(400):
        kept_none.append({"seq": seq, "pad": "x" * 50})
    assert sorted(p.name for p in tmp_path.glob("solo*")) == ["solo.jsonl"]
    assert [r["seq"] for r in kept_none.read()][-1] == 399

"""A bounded fuzz of the real scaler process: malformed requests get a 4xx naming the problem, never a 5xx.

Before the fix, nine kinds of request got a 500 (one of them without a token): JSON nested 10,000
deep, a 5,000-digit integer, a byte that is not UTF-8 in the Authorization header on /webhook and
/actions, and ``Content-Encoding: gzip`` on a body that is not gzip. Here a few hundred requests
(seeded, so a failure can be replayed) mix those with their relatives: NaN, duplicate keys, lone
surrogates, wrong top-level types, huge arrays, wrong Content-Type, bodies over the limit, broken
chunked framing, truncated bodies, bad fields. Every one is sent over a raw socket, with the
token, without it, or with a wrong one. None may get a 5xx, none may be acted on, the scaler must
still answer /healthz, and its log must hold no ERROR and no traceback.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agentwatch.scaler import webhook
from tests.scaler.helpers import TOKEN, ScalerProcess, http, payload, raw_alert

SEED = 20240611
REQUESTS = 300
MAX_BODY = 65536
VALID = payload(raw_alert("Page", fp="fuzz", n="1"))


def policy(tmp_path: Path) -> dict:
    """A notify rule on every alert named Page (dry run): an accepted payload would show in /actions."""
    return {"dry_run": True, "state_file": str(tmp_path / "state.json"), "audit_log": str(tmp_path / "audit.jsonl"),
            "max_body_bytes": MAX_BODY, "log_level": "info",
            "http": {"header_timeout_seconds": 5, "body_timeout_seconds": 5},
            "rate_limit": {"max_actions": 100000, "per_seconds": 60},
            "targets": {"chat": {"kind": "notify", "url_env": "AW_FUZZ_NOPE"}},
            "rules": [{"name": "page", "alertname": "Page", "action": "notify", "target": "chat",
                       "cooldown_seconds": 0}]}


# -- raw HTTP ---------------------------------------------------------------------------------------
def request(method: str, path: str, body: bytes | None = None, headers: dict[str, bytes] | None = None,
            chunked: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + value)
    if body is not None:
        lines.append(b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}".encode())
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if body is None:
        return head
    return head + (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked and body else body)


def exchange(port: int, data: bytes, half_close: bool = False, timeout: float = 15) -> tuple[int | None, bytes]:
    """Send ``data``, read until the server closes; the status (None if it answered nothing) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before taking everything (413, 503)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    head, _, body = out.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    return status, body


# -- malformed bodies -------------------------------------------------------------------------------
def _dumps(data: object) -> bytes:
    return json.dumps(data).encode()


def _alerts_with(rng: random.Random, **change: object) -> bytes:
    body = copy.deepcopy(VALID)
    body["alerts"][0].update(change)
    return _dumps(body)


def deep(rng: random.Random) -> bytes:
    depth = rng.choice([33, 100, 999, 1001, 5000, 10_000, 20_000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    inner = opener * depth + b"1" + closer * depth
    return b'{"version": "4", "status": "firing", "alerts": [], "x": ' + inner + b"}"


def big_int(rng: random.Random) -> bytes:
    digits = rng.choice([21, 100, 4300, 4301, 5000, 20_000])
    number = ("-" if rng.random() < 0.3 else "") + "9" * digits
    where = rng.choice(["version", "alerts", "x"])
    body = _dumps({**VALID, where: "@N@"}).replace(b'"@N@"', number.encode())
    return body


def constant(rng: random.Random) -> bytes:
    word = rng.choice(["NaN", "Infinity", "-Infinity"])
    return _dumps({**VALID, "x": "@C@"}).replace(b'"@C@"', word.encode())


def duplicate_key(rng: random.Random) -> bytes:
    key = rng.choice(["version", "alerts", "status"])
    text = _dumps(VALID)
    return text[:-1] + b', "' + key.encode() + b'": "4"}'


def not_utf8(rng: random.Random) -> bytes:
    text = bytearray(_dumps(VALID))
    text[rng.randrange(len(text))] = rng.choice([0x80, 0xC0, 0xFF, 0xFE])
    return bytes(text)


def lone_surrogate(rng: random.Random) -> bytes:
    escape = rng.choice(["\\ud800", "\\udfff", "\\udc80"])
    spot = rng.choice(["label", "alertname", "key", "fingerprint", "startsAt"])
    raw = {"label": {"labels": {"alertname": "Page", "x": "@S@"}},
           "alertname": {"labels": {"alertname": "Page@S@"}},
           "key": {"labels": {"alertname": "Page", "@S@": "v"}},
           "fingerprint": {"fingerprint": "fp@S@"},
           "startsAt": {"startsAt": "2024-01-01T00:00:00@S@"}}[spot]
    return _alerts_with(rng, **raw).replace(b"@S@", escape.encode())


def wrong_top_level(rng: random.Random) -> bytes:
    return rng.choice([b"[]", b'"x"', b"4", b"null", b"true", b"", b" ", b"[" + _dumps(VALID) + b"]"])


def huge_array(rng: random.Random) -> bytes:
    kind = rng.choice(["alerts", "labels", "junk"])
    if kind == "alerts":
        return _dumps({**VALID, "alerts": [{}] * (webhook.MAX_ALERTS + 1)})
    if kind == "labels":
        labels = {f"l{i}": "v" for i in range(webhook.MAX_LABELS + 1)}
        return _alerts_with(rng, labels={"alertname": "Page", **labels})
    return _dumps({**VALID, "version": [0] * 20_000})


def bad_field(rng: random.Random) -> bytes:
    change = rng.choice([{"labels": "x"}, {"labels": {"alertname": 3}}, {"labels": {}}, {"status": "burning"},
                         {"startsAt": 5}, {"startsAt": "yesterday"}, {"fingerprint": 7},
                         {"fingerprint": "f" * 200}, {"annotations": []}, {"labels": {"alertname": "P" * 5000}}])
    return _alerts_with(rng, **change)


def truncated(rng: random.Random) -> bytes:
    text = _dumps(VALID)
    return text[:rng.randrange(1, len(text) - 1)]


def mutated(rng: random.Random) -> bytes:
    """A valid payload with a few random bytes changed; one that still parses is not malformed: retry."""
    for _ in range(50):
        text = bytearray(_dumps(VALID))
        for _ in range(rng.randint(1, 4)):
            text[rng.randrange(len(text))] = rng.randrange(256)
        try:
            webhook.parse(bytes(text))
        except webhook.PayloadError:
            return bytes(text)
    return b"{"


BODIES: dict[str, Callable[[random.Random], bytes]] = {
    "deep": deep, "big_int": big_int, "constant": constant, "duplicate_key": duplicate_key,
    "not_utf8": not_utf8, "lone_surrogate": lone_surrogate, "wrong_top_level": wrong_top_level,
    "huge_array": huge_array, "bad_field": bad_field, "truncated": truncated, "mutated": mutated,
}


# -- whole requests ---------------------------------------------------------------------------------
def auth_header(rng: random.Random) -> dict[str, bytes]:
    choice = rng.choice(["token", "token", "token", "none", "wrong", "not_utf8", "basic"])
    return {"token": {"Authorization": b"Bearer " + TOKEN.encode()}, "none": {},
            "wrong": {"Authorization": b"Bearer nope"},
            "not_utf8": {"Authorization": b"Bearer \xff\xfe" + TOKEN.encode()[:4]},
            "basic": {"Authorization": b"Basic " + TOKEN.encode()}}[choice]


def one_request(rng: random.Random) -> tuple[str, bytes, bool]:
    """(kind, raw bytes, half_close) for one malformed request."""
    json_type = {"Content-Type": b"application/json"}
    kind = rng.choice([*BODIES, "gzip", "wrong_type", "too_large", "too_large_chunked", "bad_chunks",
                       "short_body", "bad_auth_actions", "bad_query", "long_header", "garbage"])
    headers = {**auth_header(rng), **json_type}
    if kind in BODIES:
        body = BODIES[kind](rng)
        return kind, request("POST", "/webhook", body, headers, chunked=rng.random() < 0.3), False
    if kind == "gzip":
        encoding = rng.choice([b"gzip", b"deflate", b"br", b"x-unknown"])
        body = gzip.compress(_dumps(VALID)) if rng.random() < 0.3 else b"not gzip at all"
        return kind, request("POST", "/webhook", body, {**headers, "Content-Encoding": encoding}), False
    if kind == "wrong_type":
        ctype = rng.choice([b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
                            b"application/xml", b"\xff/json"])
        return kind, request("POST", "/webhook", _dumps(VALID), {**headers, "Content-Type": ctype}), False
    if kind in ("too_large", "too_large_chunked"):
        body = _dumps({**VALID, "pad": "x" * (MAX_BODY + rng.randrange(1, 5000))})
        return kind, request("POST", "/webhook", body, headers, chunked=kind == "too_large_chunked"), False
    if kind == "bad_chunks":
        head = request("POST", "/webhook", b"", headers, chunked=True).rsplit(b"0\r\n\r\n", 1)[0]
        framing = rng.choice([b"zz\r\nabc\r\n", b"5\r\nabcdefgh\r\n0\r\n\r\n", b"ffffffffffffffffff\r\n"])
        return kind, head + framing, True
    if kind == "short_body":
        full = request("POST", "/webhook", _dumps(VALID), headers)
        return kind, full[:-rng.randint(1, 20)], True
    if kind == "bad_auth_actions":
        auth = rng.choice([b"Bearer \xff", b"\xc3\x28", b"Bearer " + TOKEN.encode() + b"\x80"])
        return kind, request("GET", "/actions?limit=" + rng.choice(["5", "x", "9" * 5000]), None,
                             {"Authorization": auth}), False
    if kind == "bad_query":
        path = rng.choice(["/actions?limit=%ff", "/actions?limit=" + "9" * 5000, "/actions?limit=-1",
                           "/actions?limit=1e9", "/?%zz", "/healthz?x=%00"])
        return kind, request("GET", path, None, auth_header(rng)), False
    if kind == "long_header":
        return kind, request("POST", "/webhook", _dumps(VALID), {**headers, "X-Pad": b"a" * 10_000}), False
    return kind, rng.choice([b"\x16\x03\x01\x00\xa5\x01\x00\x00", b"GET\r\n\r\n", b"POST /webhook HTTP/9.9\r\n\r\n",
                             b"PO\x00ST /webhook HTTP/1.1\r\nHost: x\r\n\r\n"]), False


#: Kinds whose connection the client half-closes mid-request: the server may drop it without an answer.
MAY_GO_UNANSWERED = {"bad_chunks", "short_body", "garbage"}


@pytest.fixture
def scaler(tmp_path):
    with ScalerProcess(policy(tmp_path), tmp_path) as proc:
        yield proc


@pytest.fixture(scope="module")
def shared_scaler(tmp_path_factory):
    """One process for the named cases: each is rejected, so none changes what the next one sees."""
    tmp = tmp_path_factory.mktemp("fuzz-cases")
    with ScalerProcess(policy(tmp), tmp) as proc:
        yield proc


def test_bounded_fuzz_gets_no_5xx_and_nothing_is_acted_on(scaler, tmp_path):
    rng = random.Random(SEED)
    statuses: dict[str, Counter[int | None]] = {}
    for i in range(REQUESTS):
        kind, data, half_close = one_request(rng)
        status, body = exchange(scaler.port, data, half_close)
        statuses.setdefault(kind, Counter())[status] += 1
        assert status is None or status < 500, f"request {i} ({kind}): {status} {body[:200]!r}\n{data[:300]!r}"
        assert status is not None or kind in MAY_GO_UNANSWERED, f"request {i} ({kind}) got no answer: {data[:300]!r}"
        assert status != 200 or kind in ("bad_query",), f"request {i} ({kind}) was accepted: {body[:200]!r}"
    assert len(statuses) >= 18, f"the fuzz covers its kinds: {sorted(statuses)}"
    assert http("GET", scaler.url + "/healthz", token=None)[0] == 200
    assert scaler.actions() == [], "nothing malformed was decided on"
    audit = tmp_path / "audit.jsonl"
    assert not audit.exists() or audit.read_text() == "", "nothing malformed reached the audit log"
    # The scaler still decides: one good webhook goes through.
    status, body = http("POST", scaler.url + "/webhook", VALID)
    assert status == 200 and body["decisions"][0]["outcome"] == "act"
    log = scaler.log()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert not [r for r in records if r["level"] in ("error", "critical")], "no ERROR for a client's mistake"
    assert "Traceback" not in log


AUTH_JSON = {"Authorization": b"Bearer " + TOKEN.encode(), "Content-Type": b"application/json"}
#: Each kind that got a 500 (or was acted on) before, with the answer it gets now.
CASES: dict[str, tuple[bytes, int, str]] = {
    "json nested 10,000 deep": (request("POST", "/webhook", b"[" * 10_000 + b"]" * 10_000, AUTH_JSON),
                                400, "(body): nested deeper than"),
    "a 5,000-digit integer": (request("POST", "/webhook", b'{"version": ' + b"9" * 5000 + b"}", AUTH_JSON),
                              400, "(body): a number longer than"),
    "Authorization not UTF-8 on /webhook": (
        request("POST", "/webhook", _dumps(VALID), {**AUTH_JSON, "Authorization": b"Bearer \xff\xfe"}),
        400, "Authorization: header is not valid UTF-8"),
    "Authorization not UTF-8 on /actions": (request("GET", "/actions", None, {"Authorization": b"Bearer \xff"}),
                                            400, "Authorization: header is not valid UTF-8"),
    "gzip that is not gzip": (request("POST", "/webhook", b"not gzip", {**AUTH_JSON, "Content-Encoding": b"gzip"}),
                              415, "Content-Encoding: only an uncompressed body"),
    "text/plain": (request("POST", "/webhook", _dumps(VALID), {**AUTH_JSON, "Content-Type": b"text/plain"}),
                   415, "Content-Type: expected application/json"),
    "a lone surrogate": (request("POST", "/webhook", _dumps(VALID).replace(b'"n": "1"', b'"n": "\\ud800"'),
                                 AUTH_JSON), 400, "alerts[0].labels.n: not valid Unicode"),
    "NaN": (request("POST", "/webhook", b'{"version": NaN}', AUTH_JSON), 400, "(body): NaN is not allowed"),
    "a duplicate key": (request("POST", "/webhook", b'{"version": "4", "version": "4"}', AUTH_JSON),
                        400, "(body): duplicate key 'version'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_former_500_gets_a_4xx_naming_the_problem(shared_scaler, name):
    data, status, error = CASES[name]
    got, body = exchange(shared_scaler.port, data)
    assert got == status, f"{name}: {got} {body[:300]!r}"
    assert json.loads(body)["error"].startswith(error), f"{name}: {body[:300]!r}"
    assert shared_scaler.actions() == []

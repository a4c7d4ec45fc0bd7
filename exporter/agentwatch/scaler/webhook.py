"""Alertmanager webhook payloads (version "4") checked field by field.

Nothing is acted on from a payload that fails here; the error names the bad field, e.g.
``alerts[0].labels: expected an object``. Only the fields the policy needs are kept.

The JSON itself is held to what Alertmanager sends: no NaN or Infinity, no duplicate keys, no
integer longer than 20 digits (Python refuses to parse ones past 4,300), nesting at most
``MAX_DEPTH`` deep (Python's parser would overflow its stack at about 1,000), and strings that
are valid Unicode (a lone surrogate cannot be written to a log, a page or a file).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from agentwatch.scaler.model import Alert, AlertStatus

MAX_ALERTS = 1000
MAX_LABELS = 100
MAX_VALUE_LEN = 4096
#: An Alertmanager payload is 4 levels deep (body, alerts, alert, labels); this leaves ample room.
MAX_DEPTH = 32
MAX_INT_DIGITS = 20


class PayloadError(ValueError):
    """The payload cannot be used; the message names the field."""


def _status(value: Any, where: str) -> AlertStatus:
    """The group's or an alert's status, typed (a plain membership test would not narrow it)."""
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise PayloadError(f"{where}: expected \"firing\" or \"resolved\" (got {value!r})")


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object")
    if len(value) > MAX_LABELS:
        raise PayloadError(f"{where}: more than {MAX_LABELS} entries")
    for k, v in value.items():
        _unicode(k, f"{where} key")
        if len(k) > MAX_VALUE_LEN:
            raise PayloadError(f"{where}.{k[:80]}: name longer than {MAX_VALUE_LEN} characters")
        if not isinstance(v, str):
            raise PayloadError(f"{where}.{k}: expected a string (got {type(v).__name__})")
        _unicode(v, f"{where}.{k}")
        if len(v) > MAX_VALUE_LEN:
            raise PayloadError(f"{where}.{k}: longer than {MAX_VALUE_LEN} characters")
    return dict(value)


def _unicode(text: str, where: str) -> None:
    """A lone surrogate (``"\\ud800"`` is valid JSON) is not text: it cannot be encoded anywhere."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{where}: not valid Unicode (a lone surrogate escape)") from None


def _timestamp(value: Any, where: str, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected an RFC 3339 timestamp string")
    _unicode(value, where)
    try:
        datetime.fromisoformat(_trim_nanos(value))
    except ValueError:
        raise PayloadError(f"{where}: expected an RFC 3339 timestamp (got {value[:40]!r})") from None
    return value


def _trim_nanos(value: str) -> str:
    """Go prints nanoseconds; Python parses at most microseconds."""
    head, dot, rest = value.replace("Z", "+00:00").partition(".")
    if not dot:
        return head
    digits = ""
    for ch in rest:
        if not ch.isdigit():
            break
        digits += ch
    return f"{head}.{(digits + '000000')[:6]}{rest[len(digits):]}"


def fingerprint_of(labels: dict[str, str]) -> str:
    """A stable stand-in when a sender leaves the fingerprint out."""
    blob = json.dumps(sorted(labels.items()), separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _no_constant(name: str) -> Any:
    raise PayloadError(f"(body): {name} is not allowed (not standard JSON)")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise PayloadError(f"(body): a number longer than {MAX_INT_DIGITS} digits ({text[:12]}...)")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PayloadError(f"(body): duplicate key {key[:80]!r} in an object")
        out[key] = value
    return out


def _check_depth(data: Any) -> None:
    """Nesting at most MAX_DEPTH, walked without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PayloadError(f"(body): nested deeper than {MAX_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def load_json(body: bytes) -> Any:
    """The body as JSON under the rules above, or PayloadError saying which one it breaks."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"(body): not valid UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"(body): not valid JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(f"(body): nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(data)
    return data


def parse(body: bytes) -> list[Alert]:
    """Alerts from a raw webhook body, or PayloadError naming the first bad field."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise PayloadError("(body): expected a JSON object")
    version = data.get("version")
    if version != "4":
        raise PayloadError(f"version: expected \"4\" (got {version!r})")
    _status(data.get("status"), "status")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: expected a list")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(f"alerts: more than {MAX_ALERTS} alerts")
    out = []
    for i, raw in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(raw, dict):
            raise PayloadError(f"{where}: expected an object")
        a_status = _status(raw.get("status"), f"{where}.status")
        if "labels" not in raw:
            raise PayloadError(f"{where}.labels: required")
        labels = _str_map(raw["labels"], f"{where}.labels")
        if not labels.get("alertname"):
            raise PayloadError(f"{where}.labels.alertname: required")
        annotations = _str_map(raw.get("annotations") or {}, f"{where}.annotations")
        starts_at = _timestamp(raw.get("startsAt"), f"{where}.startsAt", required=True)
        ends_at = _timestamp(raw.get("endsAt"), f"{where}.endsAt", required=False)
        fp = raw.get("fingerprint")
        if fp is not None and (not isinstance(fp, str) or len(fp) > 128):
            raise PayloadError(f"{where}.fingerprint: expected a string of at most 128 characters")
        if fp:
            _unicode(fp, f"{where}.fingerprint")
        out.append(Alert(a_status, labels, annotations, starts_at, ends_at, fp or fingerprint_of(labels)))
    return out

"""Alertmanager webhook payloads (version "4") checked field by field.

Nothing is acted on from a payload that fails here; the error names the bad field, e.g.
``alerts[0].labels: expected an object``. Only the fields the policy needs are kept.
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
        if not isinstance(v, str):
            raise PayloadError(f"{where}.{k}: expected a string (got {type(v).__name__})")
        if len(v) > MAX_VALUE_LEN or len(k) > MAX_VALUE_LEN:
            raise PayloadError(f"{where}.{k}: longer than {MAX_VALUE_LEN} characters")
    return dict(value)


def _timestamp(value: Any, where: str, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected an RFC 3339 timestamp string")
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


def parse(body: bytes) -> list[Alert]:
    """Alerts from a raw webhook body, or PayloadError naming the first bad field."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"(body): not valid JSON: {exc}") from None
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
            raise PayloadError(f"{where}.fingerprint: expected a string")
        out.append(Alert(a_status, labels, annotations, starts_at, ends_at, fp or fingerprint_of(labels)))
    return out

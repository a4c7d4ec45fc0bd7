"""Numbers and words as people read them, shared by the tables and the fleet page."""

from __future__ import annotations

import math
import signal
import time
import unicodedata

MiB = 1 << 20
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
#: Engine strings longer than this are cut (a label can be kilobytes long).
MAX_TEXT = 200
#: Sentences (summaries, patterns, advice) are longer; they are cut later.
MAX_SENTENCE = 1000


def size(value: float | None) -> str:
    """Bytes in IEC units with one decimal below 100 ("61.9 MiB", "512 B"); "-" when unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    sign, n = ("-" if value < 0 else ""), abs(value)
    for unit in _UNITS:
        if n < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{n:.0f} B"
            return f"{sign}{n:.1f} {unit}" if n < 100 else f"{sign}{n:.0f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def rate(value: float | None) -> str:
    """A slope in bytes per second ("+1.2 MiB/s"); "-" when unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0 B/s"
    return ("+" if value > 0 else "") + size(value) + "/s"


def duration(seconds: float | None) -> str:
    """Seconds as the two largest units ("4m10s", "2h5m", "3d4h"); "-" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    for big, small, unit_big, unit_small in ((86400, 3600, "d", "h"), (3600, 60, "h", "m"), (60, 1, "m", "s")):
        if s >= big:
            rest = (s % big) // small
            return f"{s // big}{unit_big}{rest}{unit_small}" if rest else f"{s // big}{unit_big}"
    return f"{s}s"


def age(at: float, now: float) -> str:
    """How long ago ``at`` was, from ``now`` ("4m10s ago", "just now")."""
    return "just now" if now - at < 1 else f"{duration(now - at)} ago"


def percent(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return "-"
    return f"{ratio * 100:.0f}%"


def local_time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def utc_time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def clean(text: str | None, limit: int = MAX_TEXT) -> str:
    """An engine string made safe to print: control and format characters (escape sequences,
    bidirectional overrides) shown as ``\\x1b``-style escapes, and cut to ``limit`` characters."""
    if not text:
        return ""
    cut = len(text) > limit
    out = []
    for ch in text[: limit - 1] if cut else text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out) + ("…" if cut else "")


def exit_text(exit_code: int | None, sig: int | None) -> str:
    """``137 (SIGKILL)``; the bare code when no signal ended the process; "-" when unknown."""
    if exit_code is None:
        return "-"
    if sig is None:
        return str(exit_code)
    try:
        return f"{exit_code} ({signal.Signals(sig).name})"
    except ValueError:
        return f"{exit_code} (signal {sig})"


def signed(value: float | None) -> float:
    """A sort key that puts unknown values last."""
    return -math.inf if value is None else value

"""Cooldowns, dedupe, the rate window, baselines and pending reverses: what must survive a restart.

``State`` is plain data (the policy reads it; only ``policy.commit`` changes it; no I/O);
``StateStore`` persists it atomically (temp file + fsync + rename) and sets a corrupt file aside
instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("agentwatch.scaler.state")

VERSION = 1


@dataclass(frozen=True)
class PendingReverse:
    """A reverse waiting out its stabilisation window, with the alert it undoes (for the audit)."""

    due: float
    alertname: str = ""
    fingerprint: str = ""
    starts_at: str = ""

    @classmethod
    def from_json(cls, key: str, data: Any) -> PendingReverse:
        if not isinstance(data, dict) or not _is_number(data.get("due")):
            raise ValueError(f"pending.{key}: expected an object with a numeric due")
        texts = {name: data.get(name, "") for name in ("alertname", "fingerprint", "starts_at")}
        bad = [name for name, value in texts.items() if not isinstance(value, str)]
        if bad:
            raise ValueError(f"pending.{key}.{bad[0]}: expected a string")
        return cls(due=float(data["due"]), **texts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class State:
    #: "target|action" -> Unix time the cooldown ends.
    cooldowns: dict[str, float] = field(default_factory=dict)
    #: dedupe key -> Unix time it expires; insertion order is age order.
    seen: dict[str, float] = field(default_factory=dict)
    #: Unix times of recent actions, for the global rate limit.
    actions: list[float] = field(default_factory=list)
    #: "target|quantity" -> the value seen before the first action moved it (for reverses).
    baselines: dict[str, float] = field(default_factory=dict)
    #: "rule|target" -> Unix time a reversible rule acted (a resolve may undo it).
    applied: dict[str, float] = field(default_factory=dict)
    #: "rule|target" -> the reverse waiting out its stabilisation window.
    pending: dict[str, PendingReverse] = field(default_factory=dict)

    # dedupe -----------------------------------------------------------------------------------
    def is_seen(self, key: str, now: float) -> bool:
        expires = self.seen.get(key)
        return expires is not None and expires > now

    def mark_seen(self, key: str, now: float, ttl: float, max_entries: int) -> None:
        self.seen.pop(key, None)
        self.seen[key] = now + ttl
        while len(self.seen) > max_entries:
            self.seen.pop(next(iter(self.seen)))

    # cooldowns --------------------------------------------------------------------------------
    def cooldown_left(self, target: str, action: str, now: float) -> float:
        return max(0.0, self.cooldowns.get(f"{target}|{action}", 0.0) - now)

    def start_cooldown(self, target: str, action: str, until: float) -> None:
        key = f"{target}|{action}"
        self.cooldowns[key] = max(until, self.cooldowns.get(key, 0.0))

    # rate limit -------------------------------------------------------------------------------
    def actions_in_window(self, now: float, window: float) -> int:
        return sum(1 for t in self.actions if now - window < t <= now)

    def expire(self, now: float, window: float) -> None:
        """Drop what can no longer matter, so memory stays bounded."""
        self.cooldowns = {k: v for k, v in self.cooldowns.items() if v > now}
        self.seen = {k: v for k, v in self.seen.items() if v > now}
        self.actions = [t for t in self.actions if now - window < t]

    # persistence ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> State:
        """Rebuild from a file's contents; ValueError if anything has the wrong shape."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"expected an object with version {VERSION}")

        def objects(name: str) -> dict[str, Any]:
            value = data.get(name, {})
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"{name}: expected an object")
            return value

        def floats(name: str) -> dict[str, float]:
            value = objects(name)
            if not all(_is_number(v) for v in value.values()):
                raise ValueError(f"{name}: expected an object of numbers")
            return {k: float(v) for k, v in value.items()}

        actions = data.get("actions", [])
        if not isinstance(actions, list) or not all(_is_number(t) for t in actions):
            raise ValueError("actions: expected a list of numbers")
        pending = {k: PendingReverse.from_json(k, v) for k, v in objects("pending").items()}
        seen = floats("seen")
        return cls(cooldowns=floats("cooldowns"), seen=dict(sorted(seen.items(), key=lambda kv: kv[1])),
                   actions=[float(t) for t in actions], baselines=floats("baselines"),
                   applied=floats("applied"), pending=pending)


class StateStore:
    """One JSON file, replaced atomically on every change."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: Where a corrupt file was moved on load, if it was.
        self.set_aside: Path | None = None

    def load(self) -> State:
        """The saved state; an empty one if there is none; a corrupt file is renamed and reported."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        except OSError as exc:
            logger.error("cannot read scaler state %s: %s; starting empty", self.path, exc.strerror or exc)
            return State()
        try:
            return State.from_json(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            try:
                os.replace(self.path, aside)
                self.set_aside = aside
            except OSError as move_exc:
                logger.error("cannot set corrupt state file aside: %s", move_exc)
            logger.error("scaler state file %s is corrupt (%s); set aside as %s, starting empty",
                         self.path, str(exc)[:200], aside.name)
            return State()

    def save(self, state: State) -> None:
        """Write to a temp file in the same directory, fsync, rename over, fsync the directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        data = json.dumps(state.to_json(), separators=(",", ":")).encode()
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

"""Cooldowns, dedupe, the rate window, baselines and pending reverses: what must survive a restart.

``State`` is plain data (the policy reads it; only ``policy.commit`` changes it; no I/O);
``StateStore`` persists it atomically (temp file + fsync + rename) and sets a corrupt file aside
instead of failing; ``BatchedSaves`` lets concurrent decisions share one write and fsync.

The state is rewritten after every batch of changes, so its size is the cost of every batch. It holds only
what can still matter: dedupe entries until they expire (and at most ``max_dedupe_entries``,
stored as 16-character digests whatever the length of the alert's fingerprint), cooldowns while
they run, the rate window's timestamps, and baselines and reverses of the policy's own rules and
targets.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("agentwatch.scaler.state")

VERSION = 1
#: Length of a stored dedupe digest (hex); a longer key in an older file is digested on load.
DIGEST_CHARS = 16


def dedupe_digest(key: str) -> str:
    """The stored form of a dedupe key: 64 bits of BLAKE2b, short and of fixed size."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=DIGEST_CHARS // 2).hexdigest()


def _is_digest(key: str) -> bool:
    return len(key) == DIGEST_CHARS and all(c in "0123456789abcdef" for c in key)


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
    #: dedupe digest (``dedupe_digest``) -> Unix time it expires; insertion order is expiry order.
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
        expires = self.seen.get(dedupe_digest(key))
        return expires is not None and expires > now

    def mark_seen(self, key: str, now: float, ttl: float, max_entries: int) -> None:
        """Remember ``key`` until ``now + ttl``; past ``max_entries`` the entries closest to expiry go."""
        digest = dedupe_digest(key)
        self.seen.pop(digest, None)
        self.seen[digest] = float(math.ceil(now + ttl))  # whole seconds: shorter in the file
        self.cap_seen(max_entries)

    def cap_seen(self, max_entries: int) -> bool:
        """Keep at most ``max_entries`` dedupe entries (the oldest go first); True if any went."""
        over = len(self.seen) - max_entries
        for _ in range(max(0, over)):
            self.seen.pop(next(iter(self.seen)))
        return over > 0

    # cooldowns --------------------------------------------------------------------------------
    def cooldown_left(self, target: str, action: str, now: float) -> float:
        return max(0.0, self.cooldowns.get(f"{target}|{action}", 0.0) - now)

    def start_cooldown(self, target: str, action: str, until: float) -> None:
        key = f"{target}|{action}"
        self.cooldowns[key] = max(until, self.cooldowns.get(key, 0.0))

    # rate limit -------------------------------------------------------------------------------
    def actions_in_window(self, now: float, window: float) -> int:
        """Actions in ``(now - window, now]``; ``actions`` is kept sorted (``expire``, ``from_json``),
        so this is two binary searches, not a walk over every action of the window per decision."""
        return bisect.bisect_right(self.actions, now) - bisect.bisect_right(self.actions, now - window)

    def expire(self, now: float, window: float) -> None:
        """Drop what can no longer matter, so memory stays bounded.

        ``seen`` is in expiry order (one TTL, a clock that only moves on), so only its expired head
        is visited; the walk stops at the first live entry.
        """
        self.cooldowns = {k: v for k, v in self.cooldowns.items() if v > now}
        while self.seen:
            oldest = next(iter(self.seen))
            if self.seen[oldest] > now:
                break
            del self.seen[oldest]
        # Appended in decision order, which is time order unless the clock stepped back: sorting an
        # already sorted list is one pass in C.
        self.actions.sort()
        del self.actions[:bisect.bisect_right(self.actions, now - window)]

    def forget_unknown(self, targets: set[str], rules: set[str]) -> bool:
        """Drop cooldowns, baselines and applied marks of targets or rules the policy no longer has.

        Called once at start (the policy may have changed since the state was saved); True if
        anything was dropped.
        """
        before = len(self.cooldowns) + len(self.baselines) + len(self.applied)
        self.cooldowns = {k: v for k, v in self.cooldowns.items() if k.partition("|")[0] in targets}
        self.baselines = {k: v for k, v in self.baselines.items() if k.partition("|")[0] in targets}
        self.applied = {k: v for k, v in self.applied.items()
                        if k.partition("|")[0] in rules and k.partition("|")[2] in targets}
        return len(self.cooldowns) + len(self.baselines) + len(self.applied) != before

    # persistence ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The file's contents. The containers are shared, not copied (``asdict`` would copy every
        dedupe entry of every save): encode the result before the state changes again."""
        return {"version": VERSION, "cooldowns": self.cooldowns, "seen": self.seen, "actions": self.actions,
                "baselines": self.baselines, "applied": self.applied,
                "pending": {key: asdict(reverse) for key, reverse in self.pending.items()}}

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
        seen: dict[str, float] = {}
        for key, expires in floats("seen").items():  # a file from before digests: digest its keys
            digest = key if _is_digest(key) else dedupe_digest(key)
            seen[digest] = max(expires, seen.get(digest, expires))
        return cls(cooldowns=floats("cooldowns"), seen=dict(sorted(seen.items(), key=lambda kv: kv[1])),
                   actions=sorted(float(t) for t in actions), baselines=floats("baselines"),
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
        self.write(self.encode(state))

    @staticmethod
    def encode(state: State) -> bytes:
        """The file's bytes for ``state``: a snapshot, so the state may change while they are written."""
        return json.dumps(state.to_json(), separators=(",", ":")).encode()

    def write(self, data: bytes) -> None:
        """Replace the file with ``data`` durably (temp file, fsync, rename, fsync the directory)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
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


#: A batch is written on the event loop's own thread while writes take less than this (a moving
#: average); a slower disk gets the I/O thread, so a slow fsync never holds the loop up.
INLINE_WRITE_SECONDS = 0.005


class BatchedSaves:
    """Durable saves shared by concurrent decisions: one write and fsync per batch.

    Each change to the state bumps a generation (``changed``, called right after the change, in
    the same synchronous step); ``wait(generation)`` returns once the file holds that generation or
    a later one. A batch encodes the state as it is when the batch starts, so every change made
    until then rides on that one fsync; changes made while it is written go in the next batch,
    which starts as soon as this one ends. A decision is acknowledged, and its action started, only
    after its ``wait``: whatever was acknowledged is on disk. A write that fails with an OSError is
    reported to ``on_error`` and releases its waiters (the decision stands, as a single failed save
    always did); the next change retries.

    Where the write runs: while writes are fast (INLINE_WRITE_SECONDS), on the event loop right
    after the current turn of the loop, so every change of that turn rides on it and nothing waits
    for another thread (under a burst, an I/O thread waited for the interpreter lock at each of its
    system calls: 9 ms for a 1 ms write); on a slower disk, in the I/O thread (``run_io``, which
    submits at once and returns the future), so the loop keeps serving. Only the event loop's
    thread calls these methods.
    """

    def __init__(self, store: StateStore, state: Callable[[], State],
                 run_io: Callable[[Callable[[bytes], float], bytes], asyncio.Future[float]],
                 on_error: Callable[[OSError], None]) -> None:
        self.store = store
        self._state = state
        self._run_io = run_io
        self._on_error = on_error
        #: Changes made so far, and how many of them the file holds.
        self.generation = 0
        self.saved = 0
        #: Batches written (each one fsync), for tests and benchmarks.
        self.batches = 0
        #: Moving average of a write's duration (seconds): where the next one runs.
        self.write_seconds = 0.0
        self._writing: asyncio.Future[float] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def pending(self) -> bool:
        return self.saved < self.generation or self._writing is not None

    def changed(self) -> int:
        """Record one change to the state; returns the generation to ``wait`` for."""
        self.generation += 1
        return self.generation

    async def wait(self, generation: int) -> None:
        """Return once the file holds ``generation`` (or a write covering it has failed)."""
        if self.saved >= generation:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((generation, done))
        if self._writing is None:
            self._start_batch()
        await done

    def _timed_write(self, data: bytes) -> float:
        started = time.perf_counter()
        self.store.write(data)
        return time.perf_counter() - started

    def _start_batch(self) -> None:
        loop = asyncio.get_running_loop()
        if self.write_seconds < INLINE_WRITE_SECONDS:
            self._writing = written = loop.create_future()
            loop.call_soon(self._write_inline, written)
            return
        covers = self.generation
        data = self.store.encode(self._state())  # now, on the loop: a consistent snapshot
        self._writing = self._run_io(self._timed_write, data)
        self._writing.add_done_callback(lambda done: self._finished(covers, done))

    def _write_inline(self, written: asyncio.Future[float]) -> None:
        covers = self.generation  # every change of the turn that scheduled this one
        try:
            written.set_result(self._timed_write(self.store.encode(self._state())))
        except Exception as exc:  # an OSError is reported; anything else reaches the waiters
            written.set_exception(exc)
        self._finished(covers, written)

    def _finished(self, covers: int, written: asyncio.Future[float]) -> None:
        self._writing = None
        error = None if written.cancelled() else written.exception()
        if written.cancelled() or (error is not None and not isinstance(error, OSError)):
            for _, waiter in self._waiters:  # nothing was confirmed written: pass the failure on
                if waiter.done():
                    continue
                if error is None:
                    waiter.cancel()
                else:
                    waiter.set_exception(error)
            self._waiters = []
            return
        if isinstance(error, OSError):
            self._on_error(error)
        else:
            self.write_seconds = 0.8 * self.write_seconds + 0.2 * written.result()
        self.batches += 1
        self.saved = max(self.saved, covers)
        waiting = []
        for generation, waiter in self._waiters:
            if waiter.done():
                continue  # its webhook went away
            if generation <= self.saved:
                waiter.set_result(None)
            else:
                waiting.append((generation, waiter))
        self._waiters = waiting
        if waiting:
            self._start_batch()

"""The scaler's engine room: one lock around deciding, then actions with retries in the background.

Deciding (policy + observation + commit + persist) happens under a single lock, so two webhooks
can never both claim the same alert instance or the same cooldown. The state is saved before any
action runs, so a crash mid-action cannot make a restart repeat it. Actions then run in tasks,
one at a time per target, retried with exponential backoff, and every outcome is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agentwatch.log import OnceLogger, redact
from agentwatch.scaler import policy
from agentwatch.scaler.audit import AuditLog
from agentwatch.scaler.backends import ActionError, Backend
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.metrics import ScalerMetrics
from agentwatch.scaler.model import Alert, Decision, Observation
from agentwatch.scaler.state import State, StateStore

logger = logging.getLogger("agentwatch.scaler")
T = TypeVar("T")


def new_decision_id() -> str:
    """A short random id for a decision (the policy takes ids from its caller to stay pure)."""
    return uuid.uuid4().hex[:12]


def make_backends(config: ScalerConfig) -> dict[str, Backend]:
    """One backend per target kind; the docker client is only created when first used."""
    from agentwatch.scaler.backends.docker import DockerBackend, DockerEngine
    from agentwatch.scaler.backends.http import HttpBackend
    from agentwatch.scaler.backends.notify import NotifyBackend
    from agentwatch.scaler.backends.swarm import SwarmBackend

    engine = DockerEngine(config.docker)
    docker_backend = DockerBackend(engine)
    return {"compose_service": docker_backend, "container": docker_backend, "swarm_service": SwarmBackend(engine),
            "agent_server": HttpBackend(), "notify": NotifyBackend()}


class Scaler:
    """Owns the state, the audit log, the recent decisions and the running actions."""

    def __init__(self, config: ScalerConfig, backends: dict[str, Backend] | None = None,
                 metrics: ScalerMetrics | None = None, clock: Callable[[], float] = time.time,
                 new_id: policy.IdFactory = new_decision_id) -> None:
        self.config = config
        self.backends = backends if backends is not None else make_backends(config)
        self.clock = clock
        self.new_id = new_id
        self.metrics = metrics or ScalerMetrics()
        self.metrics.cooldowns = self.cooldowns
        self.store = StateStore(config.state_file)
        self.audit = AuditLog(config.audit_log)
        self.state = State()
        self.recent: OrderedDict[str, Decision] = OrderedDict()
        self._lock = asyncio.Lock()
        self._target_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: One I/O thread keeps state and audit writes in order and off the event loop.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scaler-io")
        self._writes: set[asyncio.Future[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        #: Rejected payloads are logged once per bad field, not once per request.
        self.invalid_log = OnceLogger(logger)

    # lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.state = await self._run_io(self.store.load)
        if self.store.set_aside is not None:
            self.metrics.inc("agentwatch_scaler_persistence_errors_total", "state_corrupt")
        if policy.commit([], self.config, self.state, self.clock()):  # drops reverses the policy no longer has
            await self._save()
        for labels in (("accepted",), ("unauthorized",), ("invalid",), ("too_large",)):
            self.metrics.inc("agentwatch_scaler_webhooks_total", *labels, amount=0)
        self._ticker = asyncio.create_task(self._tick_loop(), name="scaler-tick")
        logger.info("scaler started", extra={"dry_run": self.config.dry_run, "rules": len(self.config.rules),
                                             "targets": len(self.config.targets)})

    async def stop(self, grace: float = 30.0) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
        for backend in {id(b): b for b in self.backends.values()}.values():
            with contextlib.suppress(Exception):
                await backend.close()
        self._io.shutdown(wait=True)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait for running actions and their audit lines (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while (self._tasks or self._writes) and time.monotonic() < deadline:
            await asyncio.wait({*self._tasks, *self._writes}, timeout=max(0.0, deadline - time.monotonic()))

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def _save(self) -> None:
        try:
            await self._run_io(self.store.save, self.state)
        except OSError as exc:
            self.metrics.inc("agentwatch_scaler_persistence_errors_total", "state_write")
            logger.error("cannot save scaler state %s: %s", self.config.state_file, exc.strerror or exc)

    # deciding --------------------------------------------------------------------------------
    async def handle(self, alerts: list[Alert], received_at: float | None = None) -> list[Decision]:
        """Decide on one webhook's alerts; actions start in the background."""
        started = time.perf_counter()
        received = received_at if received_at is not None else self.clock()
        async with self._lock:
            now = self.clock()
            decisions = policy.evaluate(alerts, self.config, self.state, now, self.new_id)
            await self._decide(decisions, now, received)
        latency = time.perf_counter() - started
        self.metrics.observe("agentwatch_scaler_decision_latency_seconds", latency)
        return decisions

    async def tick(self) -> list[Decision]:
        """Turn reverses whose stabilisation window has passed into actions."""
        async with self._lock:
            now = self.clock()
            decisions = policy.due_reverses(self.config, self.state, now, self.new_id)
            if decisions:
                await self._decide(decisions, now, now)
            return decisions

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            try:
                await self.tick()
            except Exception:
                logger.exception("scaler tick failed")

    async def _decide(self, decisions: list[Decision], now: float, received: float) -> None:
        observed = await self._observe(policy.targets_to_observe(decisions, self.config))
        policy.plan(decisions, self.config, self.state, observed, now)
        changed = policy.commit(decisions, self.config, self.state, now)
        for d in decisions:
            d.received_at, d.decided_at = received, self.clock()
            if d.outcome == "act":
                d.result = "dry_run" if self.config.dry_run else "pending"
        if changed:
            await self._save()
        for d in decisions:
            self._record(d)
            if d.outcome == "act":
                if self.config.dry_run:
                    self.metrics.inc("agentwatch_scaler_actions_total", d.action, "dry_run")
                    logger.info("dry run: would %s %s", d.action, d.target,
                                extra={"rule": d.rule, "current": d.current, "desired": d.desired})
                else:
                    self._launch(d)
        if self.audit.errors:
            self.metrics.inc("agentwatch_scaler_persistence_errors_total", "audit_write", amount=self.audit.errors)
            self.audit.errors = 0

    async def _observe(self, names: set[str]) -> dict[str, Observation | None]:
        async def one(name: str) -> tuple[str, Observation | None]:
            target = self.config.targets[name]
            try:
                obs = await asyncio.wait_for(self.backends[target.kind].observe(name, target),
                                             timeout=self.config.retry.timeout_seconds)
                return name, obs
            except (ActionError, TimeoutError) as exc:
                logger.warning("cannot observe %s: %s", name, redact(str(exc) or "timed out"))
                return name, None
            except Exception as exc:  # a backend bug must not stop deciding
                logger.warning("cannot observe %s: %s: %s", name, type(exc).__name__, redact(str(exc)))
                return name, None

        return dict(await asyncio.gather(*(one(n) for n in sorted(names))))

    def _record(self, d: Decision) -> None:
        """Recent list, decision metrics and one audit line for each decision."""
        self.recent[d.id] = d
        while len(self.recent) > self.config.recent_decisions:
            self.recent.popitem(last=False)
        self.metrics.inc("agentwatch_scaler_decisions_total", d.action, d.outcome)
        if d.outcome == "skipped":
            self.metrics.inc("agentwatch_scaler_skipped_total", d.reason)
        self._audit({"event": "decision", "dry_run": self.config.dry_run, **d.to_json()})

    def _audit(self, record: dict[str, Any]) -> None:
        record = {"ts": round(self.clock(), 3), **record}
        future = asyncio.get_running_loop().run_in_executor(self._io, self.audit.append, record)
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    # acting ----------------------------------------------------------------------------------
    def _launch(self, d: Decision) -> None:
        task = asyncio.create_task(self._execute(d), name=f"scaler-{d.action}-{d.target}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, d: Decision) -> None:
        target = self.config.targets[d.target]
        backend = self.backends[target.kind]
        retry = self.config.retry
        lock = self._target_locks.setdefault(d.target, asyncio.Lock())
        started = time.perf_counter()
        detail = ""
        async with lock:
            for attempt in range(1, retry.attempts + 1):
                d.attempts = attempt
                try:
                    detail = await asyncio.wait_for(backend.execute(d, target), timeout=retry.timeout_seconds)
                    d.result, d.error = "success", ""
                    break
                except TimeoutError:
                    d.error = f"timed out after {retry.timeout_seconds:g}s"
                except ActionError as exc:
                    d.error = redact(str(exc))
                except Exception as exc:  # a backend bug is a failed action, not a dead scaler
                    d.error = redact(f"{type(exc).__name__}: {exc}")
                d.result = "failure"
                if attempt < retry.attempts:
                    self.metrics.inc("agentwatch_scaler_action_retries_total", d.action)
                    delay = min(retry.max_backoff_seconds, retry.backoff_seconds * 2 ** (attempt - 1))
                    logger.warning("%s on %s failed (attempt %d/%d): %s; retrying in %.1fs", d.action, d.target,
                                   attempt, retry.attempts, d.error, delay)
                    await asyncio.sleep(delay)
        d.finished_at = self.clock()
        self.metrics.observe("agentwatch_scaler_action_duration_seconds", time.perf_counter() - started, d.action)
        self.metrics.inc("agentwatch_scaler_actions_total", d.action, d.result)
        if d.result == "success":
            logger.info("%s on %s: %s", d.action, d.target, detail, extra={"rule": d.rule, "attempts": d.attempts})
        else:
            logger.error("%s on %s failed after %d attempts: %s", d.action, d.target, d.attempts, d.error,
                         extra={"rule": d.rule})
        self._audit({"event": "result", "id": d.id, "rule": d.rule, "action": d.action, "target": d.target,
                     "result": d.result, "attempts": d.attempts, "detail": detail, "error": d.error})

    # views -----------------------------------------------------------------------------------
    def cooldowns(self) -> dict[tuple[str, str], float]:
        now = self.clock()
        out: dict[tuple[str, str], float] = {}
        for key, until in self.state.cooldowns.items():
            target, _, action = key.partition("|")
            if until > now:
                out[(target, action)] = round(until - now, 3)
        return out

    def recent_json(self, limit: int = 200) -> list[dict[str, Any]]:
        return [d.to_json() for d in reversed(list(self.recent.values())[-limit:])]

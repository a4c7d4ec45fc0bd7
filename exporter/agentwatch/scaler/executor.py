"""The scaler's engine room: deciding in order per target, then actions with retries in the background.

A webhook's decisions are made in three steps. Its targets are observed first (an agent server's
status read, an engine call), concurrently with every other webhook. Then, in its turn for those
targets (``TargetTurns``: the webhooks that arrived earlier for any of them have decided), the
policy evaluates, plans and commits in one synchronous step, so two webhooks can never both claim
the same alert instance, cooldown or slot of the rate window, whatever their targets. Last, the
state is made durable in a batch shared with every decision committed meanwhile (one fsync per
batch, ``state.BatchedSaves``). Only then is the webhook answered and its actions started: an
acknowledged decision survives a crash, and a crash mid-action cannot make a restart repeat it.
Actions run in tasks, one at a time per target, retried with exponential backoff, and every
outcome is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agentwatch.log import OnceLogger, redact
from agentwatch.scaler import policy
from agentwatch.scaler.audit import AuditLog
from agentwatch.scaler.backends import ActionError, Backend
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.metrics import ScalerMetrics
from agentwatch.scaler.model import Alert, Decision, Observation
from agentwatch.scaler.state import BatchedSaves, State, StateStore

logger = logging.getLogger("agentwatch.scaler")
T = TypeVar("T")


def new_decision_id() -> str:
    """A short random id for a decision (the policy takes ids from its caller to stay pure)."""
    return uuid.uuid4().hex[:12]


def make_backends(config: ScalerConfig) -> dict[str, Backend]:
    """One backend per target kind; the docker client is only created when first used."""
    from agentwatch.scaler.backends.docker import DockerBackend, DockerEngine
    from agentwatch.scaler.backends.http import HttpBackend
    from agentwatch.scaler.backends.kubernetes import KubernetesBackend
    from agentwatch.scaler.backends.notify import NotifyBackend
    from agentwatch.scaler.backends.swarm import SwarmBackend

    engine = DockerEngine(config.docker)
    docker_backend = DockerBackend(engine)
    return {"compose_service": docker_backend, "container": docker_backend, "swarm_service": SwarmBackend(engine),
            "kubernetes_deployment": KubernetesBackend(config.kubernetes), "agent_server": HttpBackend(),
            "notify": NotifyBackend()}


#: How long one read of a target's state serves the decisions about it (unless an action on it starts
#: or ends first). Alerts arrive in bursts about the same targets; a second is old news for nobody.
OBSERVATION_TTL_SECONDS = 1.0
#: Audit records are gathered this long and written as one batch (one hand-over to the audit thread,
#: one open and one write): per turn of the event loop, a burst made hundreds of tiny batches.
AUDIT_BATCH_SECONDS = 0.05


def _no_id() -> str:
    """Ids for a first look at what a webhook would decide (those decisions are thrown away)."""
    return ""


class TargetTurns:
    """Per-target order: a webhook decides after every webhook that arrived earlier for one of its targets.

    ``enter`` (synchronous, at arrival) queues the caller behind the last holder of each target, so
    the order is the order of arrival and nobody ever waits for a later arrival (no deadlock).
    Webhooks for other targets do not wait at all.
    """

    def __init__(self) -> None:
        self._last: dict[str, asyncio.Future[None]] = {}

    def enter(self, targets: Iterable[str]) -> Turn:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = []
        names = sorted(set(targets))
        for name in names:
            previous = self._last.get(name)
            if previous is not None and not previous.done():
                before.append(previous)
            self._last[name] = mine
        return Turn(self, names, mine, before)

    def _leave(self, turn: Turn) -> None:
        if not turn.mine.done():
            turn.mine.set_result(None)
        for name in turn.names:
            if self._last.get(name) is turn.mine:
                del self._last[name]


class Turn:
    """One webhook's place in the queues of its targets; ``leave`` must always be called."""

    def __init__(self, turns: TargetTurns, names: list[str], mine: asyncio.Future[None],
                 before: list[asyncio.Future[None]]) -> None:
        self.turns, self.names, self.mine, self.before = turns, names, mine, before

    async def wait(self) -> None:
        """Until every earlier webhook for these targets has decided (or given up)."""
        for previous in self.before:
            await asyncio.shield(previous)

    def leave(self) -> None:
        self.turns._leave(self)


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
        self.audit = AuditLog(config.audit_log, max_bytes=config.audit_max_bytes, backups=config.audit_backups)
        self.state = State()
        self.recent: OrderedDict[str, Decision] = OrderedDict()
        self.turns = TargetTurns()
        #: (target, epoch) -> the observation being read now, shared by every webhook that needs it.
        self._reading: dict[tuple[str, int], asyncio.Future[Observation | None]] = {}
        #: target -> (when its read started, its epoch then, the observation) for OBSERVATION_TTL_SECONDS.
        self._observed: dict[str, tuple[float, int, Observation]] = {}
        #: target -> how many times an action on it started or ended (observations before are stale).
        self._epochs: dict[str, int] = {}
        self._target_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: State writes and audit appends each have one thread, which keeps them in order and off the
        #: event loop; apart, a long audit batch never holds up the state write a decision waits for.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scaler-state")
        self._audit_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scaler-audit")
        self.saves = BatchedSaves(self.store, lambda: self.state, self._io_future, self._save_failed)
        self._writes: set[asyncio.Future[None]] = set()
        #: Audit records of the last AUDIT_BATCH_SECONDS, written as one batch (one open, one write)
        #: so a webhook of 1,000 alerts does not queue 1,000 file writes.
        self._audit_batch: list[dict[str, Any]] = []
        self._ticker: asyncio.Task[None] | None = None
        #: Rejected payloads are logged once per bad field, not once per request.
        self.invalid_log = OnceLogger(logger)
        #: An unobservable target is reported when it starts failing and when it recovers.
        self._observe_log = OnceLogger(logger)

    # lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.state = await self._run_io(self.store.load)
        if self.store.set_aside is not None:
            self.metrics.inc("agentwatch_scaler_persistence_errors_total", "state_corrupt")
        # The policy may have changed since the state was saved: drop what it no longer has, and
        # hold the dedupe memory to the (maybe lowered) cap.
        forgot = self.state.forget_unknown(set(self.config.targets), {r.name for r in self.config.rules})
        capped = self.state.cap_seen(self.config.max_dedupe_entries)
        if policy.commit([], self.config, self.state, self.clock()) or forgot or capped:
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
        self._flush_audit()
        self._io.shutdown(wait=True)
        self._audit_io.shutdown(wait=True)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait for running actions and their audit lines (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while (self._tasks or self._writes or self._audit_batch or self.saves.pending) \
                and time.monotonic() < deadline:
            if self.saves.pending:
                await self.saves.wait(self.saves.generation)
            self._flush_audit()
            await asyncio.wait({*self._tasks, *self._writes}, timeout=max(0.0, deadline - time.monotonic()))

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._io_future(fn, *args)

    def _io_future(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn`` submitted to the state thread now (not at the next turn of the loop)."""
        return asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def _save(self) -> None:
        await self.saves.wait(self.saves.changed())

    def _save_failed(self, exc: OSError) -> None:
        self.metrics.inc("agentwatch_scaler_persistence_errors_total", "state_write")
        logger.error("cannot save scaler state %s: %s", self.config.state_file, exc.strerror or exc)

    # deciding --------------------------------------------------------------------------------
    async def handle(self, alerts: list[Alert], received_at: float | None = None) -> list[Decision]:
        """Decide on one webhook's alerts; returns once they are durable. Actions start in the background."""
        started = time.perf_counter()
        received = received_at if received_at is not None else self.clock()

        def evaluate(now: float, new_id: policy.IdFactory) -> list[Decision]:
            return policy.evaluate(alerts, self.config, self.state, now, new_id)

        decisions = await self._decide(evaluate, received)
        latency = time.perf_counter() - started
        self.metrics.observe("agentwatch_scaler_decision_latency_seconds", latency)
        return decisions

    async def tick(self) -> list[Decision]:
        """Turn reverses whose stabilisation window has passed into actions."""
        def due(now: float, new_id: policy.IdFactory) -> list[Decision]:
            return policy.due_reverses(self.config, self.state, now, new_id)

        if not due(self.clock(), _no_id):
            return []
        return await self._decide(due, None)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            try:
                await self.tick()
            except Exception:
                logger.exception("scaler tick failed")

    async def _decide(self, make: Callable[[float, policy.IdFactory], list[Decision]],
                      received: float | None) -> list[Decision]:
        """Observe, then decide in this webhook's turn for its targets, then wait until it is durable.

        ``make`` is the policy's evaluation (of the alerts, or of the due reverses): it is run once
        at arrival to find the targets, and again in the turn, on the state as it is then.
        """
        first = make(self.clock(), _no_id)
        wanted = policy.targets_to_observe(first, self.config)
        turn = self.turns.enter({d.target for d in first if d.target in self.config.targets} | wanted)
        try:
            observed = await self._observe(wanted)  # outside anyone's turn: slow reads delay only their own
            await turn.wait()
            for attempt in range(2):  # a second pass only if the state changed what must be observed
                now = self.clock()
                decisions = make(now, self.new_id)
                missing = policy.targets_to_observe(decisions, self.config) - observed.keys()
                if not missing or attempt:
                    break
                observed.update(await self._observe(missing))
            # From here to the commit nothing awaits: no other webhook can change the state meanwhile.
            policy.plan(decisions, self.config, self.state, observed, now)
            changed = policy.commit(decisions, self.config, self.state, now)
            for d in decisions:
                d.received_at, d.decided_at = (received if received is not None else now), self.clock()
                if d.outcome == "act":
                    d.result = "dry_run" if self.config.dry_run else "pending"
            generation = self.saves.changed() if changed else self.saves.generation if decisions else 0
        finally:
            turn.leave()
        # Durable before it is acknowledged or acted on: also a decision that changed nothing waits
        # for the changes it rests on (an earlier decision's cooldown, say).
        await self.saves.wait(generation)
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
        return decisions

    async def _observe(self, names: set[str]) -> dict[str, Observation | None]:
        """The current state of each target, read once for every decision that needs it meanwhile.

        A read in flight is shared, and its result serves the decisions about that target for
        OBSERVATION_TTL_SECONDS, until an action on the target starts or ends (``_acted_on``): a
        burst of webhooks about one agent server then costs it one status read, not one per
        webhook (fifty at once queued behind each other in the server and in the event loop).
        """
        out: dict[str, Observation | None] = {}
        waits: dict[str, asyncio.Future[Observation | None]] = {}
        now = time.monotonic()
        for name in sorted(names):
            epoch = self._epochs.get(name, 0)
            kept = self._observed.get(name)
            if kept is not None and kept[1] == epoch and now - kept[0] < OBSERVATION_TTL_SECONDS:
                out[name] = kept[2]  # no await at all: under a burst, every turn of the loop is long
                continue
            key = (name, epoch)
            reading = self._reading.get(key)
            if reading is None:
                reading = self._reading[key] = asyncio.ensure_future(self._observe_one(name))
                reading.add_done_callback(functools.partial(self._read, key, now))
            waits[name] = reading
        if waits:
            done = await asyncio.gather(*(asyncio.shield(r) for r in waits.values()))
            out.update(zip(waits, done, strict=True))
        return out

    def _read(self, key: tuple[str, int], started: float, done: asyncio.Future[Observation | None]) -> None:
        """A read ended: keep a good observation (unless an action touched the target since)."""
        if self._reading.get(key) is done:
            del self._reading[key]
        name, epoch = key
        if done.cancelled() or done.exception() is not None:
            return
        observation = done.result()
        if observation is not None and self._epochs.get(name, 0) == epoch:
            self._observed[name] = (started, epoch, observation)

    def _acted_on(self, target: str) -> None:
        """An action on ``target`` starts or ends: what was read before no longer holds."""
        self._epochs[target] = self._epochs.get(target, 0) + 1
        self._observed.pop(target, None)

    async def _observe_one(self, name: str) -> Observation | None:
        target = self.config.targets[name]
        try:
            obs = await asyncio.wait_for(self.backends[target.kind].observe(name, target),
                                         timeout=self.config.retry.timeout_seconds)
        except (ActionError, TimeoutError) as exc:
            self._observe_log.problem(name, "cannot observe %s: %s", name, redact(str(exc) or "timed out"))
            return None
        except Exception as exc:  # a backend bug must not stop deciding
            self._observe_log.problem(name, "cannot observe %s: %s: %s", name, type(exc).__name__,
                                      redact(str(exc)))
            return None
        self._observe_log.cleared(name, "%s can be observed again", name)
        return obs

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
        if not self._audit_batch:
            asyncio.get_running_loop().call_later(AUDIT_BATCH_SECONDS, self._flush_audit)
        self._audit_batch.append({"ts": round(self.clock(), 3), **record})

    def _flush_audit(self) -> None:
        """Hand the batch to the audit thread."""
        batch, self._audit_batch = self._audit_batch, []
        if not batch:
            return
        future = asyncio.get_running_loop().run_in_executor(self._audit_io, self.audit.append_many, batch)
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    # acting ----------------------------------------------------------------------------------
    def _launch(self, d: Decision) -> None:
        self._acted_on(d.target)
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
        self._acted_on(d.target)
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

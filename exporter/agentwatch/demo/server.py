"""The demo agent server: real child-process agents behind the API shapes agentwatch probes.

Each agent is a child process (``agent_worker.py``) holding a model-sized amount of memory for a
given time. The server enforces ``maxConcurrency``: at capacity an agent waits in a bounded queue
(``max_queue``, 0 by default) and beyond it gets 503 with ``Retry-After``, never an unbounded queue.
It drains on request (and stops draining), keeps an MCP-style client pool, and exports its own
metrics, queue depth and request latency included, through ``agentwatch.instrument``.
``forget_crashed`` reproduces the bug agentwatch exists for: an agent whose process was killed (an
OOM kill) stays listed as running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import re
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from agentwatch.demo.pool import Client, ClientPool, PoolTimeout
from agentwatch.instrument import AgentMetrics, LoopLagMonitor

log = logging.getLogger("agentwatch.demo")

WORKER = Path(__file__).with_name("agent_worker.py")
#: Memory each model's agent holds, in MiB, before ``memory_scale``.
MODEL_MB = {"haiku": 200, "sonnet": 500, "opus": 600}
DEFAULT_MB = 300
#: Paths answered without an API key.
OPEN_PATHS = frozenset({"/live", "/metrics"})
_MODEL_RE = re.compile(r"^[\w.:-]{1,64}$")
_RECENT = 50


@dataclass
class DemoOptions:
    api_key: str | None
    server_name: str = "demo"
    max_concurrency: int = 4
    #: Agents that may wait for a free slot at capacity (beyond: 503); 0 rejects at once.
    max_queue: int = 0
    memory_scale: float = 1.0
    pool_size: int = 20
    pool_idle_seconds: float = 60.0
    pool_acquire_timeout: float = 30.0
    lag_threshold: float = 1.0
    #: Agents killed by a signal stay listed as running (the bug behind "stuck running").
    forget_crashed: bool = False
    #: Serve POST /api/test/block-event-loop (never in production).
    test_endpoints: bool = False
    #: Stop the server once a drain has finished.
    exit_after_drain: bool = False
    #: Start agents on their own at this rate (0: only through POST /api/agents).
    load_per_minute: float = 0.0
    load_seconds: tuple[float, float] = (20.0, 120.0)
    #: Where the server runs, reported on agentwatch_app_info and in its health body.
    container: str | None = None
    compose_service: str | None = None


@dataclass(eq=False)
class AgentRecord:
    id: str
    model: str
    mb: int
    seconds: float
    tool: str
    fail: bool
    started_at: float = field(default_factory=time.time)
    status: str = "starting"  # (queued,) starting, running, then success, error, cancelled, lost
    queued_at: float | None = None
    pid: int | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "model": self.model, "status": self.status,
                               "started_at": iso(self.started_at), "pid": self.pid, "memory_mb": self.mb}
        if self.queued_at is not None:
            out["queued_at"] = iso(self.queued_at)
        if self.status == "queued":
            del out["started_at"]
        elif not self.active:
            out.update(finished_at=iso(self.finished_at), outcome=self.status, exit_code=self.exit_code)
            if self.error:
                out["error"] = self.error
        return out


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class DemoServer:
    """State and handlers; ``app()`` builds the aiohttp application."""

    def __init__(self, opts: DemoOptions) -> None:
        self.opts = opts
        self.metrics = AgentMetrics(server=opts.server_name, container=opts.container,
                                    compose_service=opts.compose_service)
        self.pool = ClientPool(self.metrics.pool("mcp", opts.pool_size), opts.pool_size, opts.pool_idle_seconds)
        self.lag = LoopLagMonitor(self.metrics)
        self.max_concurrency = opts.max_concurrency
        self.agents: dict[str, AgentRecord] = {}
        #: Agents waiting for a free slot, oldest first (at most ``opts.max_queue``).
        self.queue: deque[AgentRecord] = deque()
        self.recent: deque[AgentRecord] = deque(maxlen=_RECENT)
        self.draining = False
        self.drain_started_at: float | None = None
        self.drain_running_at_start = 0
        self.drain_finished_at: float | None = None
        self.last_spawn_error: tuple[float, str] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_deploy_metrics()

    # -- state ----------------------------------------------------------------------------------

    @property
    def active(self) -> list[AgentRecord]:
        return [a for a in self.agents.values() if a.active]

    def _sync_deploy_metrics(self) -> None:
        self.metrics.draining = self.draining
        self.metrics.max_concurrency = self.max_concurrency
        self.metrics.queue_depth = len(self.queue)

    def _retry_after(self) -> int:
        """Seconds until the soonest running agent should finish (at least 1)."""
        now = time.time()
        left = [a.started_at + a.seconds - now for a in self.active]
        return max(1, math.ceil(min(left, default=1.0)))

    def start_agent(self, model: str, seconds: float, mb: int | None = None, tool: str | None = None,
                    fail: bool = False) -> AgentRecord | None:
        """Launch the agent in the background, or queue it at capacity (status ``queued``); None when
        draining or when the queue is full too."""
        if self.draining:
            return None
        full = bool(self.queue) or len(self.active) >= self.max_concurrency
        if full and len(self.queue) >= self.opts.max_queue:
            return None
        if mb is None:
            mb = max(1, round(MODEL_MB.get(model, DEFAULT_MB) * self.opts.memory_scale))
        agent = AgentRecord(uuid.uuid4().hex[:12], model, mb, seconds, tool or f"mcp-{model}", fail)
        if full:
            agent.status, agent.queued_at = "queued", time.time()
            self.queue.append(agent)
            self._sync_deploy_metrics()
        else:
            self._launch(agent)
        return agent

    def _launch(self, agent: AgentRecord) -> None:
        agent.status, agent.started_at = "starting", time.time()
        self.agents[agent.id] = agent
        agent.task = self._spawn(self._run_agent(agent), f"agent-{agent.id}")

    def _admit(self) -> None:
        """Start queued agents, oldest first, while slots are free."""
        while self.queue and not self.draining and len(self.active) < self.max_concurrency:
            self._launch(self.queue.popleft())
        self._sync_deploy_metrics()

    def _drop_queue(self, why: str) -> None:
        """Cancel every queued agent (they never ran): a drain or a shutdown."""
        now = time.time()
        while self.queue:
            agent = self.queue.popleft()
            agent.status, agent.error, agent.finished_at = "cancelled", why, now
            self.recent.appendleft(agent)
        self._sync_deploy_metrics()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run_agent(self, agent: AgentRecord) -> None:
        client: Client | None = None
        run = self.metrics.agent_run(agent.model)
        run.__enter__()
        try:
            client = await self.pool.acquire(agent.tool, timeout=self.opts.pool_acquire_timeout)
            if agent.cancel_requested:
                raise asyncio.CancelledError
            agent.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), "--model", agent.model, "--mb", str(agent.mb),
                "--seconds", f"{agent.seconds:g}", "--parent-pid", str(os.getpid()),
                *(["--fail"] if agent.fail else []),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            agent.pid = agent.proc.pid
            agent.status = "running"
            code = await agent.proc.wait()
            agent.exit_code = code
            if agent.cancel_requested:
                agent.status = "cancelled"
            elif code == 0:
                agent.status = "success"
            elif code < 0 and self.opts.forget_crashed:
                # the bug: the kill goes unnoticed and the agent stays "running" until deleted
                log.info("agent %s killed by signal %d; forgetting it (forget_crashed)", agent.id, -code)
                run.outcome = "error"
                return
            else:
                agent.status = "error"
                agent.error = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        except PoolTimeout as exc:
            agent.status, agent.error = "error", str(exc)
        except asyncio.CancelledError:
            agent.status = "cancelled"
            await self._terminate(agent)
        except OSError as exc:
            agent.status, agent.error = "error", f"cannot start worker: {exc}"
            self.last_spawn_error = (time.time(), agent.error)
        finally:
            if client is not None:
                await self.pool.release(client)
            if not agent.active or agent.status == "starting":
                self._finish(agent, run)

    def _finish(self, agent: AgentRecord, run: Any) -> None:
        if agent.status == "starting":
            agent.status = "error"
        agent.finished_at = agent.finished_at or time.time()
        run.outcome = {"success": "success", "cancelled": "cancelled"}.get(agent.status, "error")
        run.__exit__(None, None, None)
        self.agents.pop(agent.id, None)
        self.recent.appendleft(agent)
        self._check_drained()
        self._admit()

    async def _terminate(self, agent: AgentRecord, grace: float = 5.0) -> None:
        proc = agent.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        agent.exit_code = proc.returncode

    def _check_drained(self) -> None:
        if self.draining and self.drain_finished_at is None and not self.active:
            self.drain_finished_at = time.time()
            log.info("drain finished: no agents running")
            if self.opts.exit_after_drain:
                signal.raise_signal(signal.SIGTERM)  # web.run_app turns this into a clean shutdown

    def deploy_status(self) -> dict[str, Any]:
        active = self.active
        drain: dict[str, Any] | None = None
        if self.draining:
            start = self.drain_running_at_start
            remaining = len(active)
            drain = {"started_at": iso(self.drain_started_at), "running_at_start": start, "remaining": remaining,
                     "finished": remaining == 0, "finished_at": iso(self.drain_finished_at),
                     "progress": 1.0 if start == 0 else round(max(0, start - remaining) / start, 3)}
        room = len(active) < self.max_concurrency or len(self.queue) < self.opts.max_queue
        return {"draining": self.draining, "accepting": not self.draining and room,
                "maxConcurrency": self.max_concurrency, "running": len(active),
                "available": max(0, self.max_concurrency - len(active)), "queued": len(self.queue),
                "maxQueue": self.opts.max_queue, "drain": drain}

    # -- handlers -------------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ready"})

    async def running(self, request: web.Request) -> web.Response:
        return web.json_response({"agents": [a.view() for a in self.agents.values()],
                                  "queued": [a.view() for a in self.queue],
                                  "recent": [a.view() for a in self.recent]})

    async def create_agent(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "body must be a JSON object")
        if not isinstance(body, dict):
            return _json_error(400, "body must be a JSON object")
        model = body.get("model", "sonnet")
        seconds = body.get("seconds", 30)
        mb = body.get("mb")
        tool = body.get("tool")
        if not isinstance(model, str) or not _MODEL_RE.match(model):
            return _json_error(400, "model: expected a name of up to 64 letters, digits, _ . : -")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 86400:
            return _json_error(400, "seconds: expected a number from 0 to 86400")
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, int) or not 0 <= mb <= 16384):
            return _json_error(400, "mb: expected an integer from 0 to 16384")
        if tool is not None and (not isinstance(tool, str) or not _MODEL_RE.match(tool)):
            return _json_error(400, "tool: expected a name of up to 64 letters, digits, _ . : -")
        if self.draining:
            return _json_error(503, "draining: not accepting new agents")
        agent = self.start_agent(model, float(seconds), mb, tool, bool(body.get("fail", False)))
        if agent is None:
            queued = f", {len(self.queue)} queued" if self.opts.max_queue else ""
            return _json_error(503, f"at capacity ({self.max_concurrency} agents running{queued})",
                               {"Retry-After": str(self._retry_after())})
        return web.json_response(agent.view(), status=202)

    async def delete_agent(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["id"]
        waiting = next((a for a in self.queue if a.id == agent_id), None)
        if waiting is not None:  # never started: just leaves the queue
            self.queue.remove(waiting)
            waiting.status, waiting.error, waiting.finished_at = "cancelled", "removed from the queue", time.time()
            self.recent.appendleft(waiting)
            self._sync_deploy_metrics()
            return web.json_response(waiting.view())
        agent = self.agents.get(agent_id)
        if agent is None:
            return _json_error(404, "no such agent")
        if agent.task is not None and agent.task.done():  # a forgotten (stuck) agent: clean it up
            agent.status, agent.error = "lost", "process gone; removed on request"
            agent.finished_at = time.time()
            self.agents.pop(agent.id, None)
            self.recent.appendleft(agent)
            self._check_drained()
            self._admit()
            return web.json_response(agent.view())
        agent.cancel_requested = True
        if agent.proc is not None:
            await self._terminate(agent)
        elif agent.task is not None:
            agent.task.cancel()
        return web.json_response({"id": agent.id, "status": "cancelling"}, status=202)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.deploy_status())

    async def set_concurrency(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "body must be a JSON object")
        value = body.get("maxConcurrency", body.get("max_concurrency")) if isinstance(body, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10000:
            return _json_error(400, "maxConcurrency: expected an integer from 0 to 10000")
        previous, self.max_concurrency = self.max_concurrency, value
        self._admit()
        log.info("maxConcurrency %d -> %d", previous, value)
        return web.json_response({"maxConcurrency": value, "previous": previous})

    async def drain(self, request: web.Request) -> web.Response:
        if not self.draining:
            self.draining = True
            self.drain_started_at = time.time()
            self.drain_running_at_start = len(self.active)
            self.drain_finished_at = None
            self._drop_queue("cancelled by a drain before it started")
            log.info("draining: %d agents running", self.drain_running_at_start)
            self._check_drained()
        return web.json_response(self.deploy_status(), status=202)

    async def undrain(self, request: web.Request) -> web.Response:
        """Stop draining: new agents are accepted again (what the scaler does when a drain's alert resolves)."""
        if self.draining:
            log.info("draining stopped: accepting agents again")
        self.draining = False
        self.drain_started_at = self.drain_finished_at = None
        self._admit()
        return web.json_response(self.deploy_status())

    async def pools(self, request: web.Request) -> web.Response:
        return web.json_response({"pools": {"mcp": self.pool.stats()}})

    async def block_event_loop(self, request: web.Request) -> web.Response:
        """TEST ONLY: block the event loop (time.sleep on the loop thread) right after answering."""
        try:
            body = await request.json()
            seconds = float(body["seconds"])
        except (ValueError, KeyError, TypeError):
            return _json_error(400, 'expected {"seconds": N}')
        seconds = min(max(0.0, seconds), 60.0)
        asyncio.get_running_loop().call_later(0.05, time.sleep, seconds)
        return web.json_response({"blocking_seconds": seconds}, status=202)

    # -- health checks --------------------------------------------------------------------------

    async def _check_memory(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        ratio = vm.available / vm.total if vm.total else 0.0
        status = "unhealthy" if ratio < 0.05 else "degraded" if ratio < 0.10 else "healthy"
        return {"status": status, "available_bytes": vm.available, "available_ratio": round(ratio, 4)}

    async def _check_pool(self) -> dict[str, Any]:
        stats = self.pool.stats()
        return {"status": "degraded" if stats["waiting"] else "healthy", **stats}

    async def _check_workers(self) -> dict[str, Any]:
        recent_error = self.last_spawn_error and time.time() - self.last_spawn_error[0] < 60
        return {"status": "unhealthy" if recent_error else "healthy", "running": len(self.active),
                "queued": len(self.queue),
                **({"error": self.last_spawn_error[1]} if recent_error and self.last_spawn_error else {})}

    # -- app ------------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.path in OPEN_PATHS or self.opts.api_key is None:
            return await handler(request)
        given = request.headers.get("X-API-Key", "")
        if not hmac.compare_digest(given.encode(), self.opts.api_key.encode()):
            return _json_error(401, "missing or wrong X-API-Key")
        return await handler(request)

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self.pool.start()
        self.lag.start()
        if self.opts.load_per_minute > 0:
            self._spawn(self._load(), "demo-load")
        yield
        await self.shutdown()

    async def _load(self) -> None:
        import random

        models = list(MODEL_MB)
        while True:
            await asyncio.sleep(random.expovariate(self.opts.load_per_minute / 60.0))
            low, high = self.opts.load_seconds
            if self.start_agent(random.choice(models), random.uniform(low, high)) is None:
                log.info("load: at capacity or draining, agent not started")

    async def shutdown(self) -> None:
        """Stop everything and reap every child (SIGTERM, then SIGKILL after a grace period)."""
        self._drop_queue("the server stopped")
        for agent in list(self.agents.values()):
            agent.cancel_requested = True
        await asyncio.gather(*(self._terminate(a) for a in list(self.agents.values())), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.stop()
        await self.lag.stop()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.metrics.aiohttp_middleware, self._auth], client_max_size=64 * 1024)
        app.cleanup_ctx.append(self._lifecycle)
        health = self.metrics.health_handler(
            {"memory": self._check_memory, "mcp_pool": self._check_pool, "workers": self._check_workers},
            lag_threshold=self.opts.lag_threshold)
        r = app.router
        r.add_get("/live", self.live)
        r.add_get("/ready", self.ready)
        r.add_get("/api/health", health)
        r.add_get("/api/agents/running", self.running)
        r.add_post("/api/agents", self.create_agent)
        r.add_delete("/api/agents/{id}", self.delete_agent)
        r.add_get("/api/deploy/status", self.status)
        r.add_put("/api/deploy/concurrency", self.set_concurrency)
        r.add_post("/api/deploy/concurrency", self.set_concurrency)
        r.add_post("/api/deploy/drain", self.drain)
        r.add_delete("/api/deploy/drain", self.undrain)
        r.add_get("/api/pools", self.pools)
        r.add_get("/metrics", self.metrics.metrics_handler)
        if self.opts.test_endpoints:
            r.add_post("/api/test/block-event-loop", self.block_event_loop)
        return app

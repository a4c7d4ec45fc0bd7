"""Container ``die`` and ``oom`` events from the engine's event stream, counted as they happen.

A container that is OOM-killed and restarted between two collections looks healthy to a poller;
the event stream sees every death. The stream's reads block, so it is followed in a
dedicated daemon thread (not the collector pool); ``collect()`` only turns the in-memory counters
into families. When the stream drops or the engine is down the thread reconnects with exponential
backoff (0.5 s doubling to 30 s) and resumes with ``since=`` the last event's time, so the engine
replays what happened meanwhile; events already counted are recognised and skipped. The engine
keeps only its last 256 events, so an outage longer than that many events loses the oldest.
The engine may send two ``oom`` events for one kill; they are counted once (see ``_SAME_KILL_NANOS``).
Counters are kept for at most ``max_containers`` containers (the least recently updated go first).

A hung daemon (stopped, deadlocked) keeps the stream's connection open and simply sends nothing,
which looks just like a quiet engine. So ``agentwatch_docker_events_up`` is 1 only while the stream
is connected and either delivered something since the last collection or the engine answers a
``/_ping`` within ``answer_budget`` of the collector's timeout (one ping per quiet cycle, never two
at once); the stream itself carries on when the daemon does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric

from agentwatch import catalog
from agentwatch.collectors.base import Collector
from agentwatch.config import DockerConfig
from agentwatch.engine import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    answer_budget,
    call_timeout,
    engine_host,
    is_unreachable,
    read_client,
)
from agentwatch.engine_api import EngineClient
from agentwatch.engine_changes import ChangeFeed
from agentwatch.log import OnceLogger
from agentwatch.readings import EngineEvent, Readings

log = logging.getLogger("agentwatch.docker_events")

#: Event keys remembered to skip what a ``since=`` replay sends again.
_DEDUPE = 1024
#: A stream that stayed up this long (or delivered an event) resets the backoff.
_STABLE_SECONDS = 10.0
#: The engine can send two ``oom`` events for one kill (a few ms apart, measured): an oom this close
#: to the last one counted, with no ``start`` between them, is the same kill.
_SAME_KILL_NANOS = 1_000_000_000


@dataclass(slots=True)
class _Counts:
    dies: dict[str, int] = field(default_factory=dict)
    ooms: int = 0
    #: Engine time of the last oom counted in the current run (0 after a start).
    last_oom_nanos: int = 0


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def since_param(nanos: int) -> str:
    """The engine's ``seconds.nanoseconds`` timestamp format (inclusive)."""
    return f"{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


class DockerEventsCollector(Collector):
    """Counts die/oom events per container from a background event-stream thread."""

    name = "docker_events"
    backoff_initial = 0.5
    backoff_max = 30.0

    def __init__(self, config: DockerConfig, readings: Readings | None = None,
                 changes: ChangeFeed | None = None) -> None:
        super().__init__(timeout=config.timeout_seconds, max_workers=1)
        self.config = config
        self.changes = changes  # every container event, for the containers collector's inspect cache
        self.readings = readings  # die/oom events go to the insights collector too
        if readings is not None:
            readings.events_attached = True
        self.host = engine_host(config.host)
        self._lock = threading.Lock()
        self._counts: OrderedDict[tuple[str, str], _Counts] = OrderedDict()
        self._seen: set[tuple[str, str, int]] = set()
        self._seen_order: deque[tuple[str, str, int]] = deque()
        self._last_nanos = 0
        self._up = False
        self._reconnects = 0
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._once = OnceLogger(log)
        self._down_logged = False
        self._name_re = re.compile(config.name_filter) if config.name_filter else None
        #: Events the stream delivered (written by the stream thread only), and the count at the last collect.
        self._delivered = 0
        self._delivered_seen = 0
        #: The ping client and the last ping (both used from the collector's one pool thread only).
        self._ping_client: EngineClient | None = None
        self._ping: concurrent.futures.Future[bool] | None = None
        self._silent_logged = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        if not self._last_nanos:  # replay anything that happens between now and the first connect
            self._last_nanos = time.time_ns()
        self._thread = threading.Thread(target=self._run, name="aw-docker-events", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._close_stream)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 10.0)
            if thread.is_alive():
                log.warning("docker event thread did not stop within 10s; leaving it (daemon thread)")
        client, self._ping_client = self._ping_client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.close)
        await super().stop()

    def _close_stream(self) -> None:
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # already closed by the peer
                pass

    # --- the stream thread -----------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_initial
        ever_connected = False
        while not self._stop.is_set():
            client = None
            connected_at = None
            got_event = False
            try:
                client = read_client(self.config.host, call_timeout(self.config.timeout_seconds), pool_size=1)
                stream = client.events({"type": ["container"]}, since=since_param(self._last_nanos))
                with self._lock:
                    self._stream = stream
                    self._up = True
                    if ever_connected:
                        self._reconnects += 1
                if self.changes is not None:
                    self.changes.connected()
                if self._stop.is_set():
                    break
                ever_connected, connected_at = True, time.monotonic()
                self._down_logged = False
                self._once.cleared("stream", "docker event stream connected")
                for event in stream:
                    got_event = True
                    self._delivered += 1
                    self._handle(event)
                if not self._stop.is_set():
                    self._once.problem("stream", "docker event stream closed by the other end; reconnecting "
                                       "with backoff")
            except Exception as exc:
                if self._stop.is_set():
                    break
                if is_unreachable(exc):  # the container collector already warns about this
                    if not self._down_logged:
                        self._down_logged = True
                        log.info("docker event stream not connected (%s); retrying with backoff", exc)
                else:
                    self._once.problem("stream", "docker event stream failed: %s: %s; reconnecting with backoff",
                                       type(exc).__name__, exc)
            finally:
                with self._lock:
                    self._up = False
                    self._stream = None
                if self.changes is not None:
                    self.changes.disconnected()
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
            if got_event or (connected_at is not None and time.monotonic() - connected_at >= _STABLE_SECONDS):
                delay = self.backoff_initial
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff_max)

    def _handle(self, event: Any) -> None:
        """Count one decoded event; anything that is not a container event is ignored."""
        if not isinstance(event, dict):
            return
        action = event.get("Action") or event.get("status")
        nanos = event.get("timeNano")
        if not isinstance(nanos, int):
            seconds = event.get("time")
            nanos = int(seconds * 1_000_000_000) if isinstance(seconds, int | float) else 0
        actor = _mapping(event.get("Actor"))
        attrs = _mapping(actor.get("Attributes"))
        cid = str(actor.get("ID") or event.get("id") or "")
        key = (cid, str(action), nanos)
        if self.changes is not None and cid:
            self.changes.event(cid, str(action))
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self._seen_order.append(key)
            if len(self._seen_order) > _DEDUPE:
                self._seen.discard(self._seen_order.popleft())
            self._last_nanos = max(self._last_nanos, nanos)
        if action not in ("die", "oom", "start"):
            return
        name = str(attrs.get("name") or cid[:12])
        if self._name_re is not None and not self._name_re.search(name):
            return
        series = (name, str(attrs.get(COMPOSE_SERVICE, "")))
        with self._lock:
            counts = self._counts.pop(series, None) or _Counts()
            self._counts[series] = counts  # most recently updated last
            if action == "die":
                code = str(attrs.get("exitCode", ""))
                counts.dies[code] = counts.dies.get(code, 0) + 1
            elif action == "oom":
                if not counts.last_oom_nanos or nanos - counts.last_oom_nanos >= _SAME_KILL_NANOS:
                    counts.ooms += 1
                    counts.last_oom_nanos = nanos
            else:  # start: a new run, so its first oom is a new kill however soon it comes
                counts.last_oom_nanos = 0
            while len(self._counts) > self.config.max_containers:
                self._counts.popitem(last=False)
        if self.readings is not None and action in ("die", "oom"):
            code = str(attrs.get("exitCode", ""))
            self.readings.put_event(EngineEvent(
                "die" if action == "die" else "oom", cid, name, str(attrs.get("image", "")),
                str(attrs.get(COMPOSE_PROJECT, "")), series[1], int(code) if code.isdigit() else None, nanos / 1e9,
                tuple((label, str(attrs.get(label, ""))) for label in self.config.label_allowlist)))

    # --- families ----------------------------------------------------------------------------

    async def collect(self) -> list[Metric]:
        return self._families(await self._stream_up())

    def known(self) -> list[Metric]:
        return self._families(up_now=False)

    async def _stream_up(self) -> bool:
        """Connected, and the engine behind the stream alive: it delivered, or it answers a ping."""
        with self._lock:
            connected = self._up
        delivered = self._delivered
        quiet, self._delivered_seen = delivered == self._delivered_seen, delivered
        if not connected:
            return False
        answered = await self._engine_answers() if quiet else True
        if not answered and not self._silent_logged:
            self._silent_logged = True
            log.info("Docker engine at %s does not answer a ping within %gs although the event stream is "
                     "connected; reporting agentwatch_docker_events_up 0", self.host or "the default socket",
                     answer_budget(self.timeout))
        elif answered and self._silent_logged:
            self._silent_logged = False
            log.info("Docker engine behind the event stream answers again")
        return answered

    async def _engine_answers(self) -> bool:
        if self._ping is not None and not self._ping.done():
            return False  # the previous ping has not been answered yet
        self._ping = ping = self._executor.submit(self._ping_engine)
        await asyncio.wait({asyncio.wrap_future(ping)}, timeout=answer_budget(self.timeout))
        return ping.done() and ping.result()

    def _ping_engine(self) -> bool:
        """One ``/_ping`` bounded by the call timeout (pool thread); False when it gets no answer."""
        try:
            if self._ping_client is None:
                self._ping_client = read_client(self.config.host, call_timeout(self.timeout), pool_size=1)
            return bool(self._ping_client.ping())
        except Exception:  # down, hung or broken: the stream thread and the container collector say which
            client, self._ping_client = self._ping_client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            return False

    def _families(self, up_now: bool) -> list[Metric]:
        dies = catalog.counter("agentwatch_container_dies_total")
        ooms = catalog.counter("agentwatch_container_oom_events_total")
        up = catalog.gauge("agentwatch_docker_events_up")
        reconnects = catalog.counter("agentwatch_docker_events_reconnects_total")
        with self._lock:
            for (name, service), counts in self._counts.items():
                for code, n in counts.dies.items():
                    dies.add_metric([name, service, code], n)
                # present from a container's first start, so the first OOM is an increase
                ooms.add_metric([name, service], counts.ooms)
            up.add_metric([], 1 if up_now and self._up else 0)
            reconnects.add_metric([], self._reconnects)
        return [dies, ooms, up, reconnects]


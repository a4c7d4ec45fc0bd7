"""A fake Docker engine on a unix socket, for faults a real engine will not produce on demand.

It answers the few endpoints the collectors use, with the version-prefixed paths the SDK sends
(``/v1.41/containers/json``), in a thread with its own event loop so that blocking test code
(urllib scrapes, the SDK) can talk to it. ``mode`` switches behaviour while it runs: ``ok``,
``malformed`` (invalid JSON from /containers/json) or ``hang`` (/containers/json never answers
until the mode changes). ``/events`` sends ``events_per_stream`` die events and then closes the
stream, so a client has to reconnect; each stream's ``since`` parameter is recorded
(``events_mode = "broken"`` makes it answer a 500 instead).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

CONTAINER_ID = "f" * 64
API_VERSION = "1.41"


class FakeEngine:
    """Start with ``start()``, stop with ``stop()``; attributes may be changed while it runs."""

    def __init__(self, sock: Path, container_pid: int = 0) -> None:
        self.sock = str(sock)
        self.host = f"unix://{self.sock}"
        self.mode = "ok"
        self.container_pid = container_pid
        #: The fake container's previous run ended then (Docker's zero time: it never did).
        self.finished_at = "0001-01-01T00:00:00Z"
        #: ``broken``: /events answers a 500 (an engine fault), ``ok``: it streams die events.
        self.events_mode = "ok"
        self.events_per_stream = 1
        #: When set, each stream first repeats the previous stream's last event (as ``since`` does).
        self.replay_last = True
        #: When set, a stream stays open after its events (for up to a minute) and sends one more
        #: event each time ``push_event`` is called.
        self.hold_streams = False
        self._pushed = 0
        self.event_streams = 0
        self.since_seen: list[str | None] = []
        self.requests: list[str] = []
        self._next_event = 0
        self._last_event: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # --- payloads ---------------------------------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        return [{"Id": CONTAINER_ID, "Names": ["/fake-agent"], "Image": "agent:fake", "State": "running",
                 "Labels": {"com.docker.compose.project": "fleet", "com.docker.compose.service": "agent"}}]

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": CONTAINER_ID, "Name": "/fake-agent", "RestartCount": 2,
            "State": {"Status": "running", "Running": True, "OOMKilled": False, "Pid": self.container_pid,
                      "ExitCode": 0, "StartedAt": "2024-05-01T10:00:00.5Z", "FinishedAt": self.finished_at},
            "HostConfig": {"Memory": 64 << 20, "NanoCpus": 0, "CpuQuota": 50000, "CpuPeriod": 100000,
                           "NetworkMode": "none", "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}},
        }

    @staticmethod
    def stats() -> dict[str, Any]:
        return {
            "memory_stats": {"usage": 10 << 20, "limit": 64 << 20,
                             "stats": {"total_inactive_file": 2 << 20, "total_rss": 7 << 20, "total_cache": 3 << 20}},
            "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000},
                          "throttling_data": {"periods": 10, "throttled_periods": 2, "throttled_time": 300_000_000}},
            "blkio_stats": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "Read", "value": 4096},
                                                           {"major": 8, "minor": 0, "op": "Write", "value": 8192}]},
            "pids_stats": {"current": 3},
            "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 200, "rx_errors": 1, "tx_errors": 0}},
        }

    def _event(self) -> dict[str, Any]:
        self._next_event += 1
        nanos = time.time_ns()
        return {"Type": "container", "Action": "die", "status": "die", "id": CONTAINER_ID,
                "Actor": {"ID": CONTAINER_ID, "Attributes": {"name": "fake-agent", "exitCode": "137",
                                                             "com.docker.compose.service": "agent"}},
                "time": nanos // 1_000_000_000, "timeNano": nanos}

    # --- handlers ---------------------------------------------------------------------------

    def push_event(self) -> None:
        """One more die event on the held stream (``hold_streams``)."""
        self._pushed += 1

    async def _log(self, request: web.Request) -> None:
        self.requests.append(request.path)

    async def ping(self, request: web.Request) -> web.Response:
        await self._log(request)
        return web.Response(text="OK")

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": API_VERSION, "MinAPIVersion": "1.12", "Version": "20.10.0-fake"})

    async def containers(self, request: web.Request) -> web.Response:
        await self._log(request)
        if self.mode == "malformed":
            return web.Response(text='[{"Id": "abc", "Names": ["/x"]', content_type="application/json")
        if self.mode == "hang":
            deadline = time.monotonic() + 60
            while self.mode == "hang" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return web.json_response(self.listing())

    async def inspect_one(self, request: web.Request) -> web.Response:
        await self._log(request)
        if request.match_info["id"] not in (CONTAINER_ID, CONTAINER_ID[:12], "fake-agent"):
            return web.json_response({"message": "No such container"}, status=404)
        return web.json_response(self.inspect())

    async def stats_one(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.event_streams += 1
        self.since_seen.append(request.query.get("since"))
        if self.events_mode == "broken":
            return web.json_response({"message": "events log unavailable"}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if self.replay_last and self._last_event is not None:
            await resp.write(json.dumps(self._last_event).encode() + b"\n")
        for _ in range(self.events_per_stream):
            await asyncio.sleep(0.05)
            self._last_event = self._event()
            await resp.write(json.dumps(self._last_event).encode() + b"\n")
        sent, deadline = self._pushed, time.monotonic() + 60
        while self.hold_streams and time.monotonic() < deadline:
            if self._pushed > sent:
                sent += 1
                self._last_event = self._event()
                await resp.write(json.dumps(self._last_event).encode() + b"\n")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        return resp  # returning ends the chunked body: the stream closes

    # --- lifecycle --------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        for prefix in ("", "/v{ver}"):
            app.router.add_get(f"{prefix}/_ping", self.ping)
            app.router.add_get(f"{prefix}/version", self.version)
            app.router.add_get(f"{prefix}/containers/json", self.containers)
            app.router.add_get(f"{prefix}/containers/{{id}}/json", self.inspect_one)
            app.router.add_get(f"{prefix}/containers/{{id}}/stats", self.stats_one)
            app.router.add_get(f"{prefix}/events", self.events)
        return app

    def start(self) -> FakeEngine:
        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._runner = web.AppRunner(self._app())
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.UnixSite(self._runner, self.sock).start())
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake engine did not start")
        return self

    def stop(self) -> None:
        self.mode = "ok"  # release hung handlers
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def __enter__(self) -> FakeEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

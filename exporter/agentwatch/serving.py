"""Serve an aiohttp app on a socket bound by ``listener.bind``, with connection limits.

aiohttp has no header read timeout in every version and no cap on open connections, so a few
dozen clients that send their headers a byte at a time, or just connect, would hold sockets
forever. ``serve`` runs an app with both: a connection gets ``header_timeout`` seconds (from
connecting, or from its previous response) to deliver complete request headers, and at most
``max_connections`` are open at once (one more is answered 503 and closed). Body timeouts are the
handler's business (only it reads the body); a body nobody reads is drained for at most
``header_timeout`` after the response, then the connection is closed. Requests arrive as sent
(no automatic decompression), and a malformed request or a client that goes away is one info
line, not an ERROR traceback.

A module of its own so that commands which never serve do not import aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

logger = logging.getLogger("agentwatch.serving")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take to send a request's headers, and how many may be connected."""

    header_timeout: float = 10.0
    max_connections: int = 100


class _Guard:
    """Counts open connections for one listening socket; says once when the cap starts refusing."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self.at_cap = False

    def admit(self) -> bool:
        if self.open < self.limits.max_connections:
            if self.at_cap:
                self.at_cap = False
                logger.info("open connections below the cap of %d again", self.limits.max_connections)
            self.open += 1
            return True
        if not self.at_cap:
            self.at_cap = True
            logger.warning("%d connections open (max_connections): new ones get 503 until some close",
                           self.limits.max_connections)
        return False


_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 26\r\n\r\ntoo many open connections\n")


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler with a header deadline and a place under the connection cap."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, guard: _Guard,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._guard = guard
        self._guard_loop = loop
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit():
            # Answer, send FIN, and drop what the client sends meanwhile (this handler is marked
            # closed, so its data is ignored); close once the client does, or after a second.
            # Closing at once, with its request unread, would reset the connection and could
            # destroy the 503 before the client reads it.
            self.force_close()
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_REFUSAL)
                if transport.can_write_eof():
                    transport.write_eof()
            self._guard_loop.call_later(min(1.0, self._guard.limits.header_timeout), transport.close)
            return
        self._admitted = True
        super().connection_made(transport)
        self.start_clock()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._guard.open -= 1
        self.stop_clock()
        super().connection_lost(exc)

    def start_clock(self) -> None:
        """Start the clock: complete headers within ``header_timeout`` or the connection is closed."""
        self.stop_clock()
        self._deadline = self._guard_loop.call_later(self._guard.limits.header_timeout, self._too_slow)

    def stop_clock(self) -> None:
        """A request is being handled (or the connection is gone): no deadline meanwhile."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        logger.debug("closing a connection without a complete request after %gs", self._guard.limits.header_timeout)
        self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A malformed request or a client that went away is the client's doing: one info line."""
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError | ConnectionError):
            text = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
            logger.info("bad request from a client: %s", (str(text).splitlines() or ["?"])[0][:200])
            return
        super().log_exception(*args, **kw)


@web.middleware
async def _track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stop a connection's header clock while its request is handled; restart it for the next one."""
    protocol = request.protocol
    guarded = protocol if isinstance(protocol, GuardedHandler) else None
    if guarded is not None:
        guarded.stop_clock()
    try:
        return await handler(request)
    finally:
        if guarded is not None and guarded.transport is not None:
            guarded.start_clock()


def serve(app: web.Application, sock: socket.socket, limits: ConnectionLimits) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM, then shut down cleanly (like ``web.run_app``)."""
    asyncio.run(_serve(app, sock, limits))


async def _serve(app: web.Application, sock: socket.socket, limits: ConnectionLimits) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app.middlewares.insert(0, _track_requests)  # outermost: the clock stops before anything else runs
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        manager = runner.server
        assert manager is not None, "set up above"
        guard = _Guard(limits)
        options: dict[str, Any] = {"access_log": None, "keepalive_timeout": limits.header_timeout,
                                   "lingering_time": limits.header_timeout, "auto_decompress": False}
        server = await loop.create_server(lambda: GuardedHandler(manager, loop=loop, guard=guard, **options),
                                          sock=sock)
        try:
            await stop.wait()
        finally:
            server.close()
    finally:
        await runner.cleanup()

"""Web framework glue: request counting for aiohttp and ASGI, and the /metrics answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.registry import Collector

from agentwatch import exposition

#: Called once per request with its status and how long it took (seconds).
CountRequest = Callable[[int, float], None]


def aiohttp_middleware(count: CountRequest) -> Callable[..., Awaitable[Any]]:
    """An aiohttp middleware counting and timing requests, and 5xx answers (and unhandled exceptions)."""
    from aiohttp import web

    @web.middleware
    async def agentwatch_requests(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            count(exc.status, time.perf_counter() - start)
            raise
        except asyncio.CancelledError:
            count(499, time.perf_counter() - start)
            raise
        except Exception:
            count(500, time.perf_counter() - start)
            raise
        count(getattr(response, "status", 200), time.perf_counter() - start)
        return response

    return agentwatch_requests


def asgi(app: Callable[..., Awaitable[None]], count: CountRequest) -> Callable[..., Awaitable[None]]:
    """Wrap an ASGI app so its HTTP requests are counted and timed, and its 5xx answers counted."""

    async def wrapped(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except Exception:
            status = 500
            raise
        finally:
            count(status, time.perf_counter() - start)

    return wrapped


def metrics_response(registry: Collector, accept: str) -> Any:
    """An aiohttp response with ``registry`` in the format ``accept`` asks for (see ``agentwatch.exposition``)."""
    from aiohttp import web

    body, content_type = exposition.negotiate(registry, accept)
    return web.Response(body=body, headers={"Content-Type": content_type, "Vary": "Accept"})

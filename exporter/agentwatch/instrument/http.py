"""Web framework glue: request counting for aiohttp and ASGI, and the /metrics answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.registry import Collector

from agentwatch import exposition

CountRequest = Callable[[int], None]


def aiohttp_middleware(count: CountRequest) -> Callable[..., Awaitable[Any]]:
    """An aiohttp middleware counting requests and 5xx answers (and unhandled exceptions)."""
    from aiohttp import web

    @web.middleware
    async def agentwatch_requests(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            count(exc.status)
            raise
        except asyncio.CancelledError:
            count(499)
            raise
        except Exception:
            count(500)
            raise
        count(getattr(response, "status", 200))
        return response

    return agentwatch_requests


def asgi(app: Callable[..., Awaitable[None]], count: CountRequest) -> Callable[..., Awaitable[None]]:
    """Wrap an ASGI app so its HTTP requests and 5xx answers are counted."""

    async def wrapped(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        status = 500

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
            count(status)

    return wrapped


def metrics_response(registry: Collector, accept: str) -> Any:
    """An aiohttp response with ``registry`` in the format ``accept`` asks for (see ``agentwatch.exposition``)."""
    from aiohttp import web

    body, content_type = exposition.negotiate(registry, accept)
    return web.Response(body=body, headers={"Content-Type": content_type, "Vary": "Accept"})

"""One HTTP probe: GET a path under a deadline, read at most ``max_body`` bytes, classify failures.

The deadline covers connecting, the headers and the body, so a server whose event loop is blocked
counts as unresponsive (reason ``timeout``) even if a late answer would have been a 200. The body
is read in chunks and reading stops at the cap, so a huge (or endless) body never sits in memory.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from agentwatch import __version__

_CHUNK = 64 * 1024


@dataclass
class Fetched:
    """What one probe saw: status (None if no answer), body (None if unread), time, failure reason."""

    status: int | None
    body: bytes | None
    duration: float
    failure: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None and self.status is not None and 200 <= self.status < 300


def classify_status(status: int) -> str | None:
    """The failure reason of an HTTP status, None for 2xx."""
    if 200 <= status < 300:
        return None
    if status in (401, 403):
        return "auth"
    return "http_status"


def headers(api_key: str | None) -> dict[str, str]:
    out = {"Accept": "application/json", "User-Agent": f"agentwatch/{__version__}"}
    if api_key:
        out["X-API-Key"] = api_key
    return out


async def fetch(session: aiohttp.ClientSession, url: str, hdrs: dict[str, str], timeout: float,
                max_body: int) -> Fetched:
    """GET ``url``; never raises for network or protocol trouble (only on cancellation)."""
    start = time.perf_counter()
    status: int | None = None
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url, headers=hdrs, allow_redirects=False) as resp:
                status = resp.status
                if resp.content_length is not None and resp.content_length > max_body:
                    return Fetched(status, None, time.perf_counter() - start, "too_large",
                                   f"Content-Length {resp.content_length} > max_body_bytes {max_body}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_body:
                        return Fetched(status, None, time.perf_counter() - start, "too_large",
                                       f"body longer than max_body_bytes {max_body}")
                    chunks.append(chunk)
                body = b"".join(chunks)
    except TimeoutError:
        return Fetched(status, None, timeout, "timeout", f"no complete answer within {timeout:g}s")
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
        return Fetched(status, None, time.perf_counter() - start, "connect", f"{type(exc).__name__}: {exc}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Fetched(status, None, time.perf_counter() - start, "error", f"{type(exc).__name__}: {exc}")
    duration = time.perf_counter() - start
    failure = classify_status(status)
    return Fetched(status, body, duration, failure, f"HTTP {status}" if failure else "")

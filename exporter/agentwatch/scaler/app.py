"""The scaler's HTTP face: POST /webhook, GET /actions, /healthz, /metrics and a small HTML page.

Order of checks on /webhook: an Authorization header that is not UTF-8 (400), the bearer token
(constant time, 401 without detail), Content-Type and Content-Encoding (415: JSON, uncompressed),
the body size (413, enforced while reading) and time (408 after ``http.body_timeout_seconds``),
then the payload (400 naming the bad field). Only then decide. A client that goes away while
sending is one info line.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from agentwatch import exposition
from agentwatch.configfile import ConfigError
from agentwatch.log import register_secret
from agentwatch.scaler import webhook
from agentwatch.scaler.backends import Backend
from agentwatch.scaler.config import ScalerConfig
from agentwatch.scaler.executor import Scaler
from agentwatch.scaler.metrics import ScalerMetrics, registry

logger = logging.getLogger("agentwatch.scaler.app")

SCALER_KEY = web.AppKey("scaler", Scaler)
TOKEN_KEY = web.AppKey("token", bytes)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
WEBHOOKS = "agentwatch_scaler_webhooks_total"


class Refused(Exception):
    """A request answered with an error before anything is decided."""

    def __init__(self, status: int, error: str, outcome: str = "invalid", close: bool = False) -> None:
        super().__init__(error)
        self.status, self.error, self.outcome, self.close = status, error, outcome, close

    def response(self) -> web.Response:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        resp = web.json_response({"error": self.error}, status=self.status, headers=headers)
        if self.close:
            resp.force_close()
        return resp


def _check_token(request: web.Request) -> None:
    """Refused(400) for a header that is not text, Refused(401) for a wrong or missing token."""
    header = request.headers.get("Authorization", "")
    try:
        header.encode("utf-8")  # aiohttp keeps bytes that are not UTF-8 as lone surrogates
    except UnicodeEncodeError:
        raise Refused(400, "Authorization: header is not valid UTF-8", "unauthorized") from None
    scheme, _, given = header.partition(" ")
    ok_scheme = scheme.lower() == "bearer"
    # Always compare, so a wrong scheme costs the same time as a wrong token.
    if not (hmac.compare_digest(given.strip().encode(), request.app[TOKEN_KEY]) and ok_scheme):
        raise Refused(401, "unauthorized", "unauthorized")


def _check_body_headers(request: web.Request) -> None:
    """JSON (or no Content-Type at all), sent uncompressed: Refused(415) naming the header otherwise."""
    content_type = request.headers.get("Content-Type")
    if content_type is not None and not re.fullmatch(r"application/([\w.+-]+\+)?json", request.content_type):
        raise Refused(415, f"Content-Type: expected application/json (got {_printable(request.content_type)})")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Refused(415, f"Content-Encoding: only an uncompressed body is accepted (got {_printable(encoding)})")


def _ascii(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` and safe to log or show: anything not ASCII is escaped."""
    return text[:limit].encode("ascii", "backslashreplace").decode("ascii")


def _printable(text: str) -> str:
    return repr(_ascii(text, 60))


async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The body, enforcing ``limit`` while reading (413) and ``timeout`` for all of it (408)."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"body larger than {limit} bytes", "too_large", close=True)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"body larger than {limit} bytes", "too_large", close=True)
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, f"body not received within {timeout:g}s", close=True) from None
    except web.RequestPayloadError as exc:  # a broken chunked body, a body shorter than its length
        raise Refused(400, f"body: {_first_line(exc)}", close=True) from None
    return b"".join(chunks)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines)[:200] or type(exc).__name__


def _problem_key(error: str) -> str:
    """The kind of problem, for logging each kind once: ``alerts[3].labels.x`` -> ``alerts[].labels``."""
    field = re.sub(r"\[\d+\]", "[]", error.split(":")[0])
    return ".".join(field.split(".")[:2])[:80]


async def handle_webhook(request: web.Request) -> web.Response:
    scaler = request.app[SCALER_KEY]
    received = scaler.clock()
    try:
        _check_token(request)
        _check_body_headers(request)
        body = await _read_body(request, scaler.config.max_body_bytes, scaler.config.http.body_timeout_seconds)
        alerts = webhook.parse(body)
    except Refused as refused:
        scaler.metrics.inc(WEBHOOKS, refused.outcome)
        if refused.outcome == "invalid":
            scaler.invalid_log.problem(_problem_key(refused.error), "rejected webhook (%d): %s", refused.status,
                                       _ascii(refused.error, 300))
        return refused.response()
    except webhook.PayloadError as exc:
        scaler.metrics.inc(WEBHOOKS, "invalid")
        error = str(exc)[:500]
        scaler.invalid_log.problem(_problem_key(error), "rejected webhook: %s", _ascii(error, 300))
        return web.json_response({"error": error}, status=400)
    except ConnectionError:  # the client went away mid-body: nothing to answer, nothing decided
        logger.info("a client disconnected while sending a webhook body")
        return web.json_response({"error": "connection lost"}, status=400)
    scaler.metrics.inc(WEBHOOKS, "accepted")
    started = time.perf_counter()
    decisions = await scaler.handle(alerts, received)
    return web.json_response({
        "decisions": [{k: v for k, v in d.to_json().items()
                       if k in ("id", "rule", "action", "target", "outcome", "reason", "result", "desired")}
                      for d in decisions],
        "decision_latency_seconds": round(time.perf_counter() - started, 6),
    })


async def handle_actions(request: web.Request) -> web.Response:
    scaler = request.app[SCALER_KEY]
    try:
        _check_token(request)
    except Refused as refused:
        return refused.response()
    try:
        limit = max(1, min(int(request.query.get("limit", "200")), scaler.config.recent_decisions))
    except ValueError:
        return web.json_response({"error": "limit: expected an integer"}, status=400)
    return web.json_response({"dry_run": scaler.config.dry_run, "decisions": scaler.recent_json(limit),
                              "cooldowns": [{"target": t, "action": a, "remaining_seconds": s}
                                            for (t, a), s in sorted(scaler.cooldowns().items())]})


async def handle_health(request: web.Request) -> web.Response:
    scaler = request.app[SCALER_KEY]
    return web.json_response({"status": "ok", "dry_run": scaler.config.dry_run})


async def handle_metrics(request: web.Request) -> web.Response:
    body, content_type = exposition.negotiate(request.app[REGISTRY_KEY], request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type, "Vary": "Accept"})


def _row(cells: list[Any]) -> str:
    return "<tr>" + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in cells) + "</tr>"


async def handle_index(request: web.Request) -> web.Response:
    """Recent decisions and current cooldowns; every value is escaped (alert labels are untrusted)."""
    scaler = request.app[SCALER_KEY]
    rows = [_row([time.strftime("%H:%M:%S", time.localtime(d.decided_at)), d.rule, d.action, d.target,
                  d.outcome, d.reason or d.result, d.desired, d.detail or d.error])
            for d in reversed(list(scaler.recent.values()))]
    cooldowns = [_row([t, a, f"{s:.0f}s"]) for (t, a), s in sorted(scaler.cooldowns().items())]
    mode = "dry run (decisions are recorded, nothing is changed)" if scaler.config.dry_run else "live"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>agentwatch scaler</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style></head><body>
<h1>agentwatch scaler</h1><p>Mode: {html.escape(mode)}</p>
<h2>Cooldowns</h2><table><tr><th>target</th><th>action</th><th>remaining</th></tr>{''.join(cooldowns)}</table>
<h2>Recent decisions</h2><table><tr><th>time</th><th>rule</th><th>action</th><th>target</th><th>outcome</th>
<th>reason / result</th><th>new value</th><th>detail</th></tr>{''.join(rows)}</table></body></html>"""
    return web.Response(text=page, content_type="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})


def create_app(config: ScalerConfig, backends: dict[str, Backend] | None = None,
               token: str | None = None) -> web.Application:
    """The scaler service; the token comes from the config's env var or file unless given."""
    token = token if token is not None else config.auth.token()
    if not token:
        raise ConfigError(f"auth: no bearer token: set the environment variable {config.auth.token_env!r}"
                          + (f" or the file {config.auth.token_file!r}" if config.auth.token_file else ""))
    register_secret(token)
    metrics = ScalerMetrics()
    scaler = Scaler(config, backends=backends, metrics=metrics)
    # aiohttp's own cap is a backstop; /webhook enforces max_body_bytes while reading.
    app = web.Application(client_max_size=config.max_body_bytes + 1)
    app[SCALER_KEY] = scaler
    app[TOKEN_KEY] = token.encode()
    app[REGISTRY_KEY] = registry(metrics)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await scaler.start()
        yield
        await scaler.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/webhook", handle_webhook)
    app.router.add_get("/actions", handle_actions)
    app.router.add_get("/healthz", handle_health)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/", handle_index)
    return app

"""The scaler's HTTP face: POST /webhook, GET /actions, /healthz, /metrics and a small HTML page.

Order of checks on /webhook: bearer token (constant time, 401 without detail), then the body size
(413, enforced while reading), then the payload (400 naming the bad field). Only then decide.
"""

from __future__ import annotations

import hmac
import html
import logging
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


def _authorized(request: web.Request) -> bool:
    expected = request.app[TOKEN_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    ok_scheme = scheme.lower() == "bearer"
    # Always compare, so a wrong scheme costs the same time as a wrong token.
    return hmac.compare_digest(given.strip().encode(), expected) and ok_scheme


def _unauthorized() -> web.Response:
    return web.json_response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds ``limit`` (checked while reading, not after)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def handle_webhook(request: web.Request) -> web.Response:
    scaler = request.app[SCALER_KEY]
    received = scaler.clock()
    if not _authorized(request):
        scaler.metrics.inc(WEBHOOKS, "unauthorized")
        return _unauthorized()
    body = await _read_capped(request, scaler.config.max_body_bytes)
    if body is None:
        scaler.metrics.inc(WEBHOOKS, "too_large")
        return web.json_response({"error": f"body larger than {scaler.config.max_body_bytes} bytes"}, status=413,
                                 headers={"Connection": "close"})
    try:
        alerts = webhook.parse(body)
    except webhook.PayloadError as exc:
        scaler.metrics.inc(WEBHOOKS, "invalid")
        scaler.invalid_log.problem(str(exc).split(":")[0], "rejected webhook: %s", str(exc)[:300])
        return web.json_response({"error": str(exc)[:500]}, status=400)
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
    if not _authorized(request):
        return _unauthorized()
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

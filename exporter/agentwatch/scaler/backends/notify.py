"""Slack and Discord incoming webhooks. The URL is a secret: read at send time, never logged."""

from __future__ import annotations

from typing import Any

import aiohttp

from agentwatch.log import redact, register_secret
from agentwatch.scaler.backends import ActionError
from agentwatch.scaler.config import NotifyTarget
from agentwatch.scaler.model import Decision, Observation


def slack_escape(text: str) -> str:
    """Alert labels are untrusted: no <!channel> mentions or links smuggled into the message."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(flavor: str, text: str) -> dict[str, Any]:
    if flavor == "discord":
        return {"content": text[:2000], "allowed_mentions": {"parse": []}}
    return {"text": slack_escape(text)}


class NotifyBackend:
    """notify targets."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def observe(self, name: str, target: NotifyTarget) -> Observation:
        return Observation()

    async def execute(self, decision: Decision, target: NotifyTarget) -> str:
        url = target.url()
        if not url:
            raise ActionError("the notify webhook URL is not set (url_env / url_file)")
        register_secret(url)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        text = decision.message or f"[agentwatch] {decision.alertname}"
        try:
            async with self._session.post(url, json=payload(target.flavor, text), allow_redirects=False,
                                          timeout=aiohttp.ClientTimeout(total=target.timeout_seconds)) as resp:
                await resp.content.read(65536)
                if resp.status >= 300:
                    raise ActionError(f"{target.flavor} webhook answered HTTP {resp.status}")
        except TimeoutError:
            raise ActionError(f"{target.flavor} webhook timed out") from None
        except aiohttp.ClientError as exc:
            # aiohttp puts the URL in its messages; the URL is the secret.
            raise ActionError(redact(f"{target.flavor} webhook: {type(exc).__name__}: {exc}")) from None
        return f"posted to {target.flavor}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

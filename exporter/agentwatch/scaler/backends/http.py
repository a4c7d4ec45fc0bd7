"""Agent servers: maxConcurrency and drain through their authenticated deploy API (X-API-Key).

A drain is started with ``POST`` on the drain path and, when its alert resolves (the rule's
``on_resolved: reverse``), stopped with ``DELETE`` on the same path.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agentwatch.log import register_secret
from agentwatch.scaler.backends import ActionError, desired
from agentwatch.scaler.config import AgentServerTarget
from agentwatch.scaler.model import Decision, Observation

MAX_RESPONSE_BYTES = 1_048_576


class HttpBackend:
    """agent_server targets; one client session for all of them."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
        return self._session

    @staticmethod
    def _headers(target: AgentServerTarget) -> dict[str, str]:
        key = target.api_key()
        if key is None and (target.api_key_env or target.api_key_file):
            raise ActionError("the agent server's API key is not set (api_key_env / api_key_file)")
        register_secret(key)
        return {"X-API-Key": key} if key else {}

    async def _call(self, target: AgentServerTarget, method: str, path: str, body: Any = None) -> Any:
        url = target.url.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
        try:
            async with self.session().request(method, url, json=body, headers=self._headers(target),
                                              timeout=timeout, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                if resp.status in (401, 403):
                    raise ActionError(f"{method} {path}: HTTP {resp.status} (check the API key)")
                if resp.status >= 300:
                    raise ActionError(f"{method} {path}: HTTP {resp.status}")
        except TimeoutError:
            raise ActionError(f"{method} {path}: timed out after {target.timeout_seconds:g}s") from None
        except aiohttp.ClientError as exc:
            raise ActionError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ActionError(f"{method} {path}: response larger than {MAX_RESPONSE_BYTES} bytes")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ActionError(f"{method} {path}: response is not JSON") from None

    async def observe(self, name: str, target: AgentServerTarget) -> Observation:
        data = await self._call(target, "GET", target.endpoints.status)
        if not isinstance(data, dict):
            raise ActionError("status: expected a JSON object")
        conc, draining = data.get("maxConcurrency"), data.get("draining", False)
        if not isinstance(conc, int) or isinstance(conc, bool) or conc < 0:
            raise ActionError(f"status.maxConcurrency: expected a non-negative integer (got {conc!r})")
        if not isinstance(draining, bool):
            raise ActionError(f"status.draining: expected a boolean (got {draining!r})")
        return Observation(concurrency=conc, draining=draining)

    async def execute(self, decision: Decision, target: AgentServerTarget) -> str:
        if decision.action == "set_concurrency":
            limit = desired(decision)
            await self._call(target, "POST", target.endpoints.concurrency, {"maxConcurrency": limit})
            return f"maxConcurrency {limit}"
        if decision.action == "drain":
            await self._call(target, "POST", target.endpoints.drain, {})
            return "draining"
        if decision.action == "undrain":
            await self._call(target, "DELETE", target.endpoints.drain)
            return "draining stopped"
        raise ActionError(f"the http backend cannot {decision.action}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

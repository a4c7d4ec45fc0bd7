"""Backends: the only code that touches the outside (engine, agent servers, chat webhooks).

Each backend reads a target's current values (``observe``) and carries out one decided action
(``execute``), raising ``ActionError`` with a reason the audit log can show.
"""

from __future__ import annotations

from typing import Any, Protocol

from agentwatch.scaler.model import Decision, Observation


class ActionError(Exception):
    """An action or observation failed; the message is the reason (no secrets in it)."""


class Backend(Protocol):
    async def observe(self, name: str, target: Any) -> Observation: ...

    async def execute(self, decision: Decision, target: Any) -> str: ...

    async def close(self) -> None: ...


def desired(decision: Decision) -> int:
    """The planned new value; ``plan`` sets one on every act decision that moves a quantity."""
    if decision.desired is None:
        raise ActionError(f"{decision.action}: no planned value")
    return int(decision.desired)

"""A container's last exit code, which the engine forgets when it starts the container again.

``State.ExitCode`` is 0 again as soon as a restart policy (or ``docker start``) runs the container,
so the code of the run that ended is read while the container is seen stopped, or else from the
engine's own ``die`` event for that run (see ``ContainerCollector._learn_exit_codes``).
"""

from __future__ import annotations

from typing import Any

from agentwatch.engine_api import EngineClient

#: Lines read from one die-event lookup (a window between two runs of one container holds one).
MAX_EVENT_LINES = 100


def is_running(state: dict[str, Any]) -> bool:
    """Running in the engine's sense (paused included); a container waiting to restart is not."""
    return bool(state.get("Running")) and not state.get("Restarting")


def exit_code_of(state: dict[str, Any]) -> int:
    code = state.get("ExitCode")
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def die_exit_code(client: EngineClient, container_id: str, since: float, until: float,
                  timeout: float) -> int | None:
    """The exit code on the container's first ``die`` event in [since, until] (engine time), or None.

    Asked with a timeout and with an ``until`` already past, so the engine sends what it kept and
    closes the response.
    """
    filters = {"type": ["container"], "container": [container_id], "event": ["die"]}
    stream = client.events(filters, since=f"{since:.9f}", until=f"{until:.9f}", timeout=timeout)
    try:
        for n, event in enumerate(stream):
            if n >= MAX_EVENT_LINES:
                break
            actor = event.get("Actor") if isinstance(event, dict) else None
            attrs = actor.get("Attributes") if isinstance(actor, dict) else None
            code = attrs.get("exitCode") if isinstance(attrs, dict) else None
            if isinstance(code, str) and code.isdigit():
                return int(code)
    finally:
        stream.close()
    return None

"""A container's last exit code, which the engine forgets when it starts the container again.

``State.ExitCode`` is 0 again as soon as a restart policy (or ``docker start``) runs the container,
so the code of the run that ended is read while the container is seen stopped, or else from the
engine's own ``die`` event for that run (see ``ContainerCollector._learn_exit_codes``).
"""

from __future__ import annotations

import json
from typing import Any

#: Lines read from one die-event lookup (a window between two runs of one container holds one).
MAX_EVENT_LINES = 100


def is_running(state: dict[str, Any]) -> bool:
    """Running in the engine's sense (paused included); a container waiting to restart is not."""
    return bool(state.get("Running")) and not state.get("Restarting")


def exit_code_of(state: dict[str, Any]) -> int:
    code = state.get("ExitCode")
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def die_exit_code(api: Any, container_id: str, since: float, until: float, timeout: float) -> int | None:
    """The exit code on the container's first ``die`` event in [since, until] (engine time), or None.

    The SDK's ``events()`` reads without a timeout; this asks ``/events`` with one, and with an
    ``until`` already past, so the engine sends what it kept and closes the response.
    """
    filters = {"type": ["container"], "container": [container_id], "event": ["die"]}
    response = api.get(f"{api.base_url}/v{api.api_version}/events", timeout=timeout,
                       params={"since": f"{since:.9f}", "until": f"{until:.9f}", "filters": json.dumps(filters)})
    try:
        response.raise_for_status()
        for n, line in enumerate(response.iter_lines()):
            if n >= MAX_EVENT_LINES:
                break
            event = json.loads(line) if line else None
            actor = event.get("Actor") if isinstance(event, dict) else None
            attrs = actor.get("Attributes") if isinstance(actor, dict) else None
            code = attrs.get("exitCode") if isinstance(attrs, dict) else None
            if isinstance(code, str) and code.isdigit():
                return int(code)
    finally:
        response.close()
    return None

"""The dashboards under test: the committed JSON files, and what their panels and targets hold."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASH = ROOT / "dashboards"


def load_build() -> ModuleType:
    """dashboards/build.py under a name of its own (a plain ``import build`` could find PyPA's ``build``)."""
    name = "agentwatch_dashboards_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DASH / "build.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


build = load_build()

#: File -> uid. Never change a uid: bookmarks, links and alert annotations point at it.
UIDS = {
    "agentwatch-fleet.json": "agentwatch-fleet",
    "agentwatch-agents.json": "agentwatch-agents",
    "agentwatch-server.json": "agentwatch-server",
    "agentwatch-scaler.json": "agentwatch-scaler",
    "agentwatch-insights.json": "agentwatch-insights",
}


def committed() -> dict[str, dict[str, Any]]:
    """File name -> the committed dashboard JSON, for every file the build writes."""
    return {name: json.loads((DASH / name).read_text()) for name in build.DASHBOARDS}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, rows' folded panels included (rows themselves are left out)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel including the rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(file, panel, target) for every query of every committed dashboard."""
    for name, dashboard in committed().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                yield name, panel, target

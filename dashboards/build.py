#!/usr/bin/env python3
"""Generate agentwatch's Grafana dashboards (dashboards/*.json) with grafana-foundation-sdk.

Why code: ids, grid positions, variables, links and the datasource reference are repetitive and
easy to get wrong by hand, and the thresholds must follow alert-rules/thresholds.yml. The JSON is
checked in (Grafana's file provisioning loads it as is); a test fails when it is stale.

    python dashboards/build.py                         # rewrite dashboards/*.json
    python dashboards/build.py --check                 # exit 1 if any is out of date
    python dashboards/build.py --thresholds mine.yml --out-dir /etc/agentwatch/dashboards
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from agentwatch_dashboards import agents, fleet, insights, scaler, server  # noqa: E402
from agentwatch_dashboards.thresholds import THRESHOLDS_FILE, Thresholds, load  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models.dashboard import Dashboard  # noqa: E402

#: Output file -> the function that builds it. File names and uids are stable: bookmarks use them.
DASHBOARDS: dict[str, Callable[[Thresholds], Dashboard]] = {
    "agentwatch-fleet.json": fleet.build,
    "agentwatch-agents.json": agents.build,
    "agentwatch-server.json": server.build,
    "agentwatch-scaler.json": scaler.build,
    "agentwatch-insights.json": insights.build,
}


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all(thresholds: Thresholds | None = None) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    t = thresholds or load()
    return {name: render(make(t)) for name, make in DASHBOARDS.items()}


def build_all(overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """File name -> parsed dashboard, with ``overrides`` on the thresholds (for the tests)."""
    return {name: json.loads(text) for name, text in render_all(load(THRESHOLDS_FILE, overrides)).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thresholds", type=Path, default=THRESHOLDS_FILE,
                        help="thresholds file the panels follow (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a file differs")
    args = parser.parse_args(argv)
    try:
        outputs = render_all(load(args.thresholds))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, text in outputs.items():
        path = args.out_dir / name
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path))
            continue
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"out of date (run python dashboards/build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

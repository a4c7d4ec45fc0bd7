"""``agentwatch crashes``, ``agentwatch health`` and ``agentwatch top``: the insight APIs as tables.

The tables (``rich``) and the answer models are imported when a command runs, not when the
``agentwatch`` parser is built, so the other commands do not pay for them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentwatch.views.table import Table

from agentwatch.config import DEFAULT_LISTEN
from agentwatch.views.fetch import EXIT_UNAVAILABLE, EXIT_USAGE, FetchError, base_url, get_json, shown

URL_ENV = "AGENTWATCH_URL"
DEFAULT_URL = f"http://{DEFAULT_LISTEN}"
CAUSES = ("oom", "memory_leak", "memory_spike", "signal", "error", "clean")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

EXIT_CODES = (f"exit codes: 0 shown; {EXIT_UNAVAILABLE} the exporter gave nothing to show (down, timed out, "
              f"insights disabled, an answer that is not the documented JSON); {EXIT_USAGE} a bad flag or "
              "--url, or a query the exporter refused")


def since_value(raw: str) -> float:
    """``--since``: a duration back from now (``90s``, ``30m``, ``2h``, ``1d``) or Unix seconds."""
    match = _DURATION.fullmatch(raw.strip())
    if match:
        return time.time() - float(match[1]) * _UNIT_SECONDS[match[2]]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 30m, 2h, 1d or Unix seconds (got {raw[:40]!r})")
    return value


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= 300:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, at most 300 (got {raw[:40]!r})")
    return value


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 1000 (got {raw[:40]!r})")
    return int(raw)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get(URL_ENV) or DEFAULT_URL, metavar="URL",
                   help=f"the exporter (default: ${URL_ENV}, else {DEFAULT_URL})")
    p.add_argument("--timeout", type=_positive_seconds, default=5.0, metavar="SECONDS",
                   help="give up on an exporter that does not answer within this (default 5)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the API's JSON answer instead of a table")
    out.add_argument("--plain", action="store_true",
                     help="plain aligned text even on a terminal (the default when not on one)")


def _fetch(args: argparse.Namespace, path: str, query: dict[str, str], parse: Callable[[Any], Any]) -> tuple[Any, Any]:
    from agentwatch.views.model import BadAnswer

    base = base_url(args.url)
    data = get_json(base, path, query, args.timeout)
    try:
        return data, parse(data)
    except BadAnswer as exc:
        raise FetchError(f"the answer from {shown(base + path)} is not what the API documents: {exc}",
                         EXIT_UNAVAILABLE) from None


def _print(args: argparse.Namespace, data: Any, tables: list[Table]) -> None:
    from agentwatch.views.table import show

    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        show(tables, sys.stdout, terminal=not args.plain and sys.stdout.isatty())


def run_crashes(args: argparse.Namespace) -> int:
    from agentwatch.views.model import parse_crashes
    from agentwatch.views.table import crashes_table

    query = {"limit": str(args.limit)}
    if args.container:
        query["container"] = args.container
    if args.cause:
        query["cause"] = args.cause
    if args.since is not None:
        query["since"] = f"{args.since:.3f}"
    data, answer = _fetch(args, "/api/crashes", query, parse_crashes)
    _print(args, data, [crashes_table(answer)])
    return 0


def run_health(args: argparse.Namespace) -> int:
    from agentwatch.views.model import parse_health
    from agentwatch.views.table import health_table

    query = {"container": args.container} if args.container else {}
    data, answer = _fetch(args, "/api/health", query, parse_health)
    _print(args, data, [health_table(answer)])
    return 0


def run_top(args: argparse.Namespace) -> int:
    from agentwatch.views.model import parse_health
    from agentwatch.views.table import top_tables

    data, answer = _fetch(args, "/api/health", {}, parse_health)
    _print(args, data, list(top_tables(answer)))
    return 0


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One line on stderr and the documented exit code for every failure; quiet on a closed pipe."""
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except FetchError as exc:
            print(f"agentwatch {args.command}: {exc}", file=sys.stderr)
            return exc.exit_code
        except BrokenPipeError:  # `agentwatch crashes | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
    return guarded


def register(sub: Any) -> None:
    """Add the three commands to the ``agentwatch`` parser's sub-parsers."""
    p = sub.add_parser("crashes", help="recent container deaths: cause, pattern and what to change",
                       description="Recent crash insights from the exporter's /api/crashes, newest first.",
                       epilog=EXIT_CODES)
    _add_common(p)
    p.add_argument("--limit", type=_limit, default=50, metavar="N", help="at most N crashes (1-1000, default 50)")
    p.add_argument("--container", metavar="NAME", help="only this container (exact name)")
    p.add_argument("--cause", metavar="CAUSE", help=f"only this cause: {', '.join(CAUSES)}")
    p.add_argument("--since", type=since_value, metavar="WHEN",
                   help="only crashes since then: a duration back from now (30m, 2h, 1d) or Unix seconds")
    p.set_defaults(func=_guarded(run_crashes))

    p = sub.add_parser("health", help="health scores 0-100 of the host and each container, with the reasons",
                       description="Health scores from the exporter's /api/health, worst first, each "
                                   "explained by the parts that cost points.", epilog=EXIT_CODES)
    _add_common(p)
    p.add_argument("--container", metavar="NAME", help="only this container (exact name)")
    p.set_defaults(func=_guarded(run_health))

    p = sub.add_parser("top", help="memory per container against its limit: trend and time to the limit",
                       description="Containers by share of their memory limit (from /api/health), then the "
                                   "agent process groups.", epilog=EXIT_CODES)
    _add_common(p)
    p.set_defaults(func=_guarded(run_top))

"""``agentwatch demo-agents``: run the demo agent server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from agentwatch import log as awlog
from agentwatch.config import listen_arg, parse_listen

logger = logging.getLogger("agentwatch.demo")

DEFAULT_LISTEN = "127.0.0.1:8700"
DEFAULT_KEY_ENV = "AGENTWATCH_DEMO_API_KEY"


def _range(value: str) -> tuple[float, float]:
    low, _, high = value.partition("-")
    try:
        lo, hi = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX seconds such as 20-120, got {value!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, got {value!r}")
    return lo, hi


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo-agents", help="run the demo agent server (real child-process agents; for tests and demos)",
        description="An aiohttp agent server whose agents are child processes holding model-sized memory. "
                    "Every endpoint but /live and /metrics needs the X-API-Key header.")
    p.add_argument("--listen", type=listen_arg, default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to serve on (default {DEFAULT_LISTEN})")
    p.add_argument("--api-key-env", default=DEFAULT_KEY_ENV, metavar="VAR",
                   help=f"environment variable holding the API key (default {DEFAULT_KEY_ENV})")
    p.add_argument("--api-key-file", metavar="FILE", help="file holding the API key (first line)")
    p.add_argument("--no-auth", action="store_true", help="serve without an API key (local experiments only)")
    p.add_argument("--server-name", default="demo", help="the server label on its own metrics (default demo)")
    p.add_argument("--max-concurrency", type=int, default=4, help="agents allowed at once (default 4)")
    p.add_argument("--memory-scale", type=float, default=1.0,
                   help="scale the per-model memory (haiku 200, sonnet 500, opus 600 MiB); 0.02 for tests")
    p.add_argument("--pool-size", type=int, default=20, help="MCP client pool maximum size (default 20)")
    p.add_argument("--pool-idle-seconds", type=float, default=60.0, help="close idle pool clients after this")
    p.add_argument("--pool-acquire-timeout", type=float, default=30.0,
                   help="an agent waiting longer than this for a pool client fails")
    p.add_argument("--lag-threshold", type=float, default=1.0,
                   help="event-loop lag (seconds) above which /api/health answers 503")
    p.add_argument("--forget-crashed", action="store_true",
                   help="keep agents killed by a signal listed as running (reproduces 'stuck running')")
    p.add_argument("--enable-test-endpoints", action="store_true",
                   help="serve POST /api/test/block-event-loop (tests only)")
    p.add_argument("--exit-after-drain", action="store_true", help="exit once a drain has finished")
    p.add_argument("--load-per-minute", type=float, default=0.0,
                   help="start agents with random models on their own at this average rate")
    p.add_argument("--load-seconds", type=_range, default=(20.0, 120.0), metavar="MIN-MAX",
                   help="run time range of self-started agents (default 20-120)")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.set_defaults(func=run)


def _api_key(args: argparse.Namespace) -> str | None:
    value = os.environ.get(args.api_key_env, "").strip() if args.api_key_env else ""
    if not value and args.api_key_file:
        try:
            lines = Path(args.api_key_file).read_text().splitlines()
        except OSError as exc:
            raise SystemExit(f"agentwatch demo-agents: cannot read --api-key-file: {exc.strerror}") from None
        value = lines[0].strip() if lines else ""
    return value or None


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from agentwatch.demo.server import DemoOptions, DemoServer

    awlog.setup(args.log_format, args.log_level)
    key = _api_key(args)
    if key is None and not args.no_auth:
        print(f"agentwatch demo-agents: no API key: set ${args.api_key_env} or --api-key-file "
              "(or pass --no-auth)", file=sys.stderr)
        return 2
    awlog.register_secret(key)
    if args.max_concurrency < 0 or args.pool_size < 1 or args.memory_scale < 0:
        print("agentwatch demo-agents: --max-concurrency >= 0, --pool-size >= 1, --memory-scale >= 0",
              file=sys.stderr)
        return 2
    opts = DemoOptions(
        api_key=key, server_name=args.server_name, max_concurrency=args.max_concurrency,
        memory_scale=args.memory_scale, pool_size=args.pool_size, pool_idle_seconds=args.pool_idle_seconds,
        pool_acquire_timeout=args.pool_acquire_timeout, lag_threshold=args.lag_threshold,
        forget_crashed=args.forget_crashed, test_endpoints=args.enable_test_endpoints,
        exit_after_drain=args.exit_after_drain, load_per_minute=args.load_per_minute,
        load_seconds=args.load_seconds)
    host, port = parse_listen(args.listen)
    logger.info("demo agent server listening on http://%s", args.listen,
                extra={"max_concurrency": opts.max_concurrency, "memory_scale": opts.memory_scale,
                       "auth": key is not None})
    web.run_app(DemoServer(opts).app(), host=host, port=port, print=None, access_log=None)
    return 0

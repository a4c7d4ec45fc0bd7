"""``agentwatch scaler``: run the sidecar that turns Alertmanager webhooks into scaling actions."""

from __future__ import annotations

import argparse
import logging

from agentwatch import __version__, log
from agentwatch.config import listen_arg, parse_listen, with_overrides

logger = logging.getLogger("agentwatch.scaler")


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from agentwatch.scaler.app import create_app
    from agentwatch.scaler.config import load

    config = load(args.config)
    config = with_overrides(config, listen=args.listen, log_format=args.log_format, log_level=args.log_level)
    log.setup(config.log_format, config.log_level)
    app = create_app(config)
    host, port = parse_listen(config.listen)
    logger.info("agentwatch scaler %s listening on http://%s/ (%s)", __version__, config.listen,
                "dry run" if config.dry_run else "live")
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scaler", help="act on Alertmanager webhooks (scale, resize, drain, restart, notify)",
                       description="Receive Alertmanager webhooks on POST /webhook and act on them under the "
                                   "policy's rules, priorities, cooldowns and limits.")
    p.add_argument("--config", metavar="FILE", required=True, help="the scaler policy (YAML)")
    p.add_argument("--listen", type=listen_arg, metavar="HOST:PORT",
                   help="address to serve on (default: the policy's, 127.0.0.1:9848)")
    p.add_argument("--log-format", choices=("json", "text"), help="log format (default: the policy's, json)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level")
    p.set_defaults(func=run)

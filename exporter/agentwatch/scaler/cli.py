"""``agentwatch scaler``: run the sidecar that turns Alertmanager webhooks into scaling actions."""

from __future__ import annotations

import argparse
import logging

from agentwatch import __version__, listener, log
from agentwatch.configfile import with_overrides

logger = logging.getLogger("agentwatch.scaler")

#: The scaler's flags and the policy keys they override.
SCALER_FLAGS = {"--listen": "listen", "--log-format": "log_format", "--log-level": "log_level"}


def run(args: argparse.Namespace) -> int:
    from agentwatch.scaler.app import create_app
    from agentwatch.scaler.config import load
    from agentwatch.serving import ConnectionLimits, serve
    from agentwatch.tuning import settle_process

    config = with_overrides(load(args.config), args, SCALER_FLAGS)
    log.setup(config.log_format, config.log_level)
    app = create_app(config)
    settle_process()
    sock = listener.bind(config.listen)
    logger.info("agentwatch scaler %s listening on http://%s/ (%s)", __version__, config.listen,
                "dry run" if config.dry_run else "live")
    serve(app, sock, ConnectionLimits(header_timeout=config.http.header_timeout_seconds,
                                      max_connections=config.http.max_connections))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scaler", help="act on Alertmanager webhooks (scale, resize, drain, restart, notify)",
                       description="Receive Alertmanager webhooks on POST /webhook and act on them under the "
                                   "policy's rules, priorities, cooldowns and limits.")
    p.add_argument("--config", metavar="FILE", required=True, help="the scaler policy (YAML)")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="address to serve on (default: the policy's, 127.0.0.1:9848)")
    p.add_argument("--log-format", choices=("json", "text"), help="log format (default: the policy's, json)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level")
    p.set_defaults(func=run)

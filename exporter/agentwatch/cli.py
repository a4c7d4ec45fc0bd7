"""The ``agentwatch`` command: one sub-command per part of the pack."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from agentwatch import __version__, listener, log
from agentwatch.config import DEFAULT_LISTEN, ExporterConfig, load
from agentwatch.configfile import ConfigError, with_overrides
from agentwatch.demo.cli import register as register_demo
from agentwatch.listener import ListenError
from agentwatch.scaler.cli import register as register_scaler
from agentwatch.views.cli import register as register_views

logger = logging.getLogger("agentwatch")

#: The exporter's flags and the config keys they override.
EXPORTER_FLAGS = {"--listen": "listen", "--interval": "interval_seconds", "--log-format": "log_format",
                  "--log-level": "log_level"}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config file (default: built-in defaults)")
    p.add_argument("--log-format", choices=("json", "text"), help="log format (default: the config's, json)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level")


def _exporter_config(args: argparse.Namespace) -> ExporterConfig:
    return with_overrides(load(args.config), args, EXPORTER_FLAGS)


def run_exporter(args: argparse.Namespace) -> int:
    from aiohttp import web

    from agentwatch.server import create_app
    from agentwatch.tuning import settle_process

    config = _exporter_config(args)
    log.setup(config.log_format, config.log_level)
    sock = listener.bind(config.listen)
    app = create_app(config)
    settle_process()
    logger.info("agentwatch exporter %s listening on http://%s/metrics", __version__, config.listen,
                extra={"interval_seconds": config.interval_seconds})
    web.run_app(app, sock=sock, print=None, access_log=None)
    return 0


def run_check_config(args: argparse.Namespace) -> int:
    if args.kind == "scaler":
        from agentwatch.scaler.config import load as load_scaler

        load_scaler(args.file)
    else:
        load(args.file)
    print(f"{args.file}: OK ({args.kind} config)")
    return 0


def run_metrics_doc(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentwatch import catalog

    if not args.update:
        sys.stdout.write(catalog.markdown_table())
    for name in args.update:
        path = Path(name)
        path.write_text(catalog.with_table(path.read_text()))
        print(f"updated {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentwatch",
        description="Monitoring and self-healing for fleets of AI agents in Docker containers.",
    )
    parser.add_argument("--version", action="version", version=f"agentwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("exporter", help="serve container, agent-process and probe metrics at /metrics",
                       description="Collect in the background and serve the last snapshot at /metrics.")
    _add_common(p)
    p.add_argument("--listen", metavar="HOST:PORT",
                   help=f"address to serve on (default: the config's, {DEFAULT_LISTEN})")
    p.add_argument("--interval", type=float, metavar="SECONDS", help="collection interval (default 5)")
    p.set_defaults(func=run_exporter)

    p = sub.add_parser("check-config", help="validate a config file and exit non-zero on the first problem",
                       description="Validate a config file: unknown keys, bad regexes and wrong types "
                                   "are reported with the file and the key.")
    p.add_argument("file", metavar="FILE", help="the YAML file to check")
    p.add_argument("--kind", choices=("exporter", "scaler"), default="exporter",
                   help="which config the file is (default: exporter)")
    p.set_defaults(func=run_check_config)

    p = sub.add_parser("metrics-doc", help="print the metric table (Markdown) generated from the code")
    p.add_argument("--update", nargs="+", default=[], metavar="FILE",
                   help="rewrite the table between the metrics markers of these files instead of printing")
    p.set_defaults(func=run_metrics_doc)

    p = sub.add_parser("render-alertmanager", add_help=False,
                       help="render alertmanager.yml from its template with secrets from env vars or files")
    p.set_defaults(func=None, passthrough=render_alertmanager)

    register_scaler(sub)
    register_demo(sub)
    register_views(sub)  # crashes, health, top
    return parser


def render_alertmanager(argv: Sequence[str]) -> int:
    from agentwatch.alerting import main as render_main

    return render_main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", None):  # the sub-command parses its own flags
        return args.passthrough(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args)
    except (ConfigError, ListenError) as exc:  # one line per problem, no traceback
        for line in str(exc).splitlines():
            print(f"agentwatch {args.command}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

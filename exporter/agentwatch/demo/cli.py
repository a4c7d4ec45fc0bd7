"""``agentwatch demo-agents``: run the demo agent server."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Literal

from agentwatch import listener
from agentwatch import log as awlog
from agentwatch.configfile import ConfigError, ListenAddress, Strict, read_secret, with_overrides
from agentwatch.schema import Field, field_validator

logger = logging.getLogger("agentwatch.demo")

DEFAULT_LISTEN = "127.0.0.1:8700"
DEFAULT_KEY_ENV = "AGENTWATCH_DEMO_API_KEY"


class DemoSettings(Strict):
    """The demo server's settings: the defaults, which its flags override and which check them."""

    listen: ListenAddress = DEFAULT_LISTEN
    server_name: str = Field(default="demo", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    max_concurrency: int = Field(default=4, ge=0, le=10_000)
    max_queue: int = Field(default=0, ge=0, le=10_000)
    container: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    compose_service: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    memory_scale: float = Field(default=1.0, ge=0, le=64)
    pool_size: int = Field(default=20, ge=1, le=10_000)
    pool_idle_seconds: float = Field(default=60.0, gt=0, le=86_400)
    pool_acquire_timeout: float = Field(default=30.0, gt=0, le=3600)
    lag_threshold: float = Field(default=1.0, gt=0, le=3600)
    load_per_minute: float = Field(default=0.0, ge=0, le=6000)
    load_seconds: tuple[float, float] = (20.0, 120.0)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("load_seconds")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError("expected 0 <= MIN <= MAX seconds")
        return value


#: Every flag that overrides a setting, and its key.
DEMO_FLAGS = {f"--{key.replace('_', '-')}": key for key in DemoSettings.model_fields}


def _range(value: str) -> tuple[float, float]:
    low, _, high = value.partition("-")
    try:
        return float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX seconds such as 20-120, got {value[:40]!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    d = DemoSettings()
    p = sub.add_parser(
        "demo-agents", help="run the demo agent server (real child-process agents; for tests and demos)",
        description="An aiohttp agent server whose agents are child processes holding model-sized memory. "
                    "Every endpoint but /live and /metrics needs the X-API-Key header.")
    # Flags that override a setting default to None ("not given"); DemoSettings holds the defaults.
    p.add_argument("--listen", metavar="HOST:PORT", help=f"address to serve on (default {d.listen})")
    p.add_argument("--api-key-env", default=DEFAULT_KEY_ENV, metavar="VAR",
                   help=f"environment variable holding the API key (default {DEFAULT_KEY_ENV})")
    p.add_argument("--api-key-file", metavar="FILE", help="file holding the API key (first line)")
    p.add_argument("--no-auth", action="store_true", help="serve without an API key (local experiments only)")
    p.add_argument("--server-name", help=f"the server label on its own metrics (default {d.server_name})")
    p.add_argument("--max-concurrency", type=int, help=f"agents allowed at once (default {d.max_concurrency})")
    p.add_argument("--max-queue", type=int,
                   help=f"agents that may wait for a slot at capacity; beyond it 503 (default {d.max_queue})")
    p.add_argument("--container", help="the container the server runs in (on agentwatch_app_info)")
    p.add_argument("--compose-service", help="the compose service it runs in (on agentwatch_app_info)")
    p.add_argument("--memory-scale", type=float,
                   help="scale the per-model memory (haiku 200, sonnet 500, opus 600 MiB); 0.02 for tests")
    p.add_argument("--pool-size", type=int, help=f"MCP client pool maximum size (default {d.pool_size})")
    p.add_argument("--pool-idle-seconds", type=float,
                   help=f"close idle pool clients after this (default {d.pool_idle_seconds:g})")
    p.add_argument("--pool-acquire-timeout", type=float,
                   help=f"an agent waiting longer than this for a pool client fails (default "
                        f"{d.pool_acquire_timeout:g})")
    p.add_argument("--lag-threshold", type=float,
                   help=f"event-loop lag (seconds) above which /api/health answers 503 (default {d.lag_threshold:g})")
    p.add_argument("--forget-crashed", action="store_true",
                   help="keep agents killed by a signal listed as running (reproduces 'stuck running')")
    p.add_argument("--enable-test-endpoints", action="store_true",
                   help="serve POST /api/test/block-event-loop (tests only)")
    p.add_argument("--exit-after-drain", action="store_true", help="exit once a drain has finished")
    p.add_argument("--load-per-minute", type=float,
                   help="start agents with random models on their own at this average rate (default 0)")
    p.add_argument("--load-seconds", type=_range, metavar="MIN-MAX",
                   help="run time range of self-started agents (default 20-120)")
    p.add_argument("--log-format", choices=("json", "text"), help="log format (default json)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level (default info)")
    p.set_defaults(func=run)
    register_walkthrough(sub)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0 and at most 86400, got {value[:40]!r}")
    return seconds


def register_walkthrough(sub: argparse._SubParsersAction) -> None:
    """``agentwatch demo``: the whole loop on this machine and a scripted incident (agentwatch.demo.loop)."""
    p = sub.add_parser(
        "demo", help="run the whole loop on this machine and walk through a scripted incident",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start, all on loopback: a private Docker engine (root and dockerd needed; without one the "
                    "demo runs without containers and says so), the example agent server, the exporter, "
                    "Prometheus and Alertmanager (Debian packages) with the shipped rules and routes, Slack- and "
                    "Discord-shaped receivers that print what they get, and the scaler in dry run. Then play an "
                    "incident (a container leaking memory, OOM-killed, crash-looping; a full pool) and print each "
                    "step as it is observed. Ctrl-C or SIGTERM stops everything and leaves nothing behind.",
        epilog="exit codes:\n  0    the walkthrough completed, or --duration elapsed\n"
               "  1    a step of the walkthrough was not observed in time (the output says which)\n"
               "  2    the demo could not start (one line says why)\n"
               "  128+N  stopped by signal N: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP\n"
               "Every process, container and file of the demo is gone when it exits.")
    p.add_argument("--duration", type=_seconds, metavar="SECONDS",
                   help="stop after this long in all, walkthrough finished or not (default: run until Ctrl-C)")
    p.add_argument("--no-incident", action="store_true", help="start everything and print the URLs, no incident")
    p.add_argument("--no-engine", action="store_true", help="do not start a private Docker engine: no containers")
    p.add_argument("--rules-dir", type=Path, metavar="DIR",
                   help="the alert-rules/ directory to use (default: the one shipped with agentwatch)")
    p.add_argument("--keep-files", action="store_true", help="keep the configs and logs (their path is printed)")
    p.set_defaults(func=run_walkthrough)


def run_walkthrough(args: argparse.Namespace) -> int:
    from agentwatch.demo.loop import run as run_loop

    return run_loop(args)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from agentwatch.demo.server import DemoOptions, DemoServer

    settings = with_overrides(DemoSettings(), args, DEMO_FLAGS)
    awlog.setup(settings.log_format, settings.log_level)
    key = read_secret(args.api_key_env, args.api_key_file)
    if key is None and not args.no_auth:
        raise ConfigError(f"no API key: set ${args.api_key_env} or --api-key-file (or pass --no-auth)")
    awlog.register_secret(key)
    opts = DemoOptions(
        api_key=key, server_name=settings.server_name, max_concurrency=settings.max_concurrency,
        max_queue=settings.max_queue, container=settings.container, compose_service=settings.compose_service,
        memory_scale=settings.memory_scale, pool_size=settings.pool_size,
        pool_idle_seconds=settings.pool_idle_seconds, pool_acquire_timeout=settings.pool_acquire_timeout,
        lag_threshold=settings.lag_threshold, forget_crashed=args.forget_crashed,
        test_endpoints=args.enable_test_endpoints, exit_after_drain=args.exit_after_drain,
        load_per_minute=settings.load_per_minute, load_seconds=settings.load_seconds)
    sock = listener.bind(settings.listen)
    logger.info("demo agent server listening on http://%s", settings.listen,
                extra={"max_concurrency": opts.max_concurrency, "memory_scale": opts.memory_scale,
                       "auth": key is not None})
    web.run_app(DemoServer(opts).app(), sock=sock, print=None, access_log=None)
    return 0

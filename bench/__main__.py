"""``python -m bench``: measure agentwatch beside its peers and write bench/results/latest.{md,json}."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agentwatch.local.signals import Interrupted, raise_on_stop_signals
from bench import report, runner
from bench.flags import bounded, positive


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts such as 10,50,100, got {value!r}") from None
    if any(s < 0 or s > 5000 for s in sizes):
        raise argparse.ArgumentTypeError(f"counts must be between 0 and 5000, got {value!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--containers", type=_sizes, default=[10, 50, 100, 250], metavar="N,N,...",
                   help="container counts (default 10,50,100,250)")
    p.add_argument("--processes", type=_sizes, default=[100, 500, 1000], metavar="M,M,...",
                   help="agent-like process counts (default 100,500,1000)")
    p.add_argument("--scrapes", type=positive(int, 100_000), default=100, help="timed scrapes per target (default 100)")
    p.add_argument("--out", default="bench/results", help="output directory (default bench/results)")
    p.add_argument("--interval", type=positive(float, 3600), default=2.0,
                   help="exporter collection interval in seconds (default 2)")
    p.add_argument("--window", type=positive(float, 3600), default=20.0,
                   help="quiet window for CPU per cycle, seconds (default 20)")
    p.add_argument("--repeat", type=positive(int, 100_000), default=3, help="docker stats runs per point (default 3)")
    p.add_argument("--sdk-sample", type=positive(int, 100_000), default=5,
                   help="containers timed in the SDK stats loop before extrapolating (default 5)")
    p.add_argument("--stats-source", choices=("auto", "cgroup", "api"), default="auto",
                   help="the exporter's docker.stats_source (default auto)")
    p.add_argument("--pace", type=float, default=None,
                   help="seconds between agentwatch scrapes (default: spread over 2.5 intervals)")
    p.add_argument("--webhooks", type=bounded(int, 0, 100_000, what="a count"), default=1000,
                   help="webhooks in the scaler's burst (default 1000; 0 leaves the scaler out)")
    p.add_argument("--in-flight", type=positive(int, 100_000), default=50,
                   help="webhooks in flight at once (default 50)")
    p.add_argument("--distinct", type=positive(int, 100_000), default=400,
                   help="distinct alert instances the burst cycles over (default 400)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = runner.main_settings(args)
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    # Explicit handlers, whatever was inherited: a background job starts with SIGINT ignored, and
    # SIGTERM/SIGHUP would otherwise kill the run without its cleanup.
    raise_on_stop_signals()
    try:
        result = runner.run(settings, log)
    except KeyboardInterrupt as exc:
        log("interrupted: workload and engine cleaned up, no results written")
        return 128 + exc.signum if isinstance(exc, Interrupted) else 130
    json_path, md_path = report.write(result, Path(settings.out))
    print(md_path.read_text())
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

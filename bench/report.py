"""Ratios, targets and the Markdown/JSON report, all computed from the JSON-able results dict.

The Markdown is rendered only from the same dict that is written as JSON, so the two files
cannot disagree; ``tests/bench`` re-renders the JSON (``python -m bench.report --markdown``) and compares.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]
Point = dict[str, Any]

RSS_LIMIT_BYTES = 55e6
COMBINED_P99_LIMIT_S = 0.050
SCRAPE_P99_FRACTION = 1 / 10
CPU_FRACTION = 1 / 10
CPU_LEAN_FRACTION = 1 / 3
DOCKER_STATS_FRACTION = 1 / 100
BARE_READS_FACTOR = 4.0
PER_CONTAINER_FACTOR = 1.25
#: The container count the per-container cost of the largest one is compared with.
PER_CONTAINER_REFERENCE = 50
PROCESSES_WITH_CONTAINERS_FACTOR = 1.5
SCALER_P99_LIMIT_S = 0.020
SERIES_TOLERANCE = 0.10


# ---------------------------------------------------------------- ratios


def ratios(point: Point) -> dict[str, float]:
    """agentwatch's figure divided by each peer's (below 1: agentwatch costs less)."""
    aw, out = point["agentwatch"], {}
    pe, ds, sdk = point.get("process_exporter"), point.get("docker_stats"), point.get("sdk_loop")
    lean, bare = point.get("process_exporter_lean"), point.get("bare_reads")
    if pe:
        out["scrape_p50_vs_process_exporter"] = aw["scrape"]["median_s"] / pe["scrape"]["median_s"]
        out["scrape_p99_vs_process_exporter"] = aw["scrape"]["p99_s"] / pe["scrape"]["p99_s"]
        out["cpu_vs_process_exporter"] = aw["cpu_per_cycle_s"] / max(pe["cpu_per_scrape_s"], 1e-9)
        out["rss_vs_process_exporter"] = aw["peak_rss_bytes"] / pe["peak_rss_bytes"]
        out["series_vs_process_exporter"] = aw["series"] / pe["series"]
    if lean:
        out["cpu_vs_process_exporter_lean"] = aw["cpu_per_cycle_s"] / max(lean["cpu_per_scrape_s"], 1e-9)
    if ds:
        out["cycle_vs_docker_stats"] = aw["cycle_median_s"] / ds["wall_median_s"]
        out["collector_vs_docker_stats"] = collector(point, "containers") / ds["wall_median_s"]
        aw_cpu = aw["cpu_per_cycle_s"] + (aw["engine_cpu_per_cycle_s"] or 0.0)
        out["cpu_vs_docker_stats"] = aw_cpu / max(ds["cli_cpu_s"] + ds["engine_cpu_s"], 1e-9)
    if bare:
        out["collector_vs_bare_reads"] = collector(point, "containers") / max(bare["wall_median_s"], 1e-9)
    if sdk:
        out["cycle_vs_sdk_loop"] = aw["cycle_median_s"] / sdk["wall_s"]
    return out


def collector(point: Point, name: str) -> float:
    """A collector's mean duration over the quiet window (0 when it did not run)."""
    return float(point["agentwatch"]["collector_mean_s"].get(name, 0.0))


def per_container(point: Point) -> float:
    return collector(point, "containers") / max(1, point["containers"])


# ---------------------------------------------------------------- targets


def _largest(points: list[Point], kind: str, key: str) -> Point | None:
    chosen = [p for p in points if p["kind"] == kind]
    return max(chosen, key=lambda p: p[key]) if chosen else None


def _target(tid: str, text: str, requirement: str, measured: str, met: bool | None, at: str) -> dict[str, Any]:
    return {"id": tid, "target": text, "requirement": requirement, "measured": measured, "met": met, "at": at}


def targets(points: list[Point], scaler: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The issue's targets, judged at the sizes the issue names (or the largest measured)."""
    out = []
    proc = _largest(points, "processes", "processes")
    comb = next((p for p in points if p["kind"] == "combined"), None)
    conts = sorted((p for p in points if p["kind"] == "containers"), key=lambda p: p["containers"])
    at_n = next((p for p in conts if comb and p["containers"] == comb["containers"]), conts[-1] if conts else None)

    if proc and proc.get("process_exporter"):
        aw, pe = proc["agentwatch"], proc["process_exporter"]
        limit = pe["scrape"]["p99_s"] * SCRAPE_P99_FRACTION
        out.append(_target("scrape_p99_vs_process_exporter", "/metrics p99 vs process-exporter",
                           f"<= 1/10 of process-exporter's p99 ({ms(limit)})",
                           f"{ms(aw['scrape']['p99_s'])} vs {ms(pe['scrape']['p99_s'])} "
                           f"({ratio(aw['scrape']['p99_s'] / pe['scrape']['p99_s'])})",
                           aw["scrape"]["p99_s"] <= limit, f"M={proc['processes']}"))
        for tid, peer, fraction, name in (
                ("cpu_vs_process_exporter", pe, CPU_FRACTION, "process-exporter's CPU per scrape (default flags)"),
                ("cpu_vs_process_exporter_lean", proc.get("process_exporter_lean"), CPU_LEAN_FRACTION,
                 "process-exporter's CPU per scrape (-threads=false -gather-smaps=false)")):
            if not peer:
                continue
            limit = peer["cpu_per_scrape_s"] * fraction
            out.append(_target(tid, "CPU per process-collection cycle",
                               f"<= 1/{1 / fraction:.0f} of {name} ({ms(limit)})",
                               f"{ms(aw['cpu_per_cycle_s'])} vs {ms(peer['cpu_per_scrape_s'])} "
                               f"({ratio(aw['cpu_per_cycle_s'] / max(peer['cpu_per_scrape_s'], 1e-9))})",
                               aw["cpu_per_cycle_s"] <= limit, f"M={proc['processes']}"))
    if comb:
        aw = comb["agentwatch"]
        at = f"N={comb['containers']}, M={comb['processes']}"
        alone = next((p for p in points if p["kind"] == "processes" and p["processes"] == comb["processes"]), None)
        if alone:
            with_c, without = collector(comb, "processes"), collector(alone, "processes")
            out.append(_target("processes_collector_with_containers", "processes collector with containers running",
                               f"<= {PROCESSES_WITH_CONTAINERS_FACTOR:g}x its time without them "
                               f"({ms(without * PROCESSES_WITH_CONTAINERS_FACTOR)})",
                               f"{ms(with_c)} vs {ms(without)} ({ratio(with_c / max(without, 1e-9))})",
                               with_c <= without * PROCESSES_WITH_CONTAINERS_FACTOR, at))
        out.append(_target("scrape_p99_combined", "/metrics p99 with containers and processes together",
                           f"< {ms(COMBINED_P99_LIMIT_S)}", ms(aw["scrape"]["p99_s"]),
                           aw["scrape"]["p99_s"] < COMBINED_P99_LIMIT_S, at))
        out.append(_target("rss_combined", "exporter peak RSS (VmHWM)", f"< {mb(RSS_LIMIT_BYTES)}",
                           mb(aw["peak_rss_bytes"]), aw["peak_rss_bytes"] < RSS_LIMIT_BYTES, at))
    if at_n and at_n.get("docker_stats"):
        took, ds = collector(at_n, "containers"), at_n["docker_stats"]
        limit = ds["wall_median_s"] * DOCKER_STATS_FRACTION
        out.append(_target("containers_collector_vs_docker_stats", "containers collector",
                           f"<= 1/100 of `docker stats --no-stream` ({ms(limit)})",
                           f"{ms(took)} vs {ms(ds['wall_median_s'])} ({ratio(took / ds['wall_median_s'])})",
                           took <= limit, f"N={at_n['containers']}"))
    if at_n and at_n.get("bare_reads"):
        took, bare = collector(at_n, "containers"), at_n["bare_reads"]["wall_median_s"]
        out.append(_target("containers_collector_vs_bare_reads", "containers collector vs reading its files bare",
                           f"<= {BARE_READS_FACTOR:g}x the bare reads ({ms(bare * BARE_READS_FACTOR)})",
                           f"{ms(took)} vs {ms(bare)} ({ratio(took / max(bare, 1e-9))})",
                           took <= bare * BARE_READS_FACTOR, f"N={at_n['containers']}"))
    out.append(_per_container_flat(conts))
    if scaler:
        burst = scaler["burst"]
        met = burst["latency_p99_s"] < SCALER_P99_LIMIT_S and burst["lost"] == 0 and burst["doubled"] == 0 \
            and burst["answered_ok"] == burst["webhooks"]
        out.append(_target("scaler_burst", "scaler decision latency under a burst",
                           f"p99 < {ms(SCALER_P99_LIMIT_S)}, none lost, none doubled",
                           f"p99 {ms(burst['latency_p99_s'])}; {burst['lost']} lost, {burst['doubled']} doubled, "
                           f"{burst['answered_ok']}/{burst['webhooks']} answered",
                           met, f"{burst['webhooks']} webhooks, {burst['in_flight']} in flight"))
    out.append(_series_in_n(conts))
    out.append(_series_in_m([p for p in points if p["kind"] == "processes"]))
    return out


def _per_container_flat(points: list[Point]) -> dict[str, Any]:
    """The containers collector's time per container at the largest N against N=50 (or the smallest N)."""
    text = "containers collector cost per container"
    if len(points) < 2:
        return _target("containers_per_container_flat", text, "needs two container sizes", "-", None, "-")
    ref = next((p for p in points if p["containers"] == PER_CONTAINER_REFERENCE), points[0])
    big = points[-1]
    if big is ref:
        return _target("containers_per_container_flat", text, "needs two container sizes", "-", None, "-")
    a, b = per_container(ref), per_container(big)
    return _target("containers_per_container_flat", text,
                   f"at N={big['containers']} <= {PER_CONTAINER_FACTOR:g}x its cost at N={ref['containers']} "
                   f"({ms(a * PER_CONTAINER_FACTOR)})",
                   f"{ms(b)} vs {ms(a)} per container ({ratio(b / max(a, 1e-12))})",
                   b <= a * PER_CONTAINER_FACTOR, f"N={ref['containers']},{big['containers']}")


def _series_in_n(points: list[Point]) -> dict[str, Any]:
    """Linear in N: the same number of series per container, and the same rest, at every N."""
    text, req = "series grow linearly with N", "per-container series / N and the other series equal at every N (±10%)"
    if len({p["containers"] for p in points}) < 2:
        return _target("series_linear_in_n", text, req, "needs two container sizes", None, "-")
    per = [p["agentwatch"]["container_series"] / p["containers"] for p in points]
    rest = [p["agentwatch"]["series"] - p["agentwatch"]["container_series"] for p in points]
    met = _spread(per) <= SERIES_TOLERANCE and _spread(rest) <= SERIES_TOLERANCE
    measured = (f"{' / '.join(f'{x:.1f}' for x in per)} series per container; "
                f"{' / '.join(str(x) for x in rest)} others")
    return _target("series_linear_in_n", text, req, measured, met,
                   "N=" + ",".join(str(p["containers"]) for p in points))


def _series_in_m(points: list[Point]) -> dict[str, Any]:
    """Not with M: the same series count whatever the number of processes in the groups."""
    text, req = "series do not grow with M", "series equal at every M (±10%)"
    if len({p["processes"] for p in points}) < 2:
        return _target("series_constant_in_m", text, req, "needs two process counts", None, "-")
    counts = [p["agentwatch"]["series"] for p in points]
    return _target("series_constant_in_m", text, req, " / ".join(str(c) for c in counts),
                   _spread(counts) <= SERIES_TOLERANCE, "M=" + ",".join(str(p["processes"]) for p in points))


def _spread(values: list[float]) -> float:
    hi, lo = max(values), min(values)
    return 0.0 if hi == 0 else (hi - lo) / hi


# ---------------------------------------------------------------- formatting


def ms(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.2f} ms"


def mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def ratio(value: float) -> str:
    """0.012 reads as 1/83, 0.62 as 0.62x, 3 as 3.00x."""
    if value <= 0:
        return "0"
    if value < 0.5:
        return f"1/{1 / value:.0f}"
    return f"{value:.2f}x"


def result_word(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[met]


Column = tuple[str, Callable[[Point], str]]

PROCESS_COLUMNS: list[Column] = [
    ("N", lambda p: str(p["containers"])),
    ("M", lambda p: str(p["processes"])),
    ("matched aw / pe", lambda p: f"{p['agentwatch']['processes_matched']} / "
                                  f"{p['process_exporter']['processes_matched']}"),
    ("aw /metrics p50", lambda p: ms(p["agentwatch"]["scrape"]["median_s"])),
    ("aw /metrics p99", lambda p: ms(p["agentwatch"]["scrape"]["p99_s"])),
    ("pe /metrics p50", lambda p: ms(p["process_exporter"]["scrape"]["median_s"])),
    ("pe /metrics p99", lambda p: ms(p["process_exporter"]["scrape"]["p99_s"])),
    ("p99 ratio", lambda p: ratio(p["ratios"]["scrape_p99_vs_process_exporter"])),
    ("aw processes collector", lambda p: ms(p["agentwatch"]["collector_mean_s"].get("processes", 0.0))),
    ("aw cycle", lambda p: ms(p["agentwatch"]["cycle_median_s"])),
    ("aw CPU / cycle", lambda p: ms(p["agentwatch"]["cpu_per_cycle_s"])),
    ("pe CPU / scrape", lambda p: ms(p["process_exporter"]["cpu_per_scrape_s"])),
    ("CPU ratio", lambda p: ratio(p["ratios"]["cpu_vs_process_exporter"])),
    ("pe lean CPU / scrape", lambda p: ms(p["process_exporter_lean"]["cpu_per_scrape_s"])
        if p.get("process_exporter_lean") else "-"),
    ("CPU ratio (lean)", lambda p: ratio(p["ratios"]["cpu_vs_process_exporter_lean"])
        if "cpu_vs_process_exporter_lean" in p["ratios"] else "-"),
    ("aw CPU / scrape", lambda p: ms(p["agentwatch"]["cpu_per_scrape_s"])),
    ("aw peak RSS", lambda p: mb(p["agentwatch"]["peak_rss_bytes"])),
    ("pe peak RSS", lambda p: mb(p["process_exporter"]["peak_rss_bytes"])),
    ("RSS ratio", lambda p: ratio(p["ratios"]["rss_vs_process_exporter"])),
    ("aw series", lambda p: str(p["agentwatch"]["series"])),
    ("pe series", lambda p: str(p["process_exporter"]["series"])),
]

CONTAINER_COLUMNS: list[Column] = [
    ("N", lambda p: str(p["containers"])),
    ("M", lambda p: str(p["processes"])),
    ("containers seen", lambda p: str(p["agentwatch"]["containers_seen"])),
    ("stats source", lambda p: p["agentwatch"]["stats_source"] or "none"),
    ("aw /metrics p50", lambda p: ms(p["agentwatch"]["scrape"]["median_s"])),
    ("aw /metrics p99", lambda p: ms(p["agentwatch"]["scrape"]["p99_s"])),
    ("aw containers collector", lambda p: ms(collector(p, "containers"))),
    ("per container", lambda p: f"{per_container(p) * 1e6:.0f} µs"),
    ("bare reads", lambda p: ms(p["bare_reads"]["wall_median_s"]) if p.get("bare_reads") else "-"),
    ("collector / bare", lambda p: ratio(p["ratios"]["collector_vs_bare_reads"])
        if "collector_vs_bare_reads" in p["ratios"] else "-"),
    ("aw cycle", lambda p: ms(p["agentwatch"]["cycle_median_s"])),
    ("docker stats --no-stream", lambda p: ms(p["docker_stats"]["wall_median_s"])),
    ("collector / docker stats", lambda p: ratio(p["ratios"]["collector_vs_docker_stats"])),
    ("cycle / docker stats", lambda p: ratio(p["ratios"]["cycle_vs_docker_stats"])),
    ("SDK stats loop", lambda p: ms(p["sdk_loop"]["wall_s"])
        + (f" (est. from {p['sdk_loop']['sampled']})" if p["sdk_loop"]["extrapolated"] else "")),
    ("cycle / SDK loop", lambda p: ratio(p["ratios"]["cycle_vs_sdk_loop"])),
    ("aw CPU / cycle (+ engine)", lambda p: f"{ms(p['agentwatch']['cpu_per_cycle_s'])} "
                                            f"(+ {ms(p['agentwatch']['engine_cpu_per_cycle_s'] or 0.0)})"),
    ("docker stats CPU (CLI + engine)", lambda p: f"{ms(p['docker_stats']['cli_cpu_s'])} "
                                                  f"+ {ms(p['docker_stats']['engine_cpu_s'])}"),
    ("CPU ratio", lambda p: ratio(p["ratios"]["cpu_vs_docker_stats"])),
    ("aw peak RSS", lambda p: mb(p["agentwatch"]["peak_rss_bytes"])),
    ("aw series", lambda p: str(p["agentwatch"]["series"])),
]


SCALER_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("webhooks", lambda r: str(r["webhooks"])),
    ("in flight", lambda r: str(r["in_flight"])),
    ("alert instances", lambda r: str(r["distinct"])),
    ("decision latency p50", lambda r: ms(r["latency_p50_s"])),
    ("p99", lambda r: ms(r["latency_p99_s"])),
    ("max", lambda r: ms(r["latency_max_s"])),
    ("answered", lambda r: f"{r['answered_ok']}/{r['webhooks']}"),
    ("acted", lambda r: str(r["acted"])),
    ("duplicates", lambda r: str(r["duplicates"])),
    ("lost", lambda r: str(r["lost"])),
    ("doubled", lambda r: str(r["doubled"])),
    ("webhooks/s", lambda r: f"{r['webhooks'] / max(r['wall_s'], 1e-9):.0f}"),
    ("scaler CPU / webhook", lambda r: ms(r["scaler_cpu_s"] / max(1, r["webhooks"]))),
]


def scaler_rows(result: Result) -> list[list[str]]:
    runs = result.get("scaler") or {}
    return [[fn(runs[key]) for _, fn in SCALER_COLUMNS] for key in ("burst", "serial") if key in runs]


def process_rows(result: Result) -> list[list[str]]:
    return [[fn(p) for _, fn in PROCESS_COLUMNS] for p in result["points"] if p.get("process_exporter")]


def container_rows(result: Result) -> list[list[str]]:
    return [[fn(p) for _, fn in CONTAINER_COLUMNS] for p in result["points"] if p.get("docker_stats")]


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def target_rows(result: Result) -> list[list[str]]:
    return [[t["target"], t["at"], t["requirement"], t["measured"], result_word(t["met"])]
            for t in result["targets"]]


def markdown(result: Result) -> str:
    """The whole report; every figure comes from ``result`` (the JSON)."""
    meta = result["meta"]
    lines = [f"# agentwatch benchmark ({meta['date']})", ""]
    lines += [
        f"Machine: {meta['cpus']} CPUs, {meta['memory_gb']:.0f} GB RAM, {meta['kernel']}, Python {meta['python']}; "
        f"load average {meta['loadavg_before']} before, {meta['loadavg_after']} after. "
        f"Engine {meta['engine_version']} (private dockerd, {meta['cgroup']}); {meta['docker_cli']}; "
        f"process-exporter {meta['process_exporter']}.",
        "",
        f"Run: `{meta['command']}` in {meta['elapsed_s']:.0f} s. Exporter interval {meta['interval_s']:g} s, "
        f"stats_source `{meta['stats_source']}`; CPU per cycle over a quiet window of at least {meta['window_s']:g} s; "
        f"{meta['scrapes']} timed scrapes per target, Prometheus-style (keep-alive, OpenMetrics, gzip), "
        f"agentwatch paced {meta['pace_s'] * 1000:.0f} ms apart so they overlap collection, process-exporter "
        "back to back. aw = agentwatch, pe = process-exporter; ratios are agentwatch / peer (lower is better).",
        "",
        "## Per-process stats (peer: process-exporter)",
        "",
        *_table([h for h, _ in PROCESS_COLUMNS], process_rows(result)),
        "",
        "## Per-container stats (peers: `docker stats --no-stream`, a sequential SDK `stats(stream=False)` loop)",
        "",
        *_table([h for h, _ in CONTAINER_COLUMNS], container_rows(result)),
        "",
        "## Scaler under a burst of webhooks (reference: the same scaler, one webhook at a time)",
        "",
        *(_table([h for h, _ in SCALER_COLUMNS], scaler_rows(result)) if scaler_rows(result) else ["not run"]),
        "",
        "## Targets",
        "",
        *_table(["target", "at", "requirement", "measured", "result"], target_rows(result)),
        "",
        "## How these were measured",
        "",
        *[f"- {note}" for note in meta["notes"]],
        "",
    ]
    return "\n".join(lines)


def write(result: Result, out_dir: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` (the Markdown rendered from the JSON as written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    json_path.write_text(text)
    md_path.write_text(markdown(json.loads(text)))
    return json_path, md_path


README_PROCESS = ("M", "N", "aw /metrics p99", "pe /metrics p99", "aw processes collector", "aw CPU / cycle",
                  "pe CPU / scrape", "CPU ratio", "pe lean CPU / scrape", "CPU ratio (lean)", "aw peak RSS",
                  "pe peak RSS", "aw series")
README_CONTAINER = ("N", "M", "aw containers collector", "per container", "bare reads", "collector / bare",
                    "docker stats --no-stream", "collector / docker stats", "aw CPU / cycle (+ engine)",
                    "aw /metrics p99", "aw peak RSS", "aw series")


def _subset(columns: list[Column], names: tuple[str, ...]) -> list[Column]:
    by_name = dict(columns)
    return [(name, by_name[name]) for name in names]


def readme_section(result: Result) -> str:
    """The README's Performance section: key figures, the targets, how to reproduce."""
    meta = result["meta"]
    pcols, ccols = _subset(PROCESS_COLUMNS, README_PROCESS), _subset(CONTAINER_COLUMNS, README_CONTAINER)
    prows = [[fn(p) for _, fn in pcols] for p in result["points"] if p.get("process_exporter")]
    crows = [[fn(p) for _, fn in ccols] for p in result["points"] if p.get("docker_stats")]
    lines = ["## Performance", ""]
    lines += [
        "The exporter runs beside the agents it watches, so its cost is measured against what users run instead, "
        f"on the same workload in one run ({meta['date']}, {meta['cpus']} CPUs, engine {meta['engine_version']}, "
        f"interval {meta['interval_s']:g} s). aw = agentwatch, pe = Debian's process-exporter "
        f"{meta['process_exporter']}; full tables, every ratio and the method: "
        "[bench/results/latest.md](bench/results/latest.md) (JSON beside it).",
        "",
        *_table([h for h, _ in pcols], prows),
        "",
        *_table([h for h, _ in ccols], crows),
        "",
        *(_table([h for h, _ in SCALER_COLUMNS], scaler_rows(result)) if scaler_rows(result) else []),
        "",
        *_table(["target", "at", "requirement", "measured", "result"], target_rows(result)),
        "",
        "Reproduce (as root, about 12 minutes on 2 cores; it starts its own private dockerd, N busybox containers, "
        "M agent-like processes, a scaler and the demo agent server, and removes them all, also on Ctrl-C):",
        "",
        "```sh",
        "python -m bench    # --containers 10,50,100,250 --processes 100,500,1000 --scrapes 100 --webhooks 1000",
        "python -m bench.report bench/results/latest.json   # prints this section",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report [RESULTS.json] [--markdown]``: print the README section, or the full report."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", nargs="?", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--markdown", action="store_true", help="the full report (latest.md), not the README section")
    args = parser.parse_args(argv)
    try:
        result = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {args.results}: {exc}", file=sys.stderr)
        return 2
    print(markdown(result) if args.markdown else readme_section(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

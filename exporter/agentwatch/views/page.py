"""The exporter's fleet page (``GET /fleet``): the insight APIs as one HTML page, for people without Grafana.

Server-rendered HTML with inline SVG bars and a meta refresh: no JavaScript at all, and the
page's Content-Security-Policy forbids any (a second wall behind the escaping). Every string that
came from the engine (names, images, compose labels, and the summaries that quote them) is
escaped with :func:`html.escape` on its way in, attributes included.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from agentwatch.views import fmt
from agentwatch.views.model import (
    BadAnswer,
    ContainerHealth,
    Crash,
    CrashesAnswer,
    HealthAnswer,
    Host,
    Part,
    ProcessGroup,
    parse_crashes,
    parse_health,
)

#: Response headers of the page: no script may run, nothing is cached, nothing may frame it.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: How many crashes the page lists.
CRASHES_SHOWN = 20
#: The /api/crashes query the page makes.
QUERY = {"limit": str(CRASHES_SHOWN)}
#: Where the dashed lines of a memory bar are when the exporter does not say (its defaults).
DEFAULT_MARKS = (0.80, 0.90)
MIN_REFRESH_SECONDS = 5
THRESHOLD_COLOURS = {"normal": "#2f9e5b", "warning": "#d99a00", "critical": "#e0561b", "oom_imminent": "#b3152a"}
THRESHOLD_WORDS = {"normal": "normal", "warning": "warning", "critical": "critical", "oom_imminent": "OOM imminent"}
CAUSE_CLASSES = {"oom": "bad", "memory_leak": "bad", "memory_spike": "bad", "signal": "odd", "error": "warn",
                 "clean": "good"}
TREND_MARKS = {"growing": "▲", "stable": "▬", "shrinking": "▼"}
UNLIMITED_COLOUR = "#7b8794"
BAR_WIDTH = 240


def e(text: object) -> str:
    """Escape for HTML text and quoted attributes; engine strings are also made printable and cut."""
    return html.escape(fmt.clean(text, fmt.MAX_SENTENCE) if isinstance(text, str) else str(text), quote=True)


def score_class(score: int) -> str:
    return "good" if score >= 80 else "warn" if score >= 50 else "bad"


def memory_bar(ratio: float | None, threshold: str, marks: tuple[float, ...], watermark_ratio: float | None,
               label: str, width: int = BAR_WIDTH, unlimited: bool = False) -> str:
    """A horizontal bar of ``ratio`` (0..1) with dashed lines at the warning and critical ratios
    and a dark tick at the high watermark."""
    fill = 0.0 if ratio is None or not math.isfinite(ratio) else min(1.0, max(0.0, ratio))
    colour = UNLIMITED_COLOUR if unlimited else THRESHOLD_COLOURS.get(threshold, UNLIMITED_COLOUR)
    parts = [f'<svg class="bar" width="{width}" height="16" viewBox="0 0 {width} 16" role="img" '
             f'aria-label="{e(label)}"><title>{e(label)}</title>',
             f'<rect width="{width}" height="16" rx="3" fill="#e9edf1"/>',
             f'<rect width="{fill * width:.1f}" height="16" rx="3" fill="{colour}"/>']
    if not unlimited:
        for mark in marks:
            x = round(mark * width, 1)
            parts.append(f'<line x1="{x}" x2="{x}" y1="0" y2="16" stroke="#4a5561" stroke-width="1" '
                         'stroke-dasharray="2 2"/>')
    if watermark_ratio is not None and math.isfinite(watermark_ratio) and watermark_ratio > 0:
        x = round(min(1.0, watermark_ratio) * width - 1, 1)
        parts.append(f'<rect x="{max(0.0, x)}" y="0" width="2" height="16" fill="#1f2933"/>')
    parts.append("</svg>")
    return "".join(parts)


def score_ring(score: int, size: int = 72) -> str:
    r = size / 2 - 6
    length = 2 * math.pi * r
    colour = {"good": "#2f9e5b", "warn": "#d99a00", "bad": "#b3152a"}[score_class(score)]
    return (f'<svg class="ring" width="{size}" height="{size}" viewBox="0 0 {size} {size}" role="img" '
            f'aria-label="host score {score} of 100">'
            f'<circle cx="{size / 2}" cy="{size / 2}" r="{r}" fill="none" stroke="#e9edf1" stroke-width="8"/>'
            f'<circle cx="{size / 2}" cy="{size / 2}" r="{r}" fill="none" stroke="{colour}" stroke-width="8" '
            f'stroke-dasharray="{length * score / 100:.1f} {length:.1f}" '
            f'transform="rotate(-90 {size / 2} {size / 2})"/>'
            f'<text x="50%" y="54%" text-anchor="middle" dominant-baseline="middle" font-size="20" '
            f'font-weight="700" fill="#1f2933">{score}</text></svg>')


def _parts(parts: Iterable[Part]) -> str:
    hurt = [p for p in parts if p.penalty > 0]
    if not hurt:
        return '<span class="muted">nothing to fix</span>'
    return '<ul class="parts">' + "".join(
        f'<li><b>{e(p.part)} &minus;{p.penalty}</b> {e(p.detail)}</li>' for p in hurt) + "</ul>"


def _head(*titles: str) -> str:
    return "<thead><tr>" + "".join(f"<th>{e(t)}</th>" for t in titles) + "</tr></thead>"


def _origin(project: str, service: str, image: str) -> str:
    bits = [f"{e(project)} / {e(service)}" if project or service else "", e(image)]
    return " · ".join(b for b in bits if b)


def _cards(health: HealthAnswer | None, crashes: CrashesAnswer | None, marks: tuple[float, float]) -> str:
    cards = []
    host: Host | None = health.host if health else None
    if host is not None:
        cards.append(f'<div class="card host"><h3>Host health</h3><div class="row">{score_ring(host.score)}'
                     f'{_parts(host.parts)}</div></div>')
        if host.memory_used_ratio is not None:
            used = host.memory_used_ratio
            threshold = "critical" if used >= marks[1] else "warning" if used >= marks[0] else "normal"
            label = f"{fmt.percent(host.memory_used_ratio)} used of {fmt.size(host.memory_total_bytes)}"
            cards.append(f'<div class="card"><h3>Host memory</h3><p class="big">'
                         f'{e(fmt.percent(host.memory_used_ratio))}</p>'
                         f'{memory_bar(used, threshold, marks, None, f"host memory {label}")}'
                         f'<p class="muted">{e(label)}</p></div>')
    if health is not None:
        states = Counter(c.memory.threshold for c in health.containers)
        items = "".join(f'<li><span class="dot" style="background:{THRESHOLD_COLOURS[t]}"></span>'
                        f'{states.get(t, 0)} {THRESHOLD_WORDS[t]}</li>' for t in THRESHOLD_COLOURS)
        running = sum(1 for c in health.containers if c.state == "running")
        cards.append(f'<div class="card"><h3>Containers</h3><p class="big">{running}<span class="muted"> of '
                     f'{len(health.containers)} running</span></p><ul class="legend">{items}</ul></div>')
    if crashes is not None:
        causes = Counter(c.cause for c in crashes.crashes)
        items = "".join(f'<li><span class="pill {CAUSE_CLASSES.get(cause, "odd")}">{e(cause)}</span> {n}</li>'
                        for cause, n in causes.most_common(6))
        cards.append(f'<div class="card"><h3>Recent crashes</h3><p class="big">{len(crashes.crashes)}</p>'
                     f'<ul class="legend">{items or "<li class=muted>none recorded</li>"}</ul></div>')
    return f'<section class="cards">{"".join(cards)}</section>' if cards else ""


def _container_row(c: ContainerHealth, marks: tuple[float, float], host_total: float | None) -> str:
    m = c.memory
    unlimited = m.limit_bytes is None
    if m.working_set_bytes is None:
        bar_ratio, text = None, "not running"
    elif unlimited:
        bar_ratio = m.working_set_bytes / host_total if host_total else None
        text = f"{fmt.size(m.working_set_bytes)}, no limit"
    else:
        bar_ratio = m.ratio
        text = f"{fmt.size(m.working_set_bytes)} of {fmt.size(m.limit_bytes)} ({fmt.percent(m.ratio)})"
    peak = None
    if m.watermark_bytes is not None:
        scale = host_total if unlimited else m.limit_bytes
        peak = m.watermark_bytes / scale if scale else None
    bar = memory_bar(bar_ratio, m.threshold, marks, peak, f"{c.container}: {text}", unlimited=unlimited)
    state_note = ""
    if m.working_set_bytes is not None:
        colour = THRESHOLD_COLOURS.get(m.threshold, UNLIMITED_COLOUR)
        state_note = (f' · peak {e(fmt.size(m.watermark_bytes))} · '
                      f'<span style="color:{colour}">{e(THRESHOLD_WORDS.get(m.threshold, m.threshold))}</span>')
    trend = '<span class="muted">-</span>'
    if m.working_set_bytes is not None:
        trend = (f'<span class="trend {e(m.trend)}">{TREND_MARKS.get(m.trend, "")} {e(m.trend)}</span>'
                 f'<div class="muted">{e(fmt.rate(m.slope_bytes_per_second))}</div>')
    last = ""
    if c.last_crash is not None and c.crashes_in_window:
        last = f'<div class="muted">last: {e(c.last_crash.cause)}</div>'
    state = e(c.state) + (f' <span class="muted">({e(c.health)})</span>' if c.health not in ("", "none") else "")
    return (f'<tr class="container" data-threshold="{e(m.threshold)}">'
            f'<td><span class="pill {score_class(c.score)}">{c.score}</span></td>'
            f'<td><div class="name">{e(c.container)}</div><div class="muted">'
            f'{_origin(c.compose_project, c.compose_service, c.image)}</div></td>'
            f'<td class="nowrap">{state}</td>'
            f'<td class="mem">{bar}<div class="muted">{e(text)}{state_note}</div></td>'
            f'<td>{trend}</td><td class="num">{e(fmt.duration(m.seconds_to_limit))}</td>'
            f'<td class="num">{c.crashes_in_window}{last}</td><td>{_parts(c.parts)}</td></tr>')


CONTAINER_COLUMNS = ("Score", "Container", "State", "Memory against its limit", "Trend", "To limit", "Crashes 1h",
                     "Why the score")


def _containers(health: HealthAnswer, marks: tuple[float, float]) -> str:
    host_total = health.host.memory_total_bytes if health.host else None
    if not health.containers:
        return '<section><h2>Containers</h2><p class="muted">No containers.</p></section>'
    rows = "".join(_container_row(c, marks, host_total) for c in health.containers)
    legend = " ".join(f'<span class="dot" style="background:{THRESHOLD_COLOURS[t]}"></span>{THRESHOLD_WORDS[t]}'
                      for t in THRESHOLD_COLOURS)
    return (f'<section><h2>Containers <span class="muted">worst health first · dashed lines at '
            f'{fmt.percent(marks[0])} and {fmt.percent(marks[1])} of the limit, dark tick at the peak · '
            f'{legend}</span></h2>'
            f'<table>{_head(*CONTAINER_COLUMNS)}'
            f'<tbody>{rows}</tbody></table></section>')


def _crash_row(c: Crash, now: float) -> str:
    patterns = "".join(f'<li class="pattern">⟳ {e(p.detail)}</li>' for p in c.patterns)
    advice = "".join(f'<li>{e(r.text)}</li>' for r in c.recommendations)
    exit_code = e(fmt.exit_text(c.exit_code, c.signal))
    return (f'<tr class="crash" data-cause="{e(c.cause)}"><td title="{e(fmt.utc_time(c.at))}">{e(fmt.age(c.at, now))}'
            f'<div class="muted nowrap">{e(fmt.utc_time(c.at)).replace(" ", "<br>", 1)}</div></td>'
            f'<td><div class="name">{e(c.container)}</div><div class="muted">'
            f'{_origin(c.compose_project, c.compose_service, c.image)}</div></td>'
            f'<td><span class="pill {CAUSE_CLASSES.get(c.cause, "odd")}">{e(c.cause)}</span></td>'
            f'<td class="num">{exit_code}</td>'
            f'<td class="what">{e(c.summary)}{f"<ul class=patterns>{patterns}</ul>" if patterns else ""}</td>'
            f'<td class="todo"><ul class="advice">{advice}</ul></td></tr>')


def _crashes(crashes: CrashesAnswer) -> str:
    note = "" if crashes.store.persistent else \
        ' · <span class="warn-text">kept in memory only (insights.db_path unset): a restart forgets them</span>'
    if not crashes.crashes:
        return f'<section><h2>Recent crashes{note}</h2><p class="muted">No crashes recorded.</p></section>'
    rows = "".join(_crash_row(c, crashes.generated_at) for c in crashes.crashes)
    return (f'<section><h2>Recent crashes <span class="muted">newest first{note}</span></h2>'
            f'<table>{_head("When", "Container", "Cause", "Exit", "What happened", "What to change")}'
            f'<tbody>{rows}</tbody></table></section>')


def _group_row(g: ProcessGroup) -> str:
    return (f'<tr><td class="name">{e(g.group)}</td><td class="num">{g.processes}</td>'
            f'<td class="num">{e(fmt.size(g.rss_bytes))}</td><td class="num">{e(fmt.size(g.watermark_bytes))}</td>'
            f'<td><span class="trend {e(g.trend)}">{TREND_MARKS.get(g.trend, "")} {e(g.trend)}</span></td>'
            f'<td class="num">{e(fmt.rate(g.slope_bytes_per_second))}</td></tr>')


def _groups(health: HealthAnswer) -> str:
    if not health.process_groups:
        return ""
    rows = "".join(_group_row(g) for g in health.process_groups)
    return ('<section><h2>Agent process groups</h2><table class="narrow">'
            f'{_head("Group", "Processes", "RSS", "Peak", "Trend", "Slope")}<tbody>{rows}</tbody></table></section>')


STYLE = """
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",
sans-serif;color:#1f2933;background:#f4f6f8}main{max-width:1260px;margin:0 auto;padding:16px 20px}
header{display:flex;align-items:baseline;justify-content:space-between;flex-wrap:wrap;gap:8px}
h1{font-size:22px;margin:4px 0}h1 span{color:#52606d;font-weight:400}h2{font-size:16px;margin:0 0 8px}
h2 .muted{font-size:12px;font-weight:400}h3{font-size:12px;text-transform:uppercase;letter-spacing:.04em;
color:#52606d;margin:0 0 6px}.muted{color:#616e7c;font-size:12px}.warn-text{color:#b3152a}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:12px 14px;margin:12px 0}
section.cards{display:grid;grid-template-columns:1.6fr 1fr 1fr 1fr;gap:12px;background:none;border:0;padding:0}
.card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:12px 14px}.card .row{display:flex;
gap:12px;align-items:center}.big{font-size:26px;font-weight:700;margin:0 0 6px}
table{width:100%;border-collapse:collapse}th{white-space:nowrap;text-align:left;font-size:12px;color:#52606d;font-weight:600;
border-bottom:1px solid #dde3ea;padding:4px 8px}td{padding:7px 8px;border-bottom:1px solid #eef1f4;
vertical-align:top;overflow-wrap:anywhere}tr:last-child td{border-bottom:0}table.narrow{width:auto}
.num{text-align:right;white-space:nowrap}.nowrap{white-space:nowrap}.name{font-weight:600;white-space:nowrap}.mem{min-width:250px}.what{min-width:220px}.todo{min-width:400px}
ul{margin:0;padding-left:16px}ul.parts,ul.legend{list-style:none;padding:0;font-size:12px}
ul.legend li{display:inline-block;margin:0 10px 2px 0}ul.patterns{list-style:none;padding:0;margin-top:4px;
color:#8a5a00;font-size:12px}ul.advice{font-size:13px}
.pill{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600;color:#fff;
white-space:nowrap}.pill.good{background:#2f9e5b}.pill.warn{background:#d99a00}.pill.bad{background:#b3152a}
.pill.odd{background:#7b4fb3}.dot{display:inline-block;width:9px;height:9px;border-radius:50%;
margin:0 4px 0 8px}.trend{white-space:nowrap}.trend.growing{color:#b3152a}.trend.shrinking{color:#2f9e5b}
.error{background:#fff4f4;border-color:#f3c3c3;color:#8a1020}svg.bar{display:block;margin:2px 0 3px}
footer{color:#616e7c;font-size:12px;margin:8px 0 24px}footer a,header a{color:#3262a8}
"""


def _answer(status_body: tuple[int, Mapping[str, Any]], parse: Any, what: str) -> tuple[Any, str | None]:
    """The parsed answer, or None and one line saying why there is none."""
    status, body = status_body
    if status != 200:
        return None, f"{what}: {body.get('error', f'HTTP {status}')}"
    try:
        return parse(body), None
    except BadAnswer as exc:
        return None, f"{what}: the answer is not what the API documents: {exc}"


def render(health: tuple[int, Mapping[str, Any]], crashes: tuple[int, Mapping[str, Any]],
           refresh_seconds: float = MIN_REFRESH_SECONDS,
           marks: tuple[float, float] | None = None) -> tuple[int, str]:
    """(status, HTML) of the page from the (status, JSON) answers of /api/health and /api/crashes.

    The status is 200 when both answers are usable, else the first failing answer's (503 when the
    exporter runs without insights); the page then says why in one line per answer.
    """
    marks = marks or DEFAULT_MARKS
    health_answer, health_error = _answer(health, parse_health, "health")
    crashes_answer, crashes_error = _answer(crashes, parse_crashes, "crashes")
    refresh = max(MIN_REFRESH_SECONDS, math.ceil(refresh_seconds))
    now = health_answer.generated_at if health_answer else crashes_answer.generated_at if crashes_answer else None
    body = [_cards(health_answer, crashes_answer, marks)]
    errors = [error for error in (health_error, crashes_error) if error]
    if len(errors) == 2 and health[1] == crashes[1]:  # the same reason for both (insights disabled)
        errors = [f"insights: {health[1].get('error', f'HTTP {health[0]}')}"]
    body.extend(f'<section class="error"><b>No {e(error)}</b></section>' for error in errors)
    if health_answer is not None:
        body.append(_containers(health_answer, marks))
    if crashes_answer is not None:
        body.append(_crashes(crashes_answer))
    if health_answer is not None:
        body.append(_groups(health_answer))
    stamp = f"generated {e(fmt.utc_time(now))} · " if now is not None else ""
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{refresh}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>agentwatch fleet</title><style>{STYLE}</style></head><body><main>"
        '<header><h1>agentwatch <span>fleet</span></h1>'
        f'<p class="muted">{stamp}refreshes every {refresh} s</p></header>'
        + "".join(body)
        + '<footer>From <a href="api/health">/api/health</a> and <a href="api/crashes">/api/crashes</a>; '
        'metrics at <a href="metrics">/metrics</a>. Scores start at 100 and lose the points listed.</footer>'
        "</main></body></html>\n"
    )
    failed = next((s for s, _ in (health, crashes) if s != 200), 200)
    status = failed if failed != 200 else (200 if not (health_error or crashes_error) else 500)
    return status, page

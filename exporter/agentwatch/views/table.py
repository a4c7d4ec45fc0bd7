"""The CLI's tables: built once from the API models, printed with ``rich`` on a terminal or as
aligned plain text otherwise (pipes, files, ``grep``).

Every engine string goes through :func:`agentwatch.views.fmt.clean` and reaches ``rich`` as a
``Text`` (never as markup), so a container label can neither colour the terminal nor move its cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from agentwatch.views import fmt
from agentwatch.views.model import ContainerHealth, CrashesAnswer, HealthAnswer, Part

CAUSE_STYLES = {"oom": "bold red", "memory_leak": "bold red", "memory_spike": "bold red", "signal": "magenta",
                "error": "yellow", "clean": "green"}
THRESHOLD_STYLES = {"normal": "green", "warning": "yellow", "critical": "red", "oom_imminent": "bold red"}
TREND_STYLES = {"growing": "red", "stable": "", "shrinking": "green"}
BAR_WIDTH = 12


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    style: str = ""
    #: When set, a terminal shows a bar of this ratio (0..1) before the text.
    bar: float | None = None


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    right: bool = False
    #: The free-text column: it wraps on a terminal (the others never do).
    wrap: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    cells: tuple[Cell, ...]
    #: More lines about the row: indented under it in plain text, in its last column on a terminal.
    details: tuple[Cell, ...] = ()


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    #: Said instead of the header when there are no rows.
    empty: str
    #: Lines printed after the table.
    notes: tuple[str, ...] = ()


# -- building ----------------------------------------------------------------------------------


def score_style(score: int) -> str:
    return "green" if score >= 80 else "yellow" if score >= 50 else "bold red"


def crashes_table(answer: CrashesAnswer) -> Table:
    now = answer.generated_at
    rows = []
    for c in answer.crashes:
        details = [Cell(f"pattern: {fmt.clean(p.detail, fmt.MAX_SENTENCE)}", "yellow") for p in c.patterns]
        details += [Cell(f"advice: {fmt.clean(r.text, fmt.MAX_SENTENCE)}", "cyan") for r in c.recommendations
                    if r.action != "none"]
        cells = (Cell(fmt.local_time(c.at)), Cell(fmt.age(c.at, now), "dim"), Cell(fmt.clean(c.container)),
                 Cell(fmt.clean(c.cause), CAUSE_STYLES.get(c.cause, "")), Cell(fmt.exit_text(c.exit_code, c.signal)),
                 Cell(fmt.clean(c.summary, fmt.MAX_SENTENCE)))
        rows.append(Row(cells, tuple(details)))
    notes = []
    if not answer.store.persistent:
        notes.append("note: the exporter keeps insights in memory only (insights.db_path unset); "
                     "a restart forgets them")
    return Table(f"Crashes, newest first ({len(rows)} shown)",
                 (Column("WHEN"), Column("AGE"), Column("CONTAINER"), Column("CAUSE"), Column("EXIT"),
                  Column("WHAT HAPPENED", wrap=True)),
                 tuple(rows), "No crashes recorded.", tuple(notes))


def _penalties(parts: list[Part]) -> str:
    hurt = [f"{fmt.clean(p.part)} -{p.penalty}: {fmt.clean(p.detail, fmt.MAX_SENTENCE)}" for p in parts
            if p.penalty > 0]
    return "; ".join(hurt) or "nothing to fix"


def memory_text(c: ContainerHealth) -> str:
    m = c.memory
    if m.working_set_bytes is None:
        return "not running"
    if m.limit_bytes is None:
        return f"{fmt.size(m.working_set_bytes)}, no limit"
    return f"{fmt.percent(m.ratio)} of {fmt.size(m.limit_bytes)}"


def trend_text(c: ContainerHealth) -> str:
    m = c.memory
    if m.working_set_bytes is None:
        return "-"
    if m.trend == "stable" or m.slope_bytes_per_second is None:
        return fmt.clean(m.trend)
    return f"{fmt.clean(m.trend)} {fmt.rate(m.slope_bytes_per_second)}"


def _host_line(answer: HealthAnswer) -> str:
    host = answer.host
    if host is None:
        return "host: no collection turn yet"
    used = ""
    if host.memory_used_ratio is not None:
        used = f", memory {fmt.percent(host.memory_used_ratio)} used of {fmt.size(host.memory_total_bytes)}"
    return f"host score {host.score}/100{used}"


def health_table(answer: HealthAnswer) -> Table:
    rows = []
    for c in answer.containers:
        crashes = str(c.crashes_in_window)
        if c.last_crash is not None and c.crashes_in_window:
            crashes += f" (last: {fmt.clean(c.last_crash.cause)})"
        rows.append(Row((Cell(str(c.score), score_style(c.score)), Cell(fmt.clean(c.container)),
                         Cell(fmt.clean(c.state)), Cell(memory_text(c), THRESHOLD_STYLES.get(c.memory.threshold, "")),
                         Cell(trend_text(c), TREND_STYLES.get(c.memory.trend, "")),
                         Cell(crashes), Cell(_penalties(c.parts)))))
    notes = []
    if answer.host is not None:
        notes = [f"host -{p.penalty} {fmt.clean(p.part)}: {fmt.clean(p.detail)}" for p in answer.host.parts
                 if p.penalty > 0]
    return Table(f"Health, worst first: {_host_line(answer)}",
                 (Column("SCORE", right=True), Column("CONTAINER"), Column("STATE"), Column("MEMORY"),
                  Column("TREND"), Column("CRASHES 1H"), Column("WHY", wrap=True)),
                 tuple(rows), "No containers.", tuple(notes))


def _use_key(c: ContainerHealth) -> tuple[float, float]:
    return fmt.signed(c.memory.ratio), fmt.signed(c.memory.working_set_bytes)


def top_tables(answer: HealthAnswer) -> tuple[Table, Table]:
    """Containers by share of their memory limit (highest first), then the agent process groups."""
    rows = []
    for c in sorted(answer.containers, key=_use_key, reverse=True):
        m = c.memory
        style = THRESHOLD_STYLES.get(m.threshold, "")
        bar = min(1.0, m.ratio) if m.ratio is not None else None
        running = m.working_set_bytes is not None
        rows.append(Row((Cell(fmt.clean(c.container)), Cell(fmt.clean(c.state)), Cell(fmt.size(m.working_set_bytes)),
                         Cell(fmt.size(m.limit_bytes) if m.limit_bytes is not None else "none"),
                         Cell(fmt.percent(m.ratio), style, bar), Cell(fmt.size(m.watermark_bytes)),
                         Cell(fmt.clean(m.trend) if running else "-", TREND_STYLES.get(m.trend, "")),
                         Cell(fmt.rate(m.slope_bytes_per_second) if running else "-"),
                         Cell(fmt.duration(m.seconds_to_limit)),
                         Cell(fmt.clean(m.threshold) if running else "-", style))))
    containers = Table(f"Memory, highest share of the limit first: {_host_line(answer)}",
                       (Column("CONTAINER"), Column("STATE"), Column("WORKING SET", right=True),
                        Column("LIMIT", right=True), Column("USE", right=True), Column("PEAK", right=True),
                        Column("TREND"), Column("SLOPE", right=True), Column("TO LIMIT", right=True),
                        Column("THRESHOLD")),
                       tuple(rows), "No containers.")
    group_rows = tuple(
        Row((Cell(fmt.clean(g.group)), Cell(str(g.processes)), Cell(fmt.size(g.rss_bytes)),
             Cell(fmt.size(g.watermark_bytes)), Cell(fmt.clean(g.trend), TREND_STYLES.get(g.trend, "")),
             Cell(fmt.rate(g.slope_bytes_per_second))))
        for g in sorted(answer.process_groups, key=lambda g: fmt.signed(g.rss_bytes), reverse=True))
    groups = Table("Agent process groups",
                   (Column("GROUP"), Column("PROCESSES", right=True), Column("RSS", right=True),
                    Column("PEAK", right=True), Column("TREND"), Column("SLOPE", right=True)),
                   group_rows, "No agent process groups (the process collector is off, or no agent runs).")
    return containers, groups


# -- printing ----------------------------------------------------------------------------------


def plain(table: Table) -> str:
    """Aligned columns, two spaces apart; details indented under their row. No colour, no wrapping."""
    lines = [table.title]
    if not table.rows:
        lines.append(table.empty)
    else:
        texts = [[c.title for c in table.columns]] + [[cell.text for cell in row.cells] for row in table.rows]
        widths = [max(len(r[i]) for r in texts) for i in range(len(table.columns))]
        last = len(table.columns) - 1

        def line(cells: list[str]) -> str:
            out = [c.rjust(w) if col.right else (c if i == last else c.ljust(w))
                   for i, (c, w, col) in enumerate(zip(cells, widths, table.columns, strict=True))]
            return "  ".join(out).rstrip()

        lines.append(line(texts[0]))
        for row, cells in zip(table.rows, texts[1:], strict=True):
            lines.append(line(cells))
            lines.extend(f"    {d.text}" for d in row.details)
    lines.extend(table.notes)
    return "\n".join(lines) + "\n"


def _bar(cell: Cell) -> Text:
    text = Text()
    if cell.bar is not None:
        filled = round(max(0.0, cell.bar) * BAR_WIDTH)
        text.append("█" * filled, style=cell.style or "green")
        text.append("░" * (BAR_WIDTH - filled), style="dim")
        text.append(" ")
    text.append(cell.text, style=cell.style)
    return text


def rich_table(table: Table) -> RichTable:
    out = RichTable(title=Text(table.title, style="bold"), title_justify="left", box=box.SIMPLE_HEAD,
                    show_lines=any(r.details for r in table.rows), header_style="bold")
    for col in table.columns:
        out.add_column(col.title, justify="right" if col.right else "left", no_wrap=not col.wrap,
                       overflow="fold" if col.wrap else "ellipsis")
    for row in table.rows:
        cells = [_bar(c) for c in row.cells]
        if row.details:
            last = cells[-1]
            for d in row.details:
                last.append("\n")
                last.append(d.text, style=d.style)
        out.add_row(*cells)
    return out


def show(tables: list[Table], stream: TextIO, terminal: bool, width: int | None = None) -> None:
    """Print ``tables`` to ``stream``: rich on a terminal, plain text otherwise."""
    if not terminal:
        stream.write("\n".join(plain(t) for t in tables))
        return
    console = Console(file=stream, force_terminal=True, width=width, highlight=False, emoji=False)
    for i, t in enumerate(tables):
        if i:
            console.print()
        if t.rows:
            console.print(rich_table(t))
        else:
            console.print(Text(t.title, style="bold"))
            console.print(Text(t.empty, style="dim"))
        for note in t.notes:
            console.print(Text(note, style="dim"))

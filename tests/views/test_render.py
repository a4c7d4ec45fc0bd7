"""The renderers on schema-shaped answers: the page's elements and escaping, the terminal tables,
and the numbers as people read them."""

from __future__ import annotations

import io
import re

import pytest

from agentwatch.views import fmt, page, table
from agentwatch.views.model import parse_crashes, parse_health
from tests.views import dom, samples
from tests.views.samples import EVIL_NAME, EVIL_PROJECT, EVIL_SERVICE, MiB

SHOWN_NAME = "evil-\\x1b[31mred\\x1b[0m-1"  # the escape characters as visible text


def _page(health=None, crashes=None, **kw) -> tuple[int, dom.Node, str]:
    status, html = page.render(health or (200, samples.health()), crashes or (200, samples.crashes()), **kw)
    return status, dom.parse(html), html


def test_the_page_shows_bars_trends_crashes_and_scores():
    status, root, _ = _page(refresh_seconds=0.5, marks=(0.75, 0.85))
    assert status == 200
    assert root.find("meta").attrs == {"charset": "utf-8"}
    (refresh,) = [m for m in root.find_all("meta") if m.attrs.get("http-equiv") == "refresh"]
    assert refresh.attrs["content"] == "5"  # never faster than every 5 s
    rows = root.find_all("tr", "container")
    assert [r.find("div", "name").text for r in rows] == ["agents-worker-1", SHOWN_NAME, "agents-steady-1",
                                                         "agents-gone-1"]
    worker = rows[0]
    assert worker.attrs["data-threshold"] == "critical"
    assert worker.find("span", "pill").text == "55" and worker.find("span", "pill").attrs["class"] == "pill warn"
    bar = worker.find("svg", "bar")
    fill = bar.find_all("rect")[1]
    assert fill.attrs["fill"] == page.THRESHOLD_COLOURS["critical"]
    assert float(fill.attrs["width"]) == pytest.approx(59 / 64 * page.BAR_WIDTH, abs=0.1)
    assert [float(line.attrs["x1"]) for line in bar.find_all("line")] == [0.75 * page.BAR_WIDTH,
                                                                           0.85 * page.BAR_WIDTH]
    assert "59.0 MiB of 64.0 MiB (92%)" in worker.text and "▲ growing" in worker.text and "+1.2 MiB/s" in worker.text
    assert "4m" in [td.text for td in worker.find_all("td")]
    assert "memory \N{MINUS SIGN}45" in worker.text
    # unlimited: a grey bar against the host's memory, no threshold lines
    steady = rows[2].find("svg", "bar")
    assert steady.find_all("rect")[1].attrs["fill"] == page.UNLIMITED_COLOUR and not steady.find_all("line")
    assert "not running" in rows[3].text

    crash_rows = root.find_all("tr", "crash")
    assert [r.attrs["data-cause"] for r in crash_rows] == ["memory_leak", "error"]
    leak = crash_rows[0]
    assert "137 (SIGKILL)" in leak.text and "4m10s ago" in leak.text
    assert leak.find("ul", "patterns").text == "⟳ 3rd memory_leak crash of agents-worker-1 in 1h"
    assert [li.text for li in leak.find("ul", "advice").find_all("li")] == [
        "raise the memory limit from 64 MiB to 80 MiB (highest working set 63 MiB plus 25%)",
        "find the leak: the working set grew for 4m10s"]
    host = root.find("div", "host")
    assert host.find("svg", "ring").attrs["aria-label"] == "host score 82 of 100"
    assert "memory \N{MINUS SIGN}10 host memory 84% used (warning at 80%)" in host.text
    host_memory = [s for s in root.find_all("svg", "bar") if s.attrs["aria-label"].startswith("host memory ")]
    assert host_memory[0].attrs["aria-label"] == "host memory 84% used of 8.0 GiB"
    assert host_memory[0].find_all("rect")[1].attrs["fill"] == page.THRESHOLD_COLOURS["warning"]  # 84% >= 75%
    assert "claude-code" in root.find("table", "narrow").text


def test_untrusted_strings_stay_text():
    _, root, html = _page()
    assert "<script" not in html and "<img" not in html and 'id="pwned"' not in html and "\x1b" not in html
    assert not root.find_all("script") and not root.find_all("img")
    assert not [n for n in root.iter() if "onerror" in n.attrs or n.attrs.get("id") == "pwned"]
    evil_row = root.find_all("tr", "container")[1]
    assert evil_row.find("div", "muted").text == f"{EVIL_PROJECT} / {EVIL_SERVICE} · agent:local"
    assert evil_row.find("svg", "bar").attrs["aria-label"].startswith(f"{SHOWN_NAME}: ")
    crash = root.find_all("tr", "crash")[1]
    assert f"exited 1 ({EVIL_SERVICE})" in crash.text


def test_the_page_says_why_an_answer_is_missing():
    disabled = (503, {"error": "insights are disabled (insights.enabled: false)"})
    status, root, _ = _page(disabled, disabled)
    assert status == 503
    assert [s.text for s in root.find_all("section", "error")] == [
        "No insights: insights are disabled (insights.enabled: false)"]

    status, root, _ = _page(crashes=(200, {"generated_at": 1.0, "crashes": [{"id": "x"}]}))
    assert status == 500
    (error,) = root.find_all("section", "error")
    assert error.text.startswith("No crashes: the answer is not what the API documents: crashes.0.id: ")
    assert root.find_all("tr", "container"), "the health half still shows"


def test_an_empty_fleet_before_the_first_turn():
    status, root, _ = _page((200, {"generated_at": 1.0, "host": None, "containers": [], "process_groups": []}),
                            (200, {"generated_at": 1.0, "store": {"persistent": False}, "crashes": []}))
    assert status == 200
    text = root.text
    assert "No containers." in text and "No crashes recorded." in text and "kept in memory only" in text


def test_the_terminal_table_takes_no_markup_from_the_engine():
    out = io.StringIO()
    table.show([table.crashes_table(parse_crashes(samples.crashes()))], out, terminal=True, width=200)
    text = out.getvalue()
    assert "\x1b[" in text, "styled for a terminal"
    assert "[bold red]x[/]" in text, "rich markup in a label is printed, not applied"
    assert SHOWN_NAME in text and EVIL_NAME not in text

    out = io.StringIO()
    table.show(list(table.top_tables(parse_health(samples.health()))), out, terminal=True, width=200)
    assert "███████████░ 92%" in re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # 92% of a 12-cell bar


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"), (0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (61865984, "59.0 MiB"), (150 * MiB, "150 MiB"),
    (8 << 30, "8.0 GiB"), (-2 * MiB, "-2.0 MiB"), (float("nan"), "-"),
])
def test_size(value, text):
    assert fmt.size(value) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.4, "0s"), (59, "59s"), (60, "1m"), (250, "4m10s"), (3600, "1h"), (7500, "2h5m"),
    (90000, "1d1h"), (-5, "0s"),
])
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text


def test_rates_signals_and_clean_text():
    assert (fmt.rate(1258291.2), fmt.rate(-4096), fmt.rate(0), fmt.rate(None)) == ("+1.2 MiB/s", "-4.0 KiB/s",
                                                                                  "0 B/s", "-")
    assert (fmt.exit_text(137, 9), fmt.exit_text(1, None), fmt.exit_text(None, None)) == ("137 (SIGKILL)", "1", "-")
    assert fmt.exit_text(190, 62) == "190 (signal 62)"
    assert fmt.clean("a\x1b[2Jb\u202ec\nd") == "a\\x1b[2Jb\\u202ec\\x0ad"
    assert fmt.clean("x" * 300, 10) == "x" * 9 + "…"

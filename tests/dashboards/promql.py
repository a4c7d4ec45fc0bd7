"""Just enough PromQL to lint dashboard queries: selectors, their matchers, ranges and enclosing calls.

grafana/dashboard-linter walks the real PromQL AST; this walks tokens, which is enough for the
queries agentwatch writes (a test pins the tricky cases). Whether a query is valid PromQL at all
is proven in tests/e2e, where a real Prometheus evaluates every one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
MODIFIERS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                "topk", "quantile", "limitk", "limit_ratio"}
TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<brace>\{)
  | (?P<range>\[[^\]]*\])
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<space>\s+)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,])
""", re.VERBOSE)
MATCHER = re.compile(r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*(,|\})""")


class PromQLError(ValueError):
    """The text is not a query this lexer understands (unbalanced, unknown character)."""


@dataclass
class Selector:
    name: str
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)
    range: str | None = None
    #: The function whose parentheses directly enclose the selector (rate, increase, sum...), if any.
    function: str | None = None


def _matchers(text: str, pos: int) -> tuple[dict[str, tuple[str, str]], int]:
    """Parse ``{a="b", c=~"d"}`` starting after ``{``; return the matchers and the position after ``}``."""
    found: dict[str, tuple[str, str]] = {}
    if text[pos:].lstrip().startswith("}"):
        return found, text.index("}", pos) + 1
    while True:
        m = MATCHER.match(text, pos)
        if not m:
            raise PromQLError(f"bad matcher at {pos}: {text[pos:pos + 40]!r}")
        found[m.group(1)] = (m.group(2), m.group(3)[1:-1])
        pos = m.end()
        if m.group(4) == "}":
            return found, pos


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr``, with its matchers, its range and the call around it."""
    out: list[Selector] = []
    calls: list[str | None] = []  # one entry per open parenthesis: the function it belongs to
    previous: tuple[str, str] | None = None  # (kind, text) of the last significant token
    pending_aggregation: str | None = None
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"unexpected character at {pos}: {expr[pos:pos + 20]!r}")
        kind, text = m.lastgroup or "", m.group(0)
        pos = m.end()
        if kind == "space":
            continue
        if kind == "ident" and text in MODIFIERS:
            # a label list follows: by (a, b); skip it, remembering the aggregation it belongs to
            if previous and previous[0] == "ident" and previous[1] in AGGREGATIONS:
                pending_aggregation = previous[1]
            rest = expr[pos:]
            stripped = rest.lstrip()
            if stripped.startswith("("):
                pos += len(rest) - len(stripped)
                close = expr.index(")", pos)
                pos = close + 1
            previous = ("modifier", text)
            continue
        if kind == "open":
            if previous and previous[0] == "ident" and (previous[1] in AGGREGATIONS or _is_call(previous[1])):
                calls.append(previous[1])
            elif previous and previous[0] == "modifier" and pending_aggregation:
                calls.append(pending_aggregation)
                pending_aggregation = None
            else:
                calls.append(None)
            previous = ("open", text)
            continue
        if kind == "close":
            if not calls:
                raise PromQLError(f"unbalanced ) at {pos}")
            calls.pop()
            previous = ("close", text)
            continue
        if kind == "ident" and text not in KEYWORDS:
            after = expr[pos:].lstrip()
            if after.startswith("(") or text in AGGREGATIONS:
                previous = ("ident", text)
                continue
            selector = Selector(text, function=calls[-1] if calls else None)
            if after.startswith("{"):
                pos = expr.index("{", pos) + 1
                selector.matchers, pos = _matchers(expr, pos)
            after = expr[pos:].lstrip()
            if after.startswith("["):
                start = expr.index("[", pos)
                end = expr.index("]", start)
                selector.range, pos = expr[start + 1:end], end + 1
            out.append(selector)
            previous = ("selector", text)
            continue
        if kind == "brace":
            selector = Selector("", function=calls[-1] if calls else None)
            selector.matchers, pos = _matchers(expr, pos)
            out.append(selector)
            previous = ("selector", "")
            continue
        if kind == "range":
            raise PromQLError(f"a range without a selector at {pos}: {text}")
        previous = (kind, text)
    if calls:
        raise PromQLError("unbalanced (")
    return out


def _is_call(name: str) -> bool:
    return name not in KEYWORDS and name not in MODIFIERS


LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


def variable_selectors(query: str) -> tuple[list[Selector], str]:
    """The selectors and the label of a ``label_values(selector, label)`` variable query."""
    m = LABEL_VALUES.match(query.strip())
    if not m:
        raise PromQLError(f"not a label_values() query: {query!r}")
    return (selectors(m.group("selector")) if m.group("selector") else []), m.group("label")

"""Shared pieces of the rule tests: paths, the real binaries, the rules and a small PromQL reader."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "alert-rules"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
PROMTOOL_TESTS = sorted((RULES_DIR / "tests").glob("*.test.yml"))
AM_DIR = RULES_DIR / "alertmanager"
AM_TEMPLATE = AM_DIR / "alertmanager.yml.in"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def binary(name: str) -> str:
    """Path of a required tool; its absence is a failure, never a skip."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: the rule tests need the real binary (apt-get install prometheus)"
    return path


def run(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)


@cache
def groups() -> tuple[dict[str, Any], ...]:
    return tuple(g for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"])


def alerts() -> list[dict[str, Any]]:
    return [r for g in groups() for r in g["rules"] if "alert" in r]


def recordings() -> list[dict[str, Any]]:
    return [r for g in groups() for r in g["rules"] if "record" in r]


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str | None) -> float:
    """A Prometheus duration (``1h30m``) in seconds; None is 0."""
    if not duration:
        return 0.0
    return sum(int(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration))


# --- a small PromQL reader: enough to list the series and labels an expression uses -----------

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers that are not functions, keywords or labels."""
    text = _without_strings(expr)
    text = re.sub(r"\{[^}]*\}", " ", text)          # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)         # range and subquery durations
    text = _LABEL_LIST.sub(" ", text)               # by (...), on (...), group_left (...)
    names = set()
    for match in _IDENT.finditer(text):
        token = match.group(0)
        if token in KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(token)
    return names


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on, groups by or joins on."""
    text = _without_strings(expr)
    labels = {m for _, body in _SELECTOR.findall(text) for m in _MATCHER.findall(body)}
    for _, body in _LABEL_LIST.findall(text):
        labels |= {part.strip() for part in body.split(",") if part.strip()}
    return labels


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) for every selector with a name and matchers."""
    text = _without_strings(expr)
    return [(name, set(_MATCHER.findall(body))) for name, body in _SELECTOR.findall(text) if name]


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the headings of docs/runbooks.md."""
    anchors = set()
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors

"""The alert rules' thresholds, read from alert-rules/thresholds.yml (never copied into the dashboards).

A panel's orange and red lines are the numbers its alert fires at, so a fleet that tunes the
thresholds file and rebuilds gets dashboards that agree with its rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS_FILE = ROOT / "alert-rules" / "thresholds.yml"


class ThresholdsError(ValueError):
    """A threshold the dashboards need is missing or not of the expected type."""


@dataclass(frozen=True)
class Thresholds:
    """Typed access to the thresholds file; a missing or mistyped key fails the build loudly."""

    values: Mapping[str, Any]

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ThresholdsError(f"{key}: expected a number, got {value!r}")
        return float(value)

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise ThresholdsError(f"{key}: expected a non-empty string, got {value!r}")
        return value

    def has(self, key: str) -> bool:
        return key in self.values

    def runbook(self, alert: str = "") -> str:
        """The runbook URL the alert's ``runbook_url`` annotation uses (the file itself without an alert)."""
        base = self.text("runbook_base_url").rstrip("/")
        return f"{base}#{alert.lower()}" if alert else base

    def _get(self, key: str) -> Any:
        if key not in self.values:
            raise ThresholdsError(f"{key}: not in the thresholds file")
        return self.values[key]


def load(path: Path = THRESHOLDS_FILE, overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """The thresholds file, with ``overrides`` on top (the tests use them to prove nothing is hard-coded)."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ThresholdsError(f"{path}: expected a mapping of threshold names to values")
    return Thresholds({**data, **(overrides or {})})

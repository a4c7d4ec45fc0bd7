"""The shipped alert rules, rendered for the demo with short ``for:`` durations.

The shipped rules wait minutes before firing (``for: 5m``), which is right for a fleet and too
slow to watch. The demo renders them with ``alert-rules/generate.py`` and a thresholds override
that shortens only the durations its incident needs; the expressions are the shipped ones.

Where the rules come from: ``agentwatch/demo/alert-rules`` (package data; in the checkout a link
to ``alert-rules/``), then ``alert-rules/`` beside the source tree, or a directory given by the user.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml

PACKAGED = Path(__file__).resolve().parent / "alert-rules"
CHECKOUT = Path(__file__).resolve().parents[3] / "alert-rules"

#: What the demo shortens, when the shipped thresholds have the key and a longer value.
DEMO_DURATIONS = {
    "container_memory_warning_for": "10s",
    "container_memory_critical_for": "10s",
    "crash_loop_for": "10s",
    "retries_exhausted_for": "10s",
    "pool_exhausted_for": "10s",
    "oom_window": "1m",
    "crash_loop_window": "1m",
}


class RulesUnavailable(Exception):
    """No usable rules directory; the message says where it looked and what to pass."""


@dataclass
class DemoRules:
    source: Path
    files: list[Path]
    #: key -> (shipped value, demo value), for what was shortened.
    changed: dict[str, tuple[str, str]]


def find_rules_dir(explicit: Path | None = None) -> Path:
    """The first directory holding ``generate.py``, ``thresholds.yml`` and ``src/*.rules.yml.in``."""
    candidates = [explicit] if explicit is not None else [PACKAGED, CHECKOUT]
    for candidate in candidates:
        if (candidate / "generate.py").is_file() and (candidate / "thresholds.yml").is_file() \
                and any((candidate / "src").glob("*.rules.yml.in")):
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise RulesUnavailable(f"no alert rules found (looked in {looked}); pass --rules-dir with the alert-rules/ "
                           "directory of the agentwatch source")


def _generator(rules_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("agentwatch_demo_generate", rules_dir / "generate.py")
    if spec is None or spec.loader is None:
        raise RulesUnavailable(f"{rules_dir / 'generate.py'}: cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seconds(module: ModuleType, value: object) -> float:
    return float(module.duration_seconds(value)) if isinstance(value, str) else 0.0


def render_demo_rules(out_dir: Path, explicit: Path | None = None) -> DemoRules:
    """Write the demo's rule files into ``out_dir``; RulesUnavailable names the problem."""
    source = find_rules_dir(explicit)
    generate = _generator(source)
    try:
        shipped = yaml.safe_load((source / "thresholds.yml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RulesUnavailable(f"{source / 'thresholds.yml'}: cannot read: {exc}") from None
    changed = {key: (str(shipped[key]), short) for key, short in DEMO_DURATIONS.items()
               if key in shipped and _seconds(generate, shipped[key]) > _seconds(generate, short)}
    out_dir.mkdir(parents=True, exist_ok=True)
    override = out_dir / "demo-thresholds.yml"
    override.write_text(yaml.safe_dump({key: demo for key, (_, demo) in changed.items()}))
    try:
        outputs = generate.generate(override)
    except generate.ThresholdError as exc:
        raise RulesUnavailable(f"cannot render the rules: {exc}") from None
    files = []
    for name, text in sorted(outputs.items()):
        path = out_dir / name
        path.write_text(text)
        files.append(path)
    return DemoRules(source, files, changed)

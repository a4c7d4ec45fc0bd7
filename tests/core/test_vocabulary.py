"""Health and outcome words live in one small module that both the probe collector and the
instrumentation library import; the client library never reaches into a collector."""

from __future__ import annotations

import ast
from pathlib import Path

import agentwatch
from agentwatch import catalog, vocabulary
from agentwatch.collectors import probe_fields

PACKAGE = Path(agentwatch.__file__).parent


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_instrument_imports_no_collector():
    files = sorted((PACKAGE / "instrument").rglob("*.py"))
    assert files
    for path in files:
        bad = {m for m in imported_modules(path) if m.startswith("agentwatch.collectors")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_vocabulary_depends_on_nothing_of_agentwatch():
    assert not {m for m in imported_modules(Path(vocabulary.__file__)) if m.startswith("agentwatch")}


def test_health_words_map_onto_the_exported_states():
    words = {"ok": "healthy", "Degraded": "degraded", "DOWN": "unhealthy", "maybe": "unknown", True: "healthy"}
    for word, state in words.items():
        assert vocabulary.health_state(word) == state
        assert state in catalog.APP_HEALTH_STATES
    assert vocabulary.outcome_of("oom-killed") == "error" and "error" in vocabulary.OUTCOMES


def test_the_probe_fields_use_the_same_vocabulary():
    assert probe_fields.health_state is vocabulary.health_state
    assert probe_fields.outcome_of is vocabulary.outcome_of

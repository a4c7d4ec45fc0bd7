"""The benchmark and the tests share only ``agentwatch.local``: neither imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_test_imports_bench_and_no_bench_module_imports_tests() -> None:
    offenders = [str(p.relative_to(REPO)) for p in sorted((REPO / "tests").rglob("*.py"))
                 if "bench" in _imported_roots(p)]
    offenders += [str(p.relative_to(REPO)) for p in sorted((REPO / "bench").rglob("*.py"))
                  if "tests" in _imported_roots(p)]
    assert not offenders, offenders


def test_the_local_servers_package_does_not_import_pytest() -> None:
    local = REPO / "exporter" / "agentwatch" / "local"
    offenders = [p.name for p in sorted(local.glob("*.py")) if _imported_roots(p) & {"pytest", "tests", "bench"}]
    assert not offenders, offenders

"""The layout rules that keep the next checklist item cheap: the plugin never imports the
sandbox, a suite reaches the plugin through its public API and the target through a fixture,
and no module grows past one screenful of jobs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 450
# What a suite may import from the plugin: its public API and the probes.
SUITE_MAY_IMPORT = ("pytest_spark", "pytest_spark.probes")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["pytest_spark", "suites"])
def test_the_sandbox_is_imported_by_neither_the_plugin_nor_the_suites(folder: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            m for m in imported_modules(path) if m.startswith("spark_sandbox")
        )
        for path in python_files(folder)
    }
    assert {p: m for p, m in offenders.items() if m} == {}


def test_suites_use_the_plugins_public_api_only() -> None:
    private = {}
    for path in python_files("suites"):
        bad = sorted(
            m
            for m in imported_modules(path)
            if m.startswith("pytest_spark")
            and m != SUITE_MAY_IMPORT[0]
            and not m.startswith(SUITE_MAY_IMPORT[1])
        )
        if bad:
            private[str(path.relative_to(REPO))] = bad
    assert private == {}


@pytest.mark.parametrize("folder", ["pytest_spark", "spark_sandbox"])
def test_no_module_is_over_the_size_limit(folder: str) -> None:
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in python_files(folder)
    }
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}

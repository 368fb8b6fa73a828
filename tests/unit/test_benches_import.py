"""The benchmarks are scripts nobody runs every day: each must still import (a function they
call renamed, a module moved, fails here rather than on the day of a measurement), and none
may measure anything on import: it runs its `main` under `if __name__ == "__main__":`."""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
BENCHES = sorted(BENCH.glob("*.py"))
# What a module may do at its top level when imported: define, import, name constants.
DEFINITIONS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"


def _runs_on_import(node: ast.stmt) -> bool:
    """A top-level statement that does more than define: neither a docstring, nor the
    `sys.path` set-up of a script that imports its neighbours, nor the main guard."""
    if isinstance(node, DEFINITIONS):
        calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
        return any(isinstance(c.func, ast.Name) and c.func.id == "main" for c in calls)
    if isinstance(node, ast.Expr):
        docstring = isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        return not docstring and not ast.unparse(node.value).startswith("sys.path.insert(")
    return not _is_main_guard(node)


def test_there_are_benchmarks() -> None:
    assert len(BENCHES) >= 2, BENCH


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_a_benchmark_runs_only_as_a_script(path: Path) -> None:
    module = ast.parse(path.read_text(encoding="utf-8"), str(path))
    assert [n.lineno for n in module.body if _runs_on_import(n)] == []
    defines_main = any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "main"
        for n in module.body
    )
    if defines_main:
        assert any(_is_main_guard(n) for n in module.body), "main() without the main guard"


@pytest.fixture
def bench_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bench/ on sys.path, as when a benchmark runs (they import each other by name); the
    benchmarks' modules and the paths they add are gone afterwards."""
    monkeypatch.syspath_prepend(str(BENCH))  # sys.path is restored whole on undo
    names = {p.stem for p in BENCHES}
    before = {name: sys.modules[name] for name in names if name in sys.modules}
    yield
    for name in names:
        sys.modules.pop(name, None)
    sys.modules.update(before)


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
@pytest.mark.usefixtures("bench_imports")
def test_a_benchmark_imports(path: Path) -> None:
    body = ast.parse(path.read_text(encoding="utf-8"), str(path)).body
    assert not any(map(_runs_on_import, body)), "it would run on import: not imported"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up while defined
    spec.loader.exec_module(module)  # as `import`: __name__ is not "__main__"
    assert module.__name__ == path.stem

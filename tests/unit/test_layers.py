"""Imports run one way: no module of taskloom imports, at run time, one that imports it back.

A cycle makes import order matter and hides which module owns an idea; ``worker.py`` and
``instance_worker.py`` importing each other was one. The test walks every module's top-level imports
(``if TYPE_CHECKING:`` blocks and imports inside functions, which are for optional extras, left out) and
fails naming the modules of any cycle. A module's import of its own package (``taskloom.runtime.future``
importing from ``taskloom.runtime.control`` runs ``taskloom/runtime/__init__.py`` first) is how Python
imports packages, not a cycle of ours, and is left out too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import taskloom

PACKAGE = Path(taskloom.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_at_run_time(path: Path, modules: dict[str, Path]) -> set[str]:
    """The taskloom modules ``path`` imports when it is imported (with the packages they live in)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(statement, ast.ImportFrom) and statement.module and statement.module in modules:
                submodules = {f"{statement.module}.{alias.name}" for alias in statement.names} & modules.keys()
                found |= submodules or {statement.module}
            elif isinstance(statement, ast.Import):
                found |= {alias.name for alias in statement.names if alias.name in modules}
    with_packages = set(found)
    for name in found:
        parts = name.split(".")
        with_packages |= {".".join(parts[:k]) for k in range(2, len(parts))}
    return with_packages


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in graph.get(name, ()):
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        own_packages = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        graph[name] = imported_at_run_time(path, modules) - own_packages - {name, "taskloom"}
    return graph


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


def test_the_workers_of_executions_and_of_instances_do_not_import_each_other() -> None:
    graph = import_graph()
    assert "taskloom.instance_worker" not in graph["taskloom.worker"]
    assert "taskloom.worker" not in graph["taskloom.instance_worker"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

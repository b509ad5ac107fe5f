"""The import graph of our own packages, read from their source with `ast`.

For the layout tests. What counts as "module A imports module B":

- any ``import`` statement in A, at any depth: a function-level (lazy)
  import is a dependency all the same, it only runs later;
- except under ``if TYPE_CHECKING:``, which never runs (its ``else:`` does);
- ``from P import name`` is an import of the submodule ``P.name`` when that
  is a module, else of ``P`` itself; relative imports are resolved against
  A's package;
- the implicit import of B's parent packages (``import a.b.c`` runs
  ``a/__init__`` and ``a/b/__init__`` first) does not count: every module
  of a package would otherwise depend on its ``__init__``, and every
  ``__init__`` that re-exports its modules would sit on a cycle;
- only modules of the packages read are nodes: the stdlib and third-party
  imports are left out.

`Graph` maps each module to the modules it imports, each with the line of
its first import (for the failure message). `cycles` finds the strongly
connected components with Tarjan's algorithm: every import cycle lies in
one, and a component of more than one module (or a module importing
itself) holds at least one cycle; `cycle_through` names one of them.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path

__all__ = ["Graph", "cycle_through", "cycles", "describe_cycles", "import_graph", "modules_of"]

Graph = dict[str, dict[str, int]]  # module -> imported module -> line of the first import


def modules_of(package_dir: Path) -> dict[str, Path]:
    """Every module of the top-level package ``package_dir`` (its directory
    name is the package name), by dotted name; a package is its ``__init__``."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(package_dirs: Iterable[Path]) -> Graph:
    """The import graph of these top-level packages, taken together."""
    modules: dict[str, Path] = {}
    for package_dir in package_dirs:
        modules.update(modules_of(package_dir))
    graph: Graph = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", frozenset(modules))
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        graph[name] = visitor.imports
    return graph


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: frozenset[str]) -> None:
        self.imports: dict[str, int] = {}
        self._package = module if is_package else module.rpartition(".")[0]
        self._known = known

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node.module, node.level)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self._known else base, node.lineno)

    def _absolute(self, module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        parts = self._package.split(".")
        base = ".".join(parts[: len(parts) - (level - 1)])
        return f"{base}.{module}" if module else base

    def _add(self, target: str, line: int) -> None:
        if target in self._known:
            self.imports.setdefault(target, line)


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The strongly connected components that hold a cycle, each sorted, in
    sorted order (Tarjan's algorithm; the graphs here are small enough for
    its recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1 or node in graph.get(node, {}):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def cycle_through(graph: Mapping[str, Mapping[str, int]], component: list[str]) -> list[str]:
    """One shortest cycle from ``component[0]`` back to itself inside the
    component, as the modules along it (the first repeated at the end)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if target in members and target not in previous:
                previous[target] = node
                queue.append(target)
    raise ValueError(f"{component} holds no cycle through {start}")


def describe_cycles(graph: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Each cycle as ``a:12 -> b:30 -> a`` (module and the line where it
    imports the next), with the rest of its component when that is larger."""
    lines = []
    for component in cycles(graph):
        path = cycle_through(graph, component)
        steps = [f"{a}:{graph[a][b]}" for a, b in pairwise(path)]
        line = " -> ".join([*steps, path[-1]])
        others = sorted(set(component) - set(path))
        lines.append(line + (f" (same component: {', '.join(others)})" if others else ""))
    return lines

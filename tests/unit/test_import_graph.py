"""No import cycles in either package: every module can be imported on its own.

The graph is read from the installed sources with ``ast``: every ``import``
of a module of ``broadcast_domain`` or ``broadcast_adapters``, at module level
or inside a function (an import moved into a function to dodge a cycle is
still a cycle), except under ``if TYPE_CHECKING:``, which never runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import broadcast_adapters
import broadcast_domain

PACKAGES = (broadcast_domain, broadcast_adapters)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        assert package.__file__ is not None
        root = Path(package.__file__).parent
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports_in(child)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import mod`` imports the module; ``from mod import name`` the module.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            edges[name].update(t for t in targets if t in modules and t != name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_both_packages() -> None:
    """The check reads real modules: the composition root imports the gateway, the CLI
    imports the core."""
    edges = graph()
    assert (
        "broadcast_domain.application.gateway" in edges["broadcast_domain.application.components"]
    )
    assert any(t.startswith("broadcast_domain") for t in edges["broadcast_adapters.cli"])


def test_no_module_imports_another_in_a_cycle() -> None:
    """Every group of modules that import each other, directly or not, is a failure."""
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The finder itself: a -> b -> c -> a is one cycle, d alone is none."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(edges) == [["a", "b", "c"]]

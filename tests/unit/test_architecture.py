"""The import graph of micro/'s packages: no cycles, and the layering DESIGN.md draws.

The graph is built from the source with :mod:`ast`, one node per package or
top-level module of micro (``auth``, ``broker``, ``client``, ``context``,
``nats``, ``server``, ``transport``, ``registry``, ``store``, ``plugins``...),
with an edge for every ``import``/``from ... import`` of another one, at
module level and inside functions alike.

Two kinds of import are left out of the cycle check, and only of it:

- imports under ``if TYPE_CHECKING:``, which never run (the layering rules
  below count them: a type named across layers is a dependency too);
- ``micro/__init__.py``, the public face, which re-exports every package and
  is not a layer: its names are reached from below only for ``__version__``.

Backends that :mod:`micro.plugins` names as ``"module:attribute"`` strings are
found by URL at run time, the way third-party plugins are, and are no edge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import micro

ROOT = Path(micro.__file__).parent

#: (from, to) pairs that must not appear, TYPE_CHECKING imports included
FORBIDDEN = [
    ("transport", "server"),
    ("client", "broker"),
    ("broker", "client"),
    ("client", "auth"),
    ("auth", "client"),
    ("context", "auth"),
    ("nats", "broker"),
]


def _module_name(path: Path) -> tuple[list[str], bool]:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return parts, is_package


def _is_module(dotted: list[str]) -> bool:
    base = ROOT.parent.joinpath(*dotted)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def _imports(path: Path, *, type_checking: bool) -> Iterator[tuple[list[str], int]]:
    """The dotted micro modules ``path`` imports, with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = set() if type_checking else _type_checking_nodes(tree)
    name, is_package = _module_name(path)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split("."), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package else name[:-1]
                base = base[: len(base) - (node.level - 1)]
            else:
                base = []
            module = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                # ``from micro import context`` imports the module micro.context
                candidate = [*module, alias.name]
                yield (candidate if _is_module(candidate) else module), node.lineno


def import_graph(*, type_checking: bool = False) -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> where (``file:line``), for micro's packages."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts, _ = _module_name(path)
        if len(parts) < 2:
            continue  # micro/__init__.py: the public face, not a layer
        source = parts[1]
        for target, line in _imports(path, type_checking=type_checking):
            if len(target) < 2 or target[0] != "micro" or target[1] == source:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            graph.setdefault(source, {}).setdefault(target[1], []).append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    nodes = set(graph) | {t for targets in graph.values() for t in targets}
    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def _describe(graph: dict[str, dict[str, list[str]]], component: list[str]) -> str:
    members = set(component)
    lines = [
        f"  {source} -> {target}: {', '.join(graph[source][target][:3])}"
        for source in component
        for target in sorted(graph.get(source, {}))
        if target in members
    ]
    return " / ".join(component) + "\n" + "\n".join(lines)


def test_the_graph_sees_the_packages() -> None:
    graph = import_graph()
    assert {"client", "server", "broker", "registry", "transport"} <= set(graph)
    assert "registry" in graph["client"]
    assert "transport" in graph["server"]


def test_no_import_cycle_between_packages() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(graph, c) for c in found)


def test_the_layers_do_not_import_upwards() -> None:
    graph = import_graph(type_checking=True)
    wrong = [
        f"{source} imports {target}: {', '.join(graph[source][target])}"
        for source, target in FORBIDDEN
        if target in graph.get(source, {})
    ]
    assert not wrong, "\n".join(wrong)


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b": ["a.py:1"]}, "b": {"c": ["b.py:1"]}, "c": {"a": ["c.py:1"]}, "d": {}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": []}, "b": {}}) == []

"""The package's static import graph: dependencies point one way, private names stay private.

Read from the source with ``ast``: every import statement counts, at any depth (module level,
inside a function, under ``TYPE_CHECKING``), so a cycle cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dyce"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``dyce`` import statement in module ``name``: ``names`` are
    the names taken from it (empty for ``import module``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "dyce"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] == "dyce":
                found.append((source, [alias.name for alias in node.names]))
    return found


def dependencies(name: str) -> set[str]:
    """The ``dyce`` modules module ``name`` imports by name (a ``from package import module``
    counts the submodule; the parent packages Python initialises on the way are not edges)."""
    edges = set()
    for source, names in imports(name):
        submodules = [f"{source}.{item}" for item in names if f"{source}.{item}" in MODULES]
        edges.update(submodules)
        if len(submodules) < len(names) or not names:
            edges.add(source)
    edges.discard(name)
    return {edge for edge in edges if edge in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``a → … → a``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reads_every_kind_of_import():
    graph = {name: dependencies(name) for name in MODULES}
    assert "dyce.search.cuts" in graph["dyce.search.circular"]  # module level
    assert "dyce.records.recording" in graph["dyce.cli.record"]  # inside a function
    assert "dyce.search.methods" in graph["dyce.search"]  # a package re-exporting
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_inside_dyce():
    graph = {name: dependencies(name) for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_modules_private_names(name):
    private = []
    for source, names in imports(name):
        if source != name:
            private += [f"{source}.{item}" for item in names
                        if item.startswith("_") and not item.startswith("__")]
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):  # dyce.x._name reached through an imported module
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "dyce":
                private.append(".".join(["dyce", *reversed(chain)]))
    assert not private, f"{name} uses private names of other modules: {private}"

"""The files of the ``dyce`` package a module runs when it is imported, found without importing.

The workflow declares these files as inputs of each rule (``dyce workflow-info``), so that an
edit of a module reruns exactly the jobs whose command imports it. The closure is static: every
``import`` statement naming the package counts wherever it stands (module level, inside a
function, under ``if TYPE_CHECKING``), and is followed transitively.

- ``import dyce.a.b`` counts ``dyce/__init__.py``, ``dyce/a/__init__.py`` and ``dyce/a/b.py``
  (Python runs every parent package first).
- ``from dyce.a import b`` counts ``dyce.a`` (with its parents) and ``dyce/a/b.py`` when ``b``
  is a submodule; relative imports (``from . import x``) are resolved the same way.
- Imports by string (``importlib.import_module``) are not statements and do not count.

Only the standard library is used, so the answer comes without loading torch or polars.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["import_closure", "module_file"]


def module_file(package_dir: Path, module: str) -> Path | None:
    """The source file of ``module`` (dotted, starting with the package's name), or None.

    ``package_dir`` is the package's folder (its name is the package's name); a package module
    resolves to its ``__init__.py``.
    """
    parts = module.split(".")
    if parts[0] != package_dir.name:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def import_closure(package_dir: Path, modules: Iterable[str]) -> list[Path]:
    """Files of the package that importing ``modules`` runs, by the static rules above.

    Returns sorted paths inside ``package_dir``; a module name that has no source file is
    skipped.
    """
    package_dir = Path(package_dir)
    seen: set[Path] = set()
    pending = [name for module in modules for name in _with_parents(module)]
    while pending:
        path = module_file(package_dir, pending.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        pending += _imported_modules(package_dir, path)
    return sorted(seen)


def _module_name(package_dir: Path, path: Path) -> str:
    """Dotted name of the module in ``path`` (a package's ``__init__.py`` → the package)."""
    parts = path.relative_to(package_dir).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package_dir.name, *parts))


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` → ``a``, ``a.b``, ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imported_modules(package_dir: Path, path: Path) -> Iterator[str]:
    """Package modules named by the import statements of ``path`` (with their parents)."""
    name = _module_name(package_dir, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    root = package_dir.name
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == root or alias.name.startswith(root + "."):
                    yield from _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base != root and not base.startswith(root + "."):
                continue
            yield from _with_parents(base)
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}"

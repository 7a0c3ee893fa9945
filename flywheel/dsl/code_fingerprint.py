"""The code version of a component: its module and the project modules that module imports.

A component's outputs are cached under a key that includes the code that produced them. Hashing
the component's whole folder (what flywheel did before) made an edit to ``components/tune/``
invalidate ``ingest``'s cache too. This module hashes the code a component runs instead:

* its own module's source;
* every module it imports, at module level or lazily inside a function (``import x``,
  ``from x import y``, ``from . import y``, relative or absolute), found statically with ``ast``
  (nothing is imported to compute it), and followed transitively;
* but only *project* modules: those in the component's own top-level package (or, for a loose
  ``pipeline.py``-style file, the modules beside it) and flywheel's technique library
  (``flywheel.techniques``) and the models layer (``flywheel.models``), which components call into. Installed libraries (TensorFlow, TFDV)
  and flywheel's orchestration core are versioned by the package pins, not here.

The closure is computed on first use and kept per process: building a pipeline or compiling it
never parses sources it does not need.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
import sys
from typing import Iterator

# Layers inside flywheel whose code runs inside components (and so belongs in their key): the technique
# library and the models layer.
SHARED_PROJECT_PACKAGES = ("flywheel.techniques", "flywheel.models")


def module_fingerprint(module_name: str) -> str:
    """sha256 over the sources of ``module_name`` and the project modules it imports (transitively).

    A module whose source cannot be found (built from a string, a namespace without files) adds
    only its name.
    """
    digest = hashlib.sha256()
    for name, path in _closure(module_name):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(_file_hash(path).encode() if path else b"")
    return digest.hexdigest()


def project_modules(module_name: str) -> list[str]:
    """The module names ``module_fingerprint`` covers, sorted (for tests and `flywheel` diagnostics)."""
    return [name for name, _ in _closure(module_name)]


def imported_top_level_names(module_name: str) -> frozenset[str]:
    """Top-level names of everything ``module_name`` and the project modules it covers import,
    lazy imports included (``tensorflow`` for ``import tensorflow.keras``): what its code may load.
    The runner's warm parent reads it (``flywheel/runner/warm.py``)."""
    names: set[str] = set()
    for name, path in _closure(module_name):
        if path:
            names.update(imported.split(".")[0] for imported in _imports(path, name, _is_package(path)))
    return frozenset(names)


@functools.lru_cache(maxsize=256)
def _closure(module_name: str) -> tuple[tuple[str, str | None], ...]:
    root_path = _module_path(module_name)
    top = module_name.split(".")[0]
    # A loose file (a module outside any package, e.g. examples/my_pipeline.py) may import its
    # neighbours by plain name; those are project modules too.
    loose_dir = os.path.dirname(root_path) if root_path and "." not in module_name and not _is_package(root_path) else None

    # Inside flywheel itself, "own package" is the component's subpackage (flywheel.x), not all
    # of flywheel's orchestration core.
    own = ".".join(module_name.split(".")[:2]) if top == "flywheel" else top

    def is_project(name: str, path: str | None) -> bool:
        if name == own or name.startswith(own + "."):
            return True
        if any(name == p or name.startswith(p + ".") for p in SHARED_PROJECT_PACKAGES):
            return True
        return bool(loose_dir and path and "." not in name and os.path.dirname(path) == loose_dir)

    def _may_be_project(name: str) -> bool:
        return name == own or name.startswith(own + ".") or bool(loose_dir and "." not in name) or any(
            name == p or name.startswith(p + ".") for p in SHARED_PROJECT_PACKAGES
        )

    seen: dict[str, str | None] = {}
    # The module's parent packages run when it is imported: their __init__ is its code too.
    parts = module_name.split(".")
    pending = [module_name] + [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if is_project(p, None)]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_path(name)
        seen[name] = path
        if not path:
            continue
        for imported in _imports(path, name, _is_package(path)):
            parts = imported.split(".")
            for candidate in (".".join(parts[:i]) for i in range(len(parts), 0, -1)):
                # Names decide first (cheap); only a project name is looked up on disk. ``a.b.c``
                # may name a module or an attribute of module ``a.b``: the parents count too.
                if candidate in seen or not _may_be_project(candidate):
                    continue
                if is_project(candidate, _module_path(candidate)) and _module_path(candidate):
                    pending.append(candidate)
    return tuple(sorted(seen.items()))


def _is_package(path: str) -> bool:
    return os.path.basename(path) == "__init__.py"


@functools.lru_cache(maxsize=1024)
def _module_path(name: str) -> str | None:
    """The source file of module ``name``, found without importing anything (a package's
    ``__init__`` may import TensorFlow)."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None:
        parent, _, child = name.rpartition(".")
        if not parent:
            try:
                spec = importlib.util.find_spec(name)  # top level: imports nothing
            except (ImportError, ValueError, AttributeError):
                return None
            path = spec.origin if spec is not None and spec.has_location else None
        else:
            parent_module = sys.modules.get(parent)
            search = list(getattr(parent_module, "__path__", None) or [])
            if not search:
                parent_path = _module_path(parent)
                search = [os.path.dirname(parent_path)] if parent_path and _is_package(parent_path) else []
            for directory in search:
                for candidate in (os.path.join(directory, child + ".py"), os.path.join(directory, child, "__init__.py")):
                    if os.path.isfile(candidate):
                        path = candidate
                        break
                if path:
                    break
    return os.path.abspath(path) if path and path.endswith(".py") and os.path.isfile(path) else None


@functools.lru_cache(maxsize=1024)
def _file_hash(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones included (imports are statements; skipping expressions is
    most of the work saved over ``ast.walk``)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            nested = getattr(node, field, None)
            if isinstance(nested, list):
                yield from _statements(nested)


@functools.lru_cache(maxsize=1024)
def _imports(path: str, module_name: str, is_package: bool) -> tuple[str, ...]:
    """Absolute names of everything ``path`` imports, anywhere in the file (lazy imports included)."""
    try:
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return ()
    package = module_name if is_package else module_name.rpartition(".")[0]
    names: list[str] = []
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                if node.level - 1 > len(base_parts):
                    continue
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
                prefix = f"{base}.{node.module}" if node.module and base else (node.module or base)
            else:
                prefix = node.module or ""
            if not prefix:
                continue
            names.append(prefix)
            names.extend(f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*")
    return tuple(dict.fromkeys(names))

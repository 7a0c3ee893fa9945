"""What a task can import, read statically from the source: the third-party modules it reaches.

A module's whole import list overstates what one task imports (``features`` imports
pandas inside ``raw_inputs``, which ``infra_validate`` never calls), and its top-level imports
understate it (most heavy imports are lazy, inside functions). This walks by definition:

* importing a module runs its module-level code (decorators and defaults included, function
  bodies not) and its parent packages' ``__init__``;
* a function or class that is reached has its whole body read (every method of a class);
* reached code reaches the top-level functions and classes it names (not those it only imports): in its own module, imported
  by name (``from flywheel.x import f``, re-exports followed), or as an attribute of an imported
  module (``examples_io.head_table``);
* ``if TYPE_CHECKING:`` blocks never run.

Every import met on the way outside the packages in ``roots`` and the standard library is a
third-party module the task may import. Calls through values (a method of an object returned by
a function) are covered by reading whole classes; ``importlib.import_module`` of a computed name
is not seen: pass such modules as entries.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from typing import Iterable, Iterator

_MODULE = None  # the unit of a module's module-level code


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(roots: Iterable[ast.AST], *, module_level: bool) -> Iterator[ast.AST]:
    """The nodes that run: TYPE_CHECKING blocks left out, and at module level function bodies too."""
    stack = list(roots)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        elif module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend(node.decorator_list)
            stack.extend(d for d in (*node.args.defaults, *node.args.kw_defaults) if d is not None)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class _Module:
    def __init__(self, name: str, path: pathlib.Path) -> None:
        self.name = name
        self.package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.defs = {
            node.name: node
            for node in self.tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }


class ImportReach:
    """The third-party modules reached from entry points, through the packages under ``roots``.

    Args:
        roots: Package name -> its source directory, e.g. ``{"flywheel": repo / "flywheel",
            "flywheel.components": repo / "components"}`` (the longest matching name wins).
    """

    def __init__(self, roots: dict[str, pathlib.Path]) -> None:
        self.roots = dict(sorted(roots.items(), key=lambda kv: -len(kv[0])))
        self.modules: dict[str, _Module | None] = {}
        self.units: set[tuple[str, str | None]] = set()
        self.third_party: dict[str, set[str]] = {}  # imported module -> "module:unit" that imports it
        self._todo: list[tuple[str, str | None]] = []

    def _module(self, name: str) -> _Module | None:
        if name not in self.modules:
            self.modules[name] = None
            for prefix, directory in self.roots.items():
                if name == prefix or name.startswith(prefix + "."):
                    base = directory.joinpath(*name[len(prefix):].split(".")[1:])
                    for path in (base / "__init__.py", base.with_suffix(".py")):
                        if path.is_file():
                            self.modules[name] = _Module(name, path)
                            break
                    break
        return self.modules[name]

    def _ours(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self.roots)

    def add(self, module: str, *names: str) -> ImportReach:
        """Reaches ``module`` (importing it) and its top-level definitions ``names``; returns self."""
        self._reach_module(module)
        for name in names:
            self._reach_attribute(module, name)
        while self._todo:
            self._read(*self._todo.pop())
        return self

    def _reach_module(self, name: str) -> None:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            self._reach(".".join(parts[:end]), _MODULE)

    def _reach(self, module: str, unit: str | None) -> None:
        if (module, unit) not in self.units and self._module(module) is not None:
            self.units.add((module, unit))
            self._todo.append((module, unit))

    def _reach_attribute(self, module: str, attr: str, seen: frozenset[str] = frozenset()) -> None:
        """``module.attr``: a submodule, a definition, or a name ``module`` imports (a re-export)."""
        if self._module(f"{module}.{attr}") is not None:
            self._reach_module(f"{module}.{attr}")
            return
        found = self._module(module)
        if found is None or module in seen:
            return
        if attr in found.defs:
            self._reach(module, attr)
            return
        binding = self._bindings(found, found.tree.body, module_level=True).get(attr)
        if binding is not None and binding[1] is not None:
            self._reach_attribute(binding[0], binding[1], seen | {module})

    def _bindings(self, module: _Module, roots: Iterable[ast.AST], *, module_level: bool) -> dict:
        """Local name -> (module, None) for an imported module, (module, attr) for an imported name."""
        bound: dict[str, tuple[str, str | None]] = {}
        for node in _nodes(roots, module_level=module_level):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        bound[alias.asname] = (alias.name, None)
                    else:
                        bound[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(module, node)
                for alias in node.names:
                    if self._module(f"{source}.{alias.name}") is not None:
                        bound[alias.asname or alias.name] = (f"{source}.{alias.name}", None)
                    else:
                        bound[alias.asname or alias.name] = (source, alias.name)
        return bound

    @staticmethod
    def _absolute(module: _Module, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module.package.split(".")[: len(module.package.split(".")) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    def _read(self, module_name: str, unit: str | None) -> None:
        module = self._module(module_name)
        assert module is not None
        module_level = unit is _MODULE
        roots = module.tree.body if module_level else [module.defs[unit]]
        where = f"{module_name}:{unit or '<module>'}"
        scope = self._bindings(module, module.tree.body, module_level=True)
        local = {} if module_level else self._bindings(module, roots, module_level=False)
        bound = {**scope, **local}
        for node in _nodes(roots, module_level=module_level):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._imported(module, node, where)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id in module.defs and node.id != unit:
                    self._reach(module_name, node.id)
                elif node.id in bound and bound[node.id][1] is not None:
                    self._reach_attribute(*bound[node.id])
            elif isinstance(node, ast.Attribute):
                parts = _dotted(node)
                if parts and parts[0] in bound and bound[parts[0]][1] is None:
                    self._reach_dotted(bound[parts[0]][0], parts[1:])

    def _reach_dotted(self, module: str, attrs: list[str]) -> None:
        """``module.a.b...``: walks submodules, then reaches the first definition named."""
        for attr in attrs:
            if self._module(f"{module}.{attr}") is None:
                self._reach_attribute(module, attr)
                return
            module = f"{module}.{attr}"
            self._reach_module(module)

    def _imported(self, module: _Module, node: ast.Import | ast.ImportFrom, where: str) -> None:
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        else:
            source = self._absolute(module, node)
            targets = [(source, alias.name) for alias in node.names]
        for target, attr in targets:
            top = target.split(".")[0]
            if self._ours(target):
                # Importing runs the module (a submodule too); a definition imported by name is reached
                # where it is used, not where it is imported (a package's re-exports cost nothing).
                self._reach_module(target)
                if attr is not None and self._module(f"{target}.{attr}") is not None:
                    self._reach_module(f"{target}.{attr}")
            elif top not in sys.stdlib_module_names and top != "__future__":
                self.third_party.setdefault(target, set()).add(where)

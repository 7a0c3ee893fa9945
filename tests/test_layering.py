"""The layers of docs/architecture.md, checked on the imports of every module (lazy ones included)."""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> list[str]:
    """Absolute names every import statement of ``path`` names (relative ones resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def _modules(folder: str) -> list[pathlib.Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_nothing_in_flywheel_imports_a_private_component_module():
    offenders = {
        str(path.relative_to(REPO)): name
        for path in _modules("flywheel")
        for name in _imports(path)
        if name.startswith("flywheel.components._")
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("flywheel/models", ("flywheel.components", "flywheel.serving", "flywheel.monitoring", "flywheel.kubeflow",
                             "flywheel.runner", "flywheel.metadata", "flywheel.dashboard", "flywheel.cli")),
        ("flywheel/dsl", ("flywheel.runner", "flywheel.metadata", "flywheel.kubeflow", "flywheel.cli",
                          "flywheel.components")),
    ],
)
def test_a_lower_layer_imports_nothing_above_it(layer, forbidden):
    offenders = {
        str(path.relative_to(REPO)): name
        for path in _modules(layer)
        for name in _imports(path)
        if name.startswith(forbidden)
    }
    assert offenders == {}


def _defines_a_component(path: pathlib.Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Name) and target.id == "component":
                    return True
    return False


def test_components_live_in_public_modules():
    """The IR names a component by its module (``--component MODULE:NAME``) and pipelines import it:
    no ``@component`` in a private (``_``) module of components/."""
    private = [
        str(path.relative_to(REPO))
        for path in _modules("components")
        if any(part.startswith("_") and part != "__init__.py" for part in path.relative_to(REPO).parts)
        and _defines_a_component(path)
    ]
    assert private == []

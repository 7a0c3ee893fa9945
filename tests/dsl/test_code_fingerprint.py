"""A component's code fingerprint covers the code it runs: its module and the project modules it
imports (also lazily, also relatively), and nothing else of its folder."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from flywheel.dsl import code_fingerprint

COMPONENT = """
from flywheel import Dataset, Output, component
{imports}

@component
def {name}(out: Output[Dataset]) -> None:
    {body}
    with open(out.path("x.txt"), "w") as handle:
        handle.write("{name}")
"""


def _forget() -> None:
    for cached in (code_fingerprint._closure, code_fingerprint._module_path, code_fingerprint._file_hash, code_fingerprint._imports):
        cached.cache_clear()


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throwaway package on sys.path: first.py (imports _helper lazily, relatively), second.py
    (imports nothing of the project), _helper.py (imports _deep), _deep.py, unrelated.py."""
    name = f"fpkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text('"""A package."""\n')
    (root / "first.py").write_text(COMPONENT.format(
        imports="", name="first", body="from ._helper import shout\n    shout()"))
    (root / "second.py").write_text(COMPONENT.format(imports="import json", name="second", body="json.dumps(1)"))
    (root / "_helper.py").write_text(f"from {name} import _deep\n\ndef shout():\n    return _deep.VALUE\n")
    (root / "_deep.py").write_text("VALUE = 1\n")
    (root / "unrelated.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget()

    def load(module: str):
        _forget()
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        importlib.invalidate_caches()
        mod = importlib.import_module(f"{name}.{module}")
        return getattr(mod, module).code_fingerprint

    yield name, root, load
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    _forget()


def test_covers_the_module_and_what_it_imports_lazily_and_transitively(package):
    name, _, _ = package
    importlib.import_module(f"{name}.first")
    assert code_fingerprint.project_modules(f"{name}.first") == [name, f"{name}._deep", f"{name}._helper", f"{name}.first"]
    # json is an installed library, not project code; the sibling `unrelated` is not imported.
    assert code_fingerprint.project_modules(f"{name}.second") == [name, f"{name}.second"]


def test_an_edit_to_another_component_leaves_this_one_unchanged(package):
    _, root, load = package
    first, second = load("first"), load("second")
    (root / "second.py").write_text((root / "second.py").read_text() + "\n# edited\n")
    assert load("first") == first
    assert load("second") != second


@pytest.mark.parametrize("edited", ["_helper.py", "_deep.py", "first.py"])
def test_an_edit_to_code_the_component_runs_changes_it(package, edited):
    _, root, load = package
    before = load("first")
    (root / edited).write_text((root / edited).read_text() + "\n# edited\n")
    assert load("first") != before


def test_an_edit_to_a_module_nobody_imports_changes_nothing(package):
    _, root, load = package
    first, second = load("first"), load("second")
    (root / "unrelated.py").write_text("X = 2\n")
    assert (load("first"), load("second")) == (first, second)


def test_a_loose_pipeline_file_covers_its_neighbours(tmp_path, monkeypatch):
    folder = tmp_path / f"loose_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    module = f"mine_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(COMPONENT.format(imports=f"import {module}_util", name="mine", body="pass"))
    (folder / f"{module}_util.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(folder))
    _forget()
    try:
        importlib.import_module(module)
        assert code_fingerprint.project_modules(module) == [module, f"{module}_util"]
    finally:
        sys.modules.pop(module, None)
        sys.modules.pop(f"{module}_util", None)
        _forget()


def test_the_shipped_components_are_keyed_by_their_own_code():
    """ingest does not run tune's code, so tune's modules are not in ingest's key (an edit to
    tune keeps ingest's cache); train's techniques are in train's key."""
    from flywheel.components import ingest, train  # noqa: F401 - registers the modules

    ingest_modules = code_fingerprint.project_modules("flywheel.components.ingest")
    train_modules = code_fingerprint.project_modules("flywheel.components.train")
    assert "flywheel.components.ingest" in ingest_modules and "flywheel.components.ingest.stream" in ingest_modules
    assert not [m for m in ingest_modules if "tune" in m or "train" in m]
    assert "flywheel.models.layers" in train_modules
    assert any(m.startswith("flywheel.techniques.") for m in train_modules)
    assert not [m for m in train_modules if m.startswith("flywheel.") and m.split(".")[1] not in ("components", "techniques", "models")]
    # train reads tune's output through hyperparameters_io, not tune/: an edit to the search keeps
    # every trained model cached; tune itself runs train's data code, so train is in tune's key.
    assert "flywheel.components.hyperparameters_io" in train_modules
    assert not [m for m in train_modules if m.startswith("flywheel.components.tune")]
    tune_modules = code_fingerprint.project_modules("flywheel.components.tune")
    assert {"flywheel.components.tune.search", "flywheel.components.tune.objective"} <= set(tune_modules)


def test_an_edit_to_validates_severity_module_changes_validates_key_and_not_ingests(tmp_path, monkeypatch):
    """validate reaches its package's modules by lazy relative imports (``from . import severity``):
    they are validate's code. validate's modules are read from a copy of components/validate/ here,
    whose severity.py the test edits."""
    import flywheel.components.validate as validate_package

    validate_modules = code_fingerprint.project_modules("flywheel.components.validate")
    assert {"flywheel.components.validate.severity", "flywheel.components.validate.tfdv",
            "flywheel.components.validate.beam", "flywheel.components.validate.report"} <= set(validate_modules)
    assert not [m for m in code_fingerprint.project_modules("flywheel.components.ingest") if ".validate" in m]

    copy = tmp_path / "validate"
    shutil.copytree(os.path.dirname(validate_package.__file__), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(validate_package, "__path__", [str(copy)])
    for loaded in [m for m in sys.modules if m.startswith("flywheel.components.validate.")]:
        monkeypatch.delitem(sys.modules, loaded)
    try:
        _forget()
        validate_before = code_fingerprint.module_fingerprint("flywheel.components.validate")
        ingest_before = code_fingerprint.module_fingerprint("flywheel.components.ingest")
        with open(copy / "severity.py", "a", encoding="utf-8") as handle:
            handle.write("\nEDITED = True\n")
        _forget()
        assert code_fingerprint.module_fingerprint("flywheel.components.validate") != validate_before
        assert code_fingerprint.module_fingerprint("flywheel.components.ingest") == ingest_before
    finally:
        _forget()


def test_taking_a_fingerprint_imports_nothing_heavy():
    code = textwrap.dedent("""
        import sys
        from flywheel.components.train import train
        from flywheel.components.tune import tune
        assert train.code_fingerprint and tune.code_fingerprint != train.code_fingerprint
        heavy = [m for m in ("tensorflow", "pandas", "pyarrow", "apache_beam") if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_runner_reruns_only_the_component_whose_code_changed(package, home):
    """Two independent components in one package; after an edit to one, the other is a cache hit."""
    from flywheel import pipeline
    from flywheel.runner import LocalRunner

    name, root, load = package

    def build():
        load("first"), load("second")
        first = importlib.import_module(f"{name}.first").first
        second = importlib.import_module(f"{name}.second").second

        @pipeline(name="two")
        def two():
            first()
            second()

        return two

    runner = LocalRunner(home, max_workers=0)
    assert runner.run(build()).states == {"first": "COMPLETE", "second": "COMPLETE"}
    assert runner.run(build()).states == {"first": "CACHED", "second": "CACHED"}
    (root / "second.py").write_text((root / "second.py").read_text() + "\n# edited\n")
    assert runner.run(build()).states == {"first": "CACHED", "second": "COMPLETE"}
    (root / "_deep.py").write_text("VALUE = 2\n")
    assert runner.run(build()).states == {"first": "COMPLETE", "second": "CACHED"}

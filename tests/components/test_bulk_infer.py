"""bulk_infer: predictions equal the model's own, from a split or a path, with a run model or a registry version."""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pytest

try:
    from tests.components.model_fixtures import LABEL, run, small_penguin_model
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import LABEL, run, small_penguin_model

from flywheel.components import examples_io
from flywheel.components.bulk_infer import bulk_infer
from flywheel.components.evaluate import predict_proba
from flywheel.dsl.artifacts import InferenceResult, ModelBlessing
from flywheel.errors import FlywheelError, ParameterError
from flywheel.registry import ModelRegistry


@pytest.fixture(scope="module")
def penguin_model(tmp_path_factory):
    """(examples, model, own eval probabilities) of a small penguins model, trained once for this module."""
    from flywheel.models import layers as model_layers
    from flywheel.models import features

    root = tmp_path_factory.mktemp("bulk")
    examples, model = small_penguin_model(str(root / "examples"), str(root / "train"))
    spec = features.read_json(model.path(features.MODEL_JSON))
    frame = examples_io.read_split(examples, "eval")
    own = predict_proba(model_layers.load_model(model.path(features.MODEL_FILE)), frame, spec)
    return examples, model, own, spec["label_vocabulary"]


def _infer(tmp_path, inputs: dict, name="predictions", **params) -> InferenceResult:
    out = run(bulk_infer, inputs, {"predictions": InferenceResult(uri=str(tmp_path / name))}, **params)
    return out["predictions"]


def _read(result: InferenceResult) -> pd.DataFrame:
    shards = sorted(glob.glob(result.path("predictions-*.parquet")))
    return pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)


def test_scoring_a_split_in_small_batches_equals_the_models_own_predictions(penguin_model, tmp_path):
    examples, model, own, classes = penguin_model

    result = _infer(tmp_path, {"examples": examples, "model": model}, batch_size=16, rows_per_shard=40, model_name="pen")

    frame = _read(result)
    eval_rows = examples_io.read_split(examples, "eval")
    assert result.properties["rows"] == len(eval_rows) == len(frame)
    assert result.properties["shards"] == -(-len(eval_rows) // 40)  # shards hold at most rows_per_shard rows
    probabilities = frame[[f"probability_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probabilities, own, atol=1e-5)
    assert frame["predicted_class"].tolist() == [classes[i] for i in own.argmax(axis=1)]
    assert frame[LABEL].tolist() == eval_rows[LABEL].tolist()  # input columns kept, in order
    assert set(frame["model_name"]) == {"pen"} and frame["model_version"].isna().all()


def test_a_registry_version_scores_a_csv_path_by_alias_and_by_number(penguin_model, tmp_path):
    examples, model, own, classes = penguin_model
    registry = ModelRegistry(str(tmp_path / "registry"))
    registry.set_serving("pen", registry.push("pen", model.uri).version)
    csv = tmp_path / "rows.csv"
    examples_io.read_split(examples, "eval").to_csv(csv, index=False)

    by_alias = _infer(tmp_path, {}, "a", data_path=str(csv), registry=registry.root, model_name="pen",
                      version="serving", keep_columns=[], batch_size=25)
    by_number = _infer(tmp_path, {}, "b", data_path=str(tmp_path), registry=registry.root, model_name="pen",
                       version="1", keep_columns=["island"])

    for result in (by_alias, by_number):
        frame = _read(result)
        np.testing.assert_allclose(frame[[f"probability_{c}" for c in classes]].to_numpy(), own, atol=1e-5)
        assert set(frame["model_version"]) == {1} and result.properties["model_version"] == 1
    assert "island" not in _read(by_alias).columns and "island" in _read(by_number).columns


def test_an_unblessed_run_model_scores_nothing_and_says_why(penguin_model, tmp_path):
    examples, model, _, _ = penguin_model
    refused = ModelBlessing(uri=str(tmp_path / "b"), properties={"blessed": False, "reasons": ["accuracy 0.3 is below"]})

    result = _infer(tmp_path, {"examples": examples, "model": model, "blessing": refused})

    assert result.properties["inferred"] is False
    assert "accuracy 0.3 is below" in result.properties["reason"]
    assert glob.glob(result.path("*.parquet")) == []


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"model_name": "nope", "version": "1"}, FlywheelError, "has no model 'nope'; models there: \\['pen'\\]"),
        ({"model_name": "pen", "version": "7"}, FlywheelError, "has no version 7 .*versions there: \\[1\\]"),
        ({"model_name": "pen", "version": "serving"}, FlywheelError, "no serving alias"),
        ({"model_name": "pen", "version": "newest"}, ParameterError, "must be a version number, 'serving' or 'latest'"),
        ({}, ParameterError, "exactly one model"),
    ],
)
def test_bad_model_references_are_refused_naming_the_fix(penguin_model, tmp_path, params, error, message):
    examples, model, _, _ = penguin_model
    registry = ModelRegistry(str(tmp_path / "registry"))
    registry.push("pen", model.uri)  # version 1, no serving alias

    with pytest.raises(error, match=message):
        _infer(tmp_path, {"examples": examples}, registry=registry.root, **params)


def test_both_data_sources_or_a_path_with_no_data_are_refused(penguin_model, tmp_path):
    examples, model, _, _ = penguin_model

    with pytest.raises(ParameterError, match="exactly one data source.*Got both"):
        _infer(tmp_path, {"examples": examples, "model": model}, data_path=str(tmp_path))
    with pytest.raises(FlywheelError, match="found no data at 'data_path'"):
        _infer(tmp_path, {"model": model}, "p2", data_path=str(tmp_path / "empty"))


def test_chunks_whose_inferred_types_differ_still_write_one_schema(penguin_model, tmp_path):
    """A CSV chunk of only missing 'sex' values, or of whole-number masses, must not change the shard's schema."""
    examples, model, own, classes = penguin_model
    frame = examples_io.read_split(examples, "eval")
    frame.loc[:15, "sex"] = None
    frame.loc[:15, "body_mass_g"] = frame.loc[:15, "body_mass_g"].fillna(4000).round()
    frame.loc[16:, "body_mass_g"] = frame.loc[16:, "body_mass_g"] + 0.5
    csv = tmp_path / "mixed.csv"
    frame.to_csv(csv, index=False)

    result = _infer(tmp_path, {"model": model}, data_path=str(csv), batch_size=16, model_name="pen")

    written = _read(result)
    assert len(written) == len(frame) and result.properties["shards"] == 1
    assert written["sex"][:16].isna().all() and written["sex"][16:].notna().any()
    assert written["body_mass_g"].dtype == "float64" and written["body_mass_g"].iloc[20] % 1 == 0.5


def test_a_kept_column_that_changes_type_between_chunks_is_a_clear_error(penguin_model, tmp_path):
    examples, model, _, _ = penguin_model
    frame = examples_io.read_split(examples, "eval")
    frame["note"] = ["1"] * 16 + ["late"] * (len(frame) - 16)  # read as numbers in the first chunk only
    csv = tmp_path / "notes.csv"
    frame.to_csv(csv, index=False)

    with pytest.raises(FlywheelError, match=r"\['note'\] change type after row 16 .*leave them out with keep_columns"):
        _infer(tmp_path, {"model": model}, data_path=str(csv), batch_size=16, model_name="pen")

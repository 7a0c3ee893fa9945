"""transform: preprocessing fitted on the train split only, saved as a loadable Keras model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

try:
    from tests.components.model_fixtures import penguins_frame, run, write_examples
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import penguins_frame, run, write_examples

from flywheel.models import features
from flywheel.models import layers as model_layers
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import Schema, TransformGraph
from flywheel.errors import FlywheelError, ParameterError


@pytest.fixture
def shifted_examples(tmp_path):
    """Penguins whose eval split is shifted and has an island train never saw."""
    frame = penguins_frame()
    train, evaluation = frame.iloc[86:].copy(), frame.iloc[:86].copy()
    evaluation["bill_length_mm"] += 100.0
    evaluation["island"] = "Atlantis"
    return write_examples(str(tmp_path / "ex"), {"train": train, "eval": evaluation}), train


def _transform(examples, tmp_path, **params):
    outputs = {"transform_graph": TransformGraph(uri=str(tmp_path / "tg"))}
    out = run(transform, {"examples": examples}, outputs, **params)
    graph = out["transform_graph"]
    return graph, features.read_json(graph.path(features.TRANSFORM_JSON))


def test_fits_on_the_train_split_only(shifted_examples, tmp_path):
    examples, train = shifted_examples
    graph, spec = _transform(examples, tmp_path)

    bill = spec["features"]["bill_length_mm"]
    assert bill["mean"] == pytest.approx(train["bill_length_mm"].mean())
    assert bill["variance"] == pytest.approx(train["bill_length_mm"].var(ddof=0))
    assert "Atlantis" not in spec["features"]["island"]["vocabulary"]
    assert set(spec["features"]["island"]["vocabulary"]) == set(train["island"].dropna())
    # The saved Normalization layer carries the same train constants.
    preprocess = model_layers.load_model(graph.path(features.PREPROCESS_FILE))
    layer = preprocess.get_layer("bill_length_mm_normalize")
    assert float(np.ravel(layer.mean)[0]) == pytest.approx(train["bill_length_mm"].mean(), rel=1e-5)
    assert spec["fitted_on"] == {"split": "train", "rows": len(train)}


def test_properties_and_label_vocabulary(shifted_examples, tmp_path):
    examples, train = shifted_examples
    graph, spec = _transform(examples, tmp_path)

    assert graph.properties["label"] == "species"
    assert graph.properties["label_vocabulary"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert graph.properties["numeric_features"] == [
        "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"
    ]
    assert graph.properties["categorical_features"] == ["island", "sex"]
    assert spec["label_vocabulary"] == sorted(train["species"].unique())
    with open(graph.path(features.TRANSFORM_JSON)) as f:
        assert json.load(f)["label"] == "species"


def test_missing_values_are_imputed_flagged_and_sent_to_oov(shifted_examples, tmp_path):
    examples, train = shifted_examples
    graph, spec = _transform(examples, tmp_path)
    preprocess = model_layers.load_model(graph.path(features.PREPROCESS_FILE))
    rows = train.head(2).copy()
    rows.loc[rows.index[0], "bill_length_mm"] = np.nan
    rows.loc[rows.index[0], "island"] = None

    vectors = np.asarray(preprocess(features.raw_inputs(rows, spec)))

    # Layout: per numeric feature [normalized, missing flag], then one-hot blocks (OOV slot first).
    assert vectors.shape == (2, graph.properties["output_dim"])
    assert vectors[0, 0] == pytest.approx(0.0, abs=1e-6)  # imputed with the train mean -> normalized 0
    assert vectors[0, 1] == 1.0 and vectors[1, 1] == 0.0
    island_start = 2 * len(spec["numeric_features"])
    island_block = vectors[:, island_start:island_start + 1 + len(spec["features"]["island"]["vocabulary"])]
    assert island_block[0].tolist() == [1.0] + [0.0] * (island_block.shape[1] - 1)  # OOV
    assert island_block[1, 0] == 0.0 and island_block[1].sum() == 1.0


def test_schema_decides_which_columns_are_strings(shifted_examples, tmp_path):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    examples, _ = shifted_examples
    proto = schema_pb2.Schema()
    for name, kind in [("bill_length_mm", schema_pb2.FLOAT), ("year", schema_pb2.BYTES), ("island", schema_pb2.BYTES),
                       ("species", schema_pb2.BYTES)]:
        proto.feature.add(name=name, type=kind)
    schema_dir = tmp_path / "schema"
    schema_dir.mkdir()
    (schema_dir / "schema.pbtxt").write_text(text_format.MessageToString(proto))

    out = run(
        transform,
        {"examples": examples, "schema": Schema(uri=str(schema_dir))},
        {"transform_graph": TransformGraph(uri=str(tmp_path / "tg"))},
    )

    props = out["transform_graph"].properties
    assert props["numeric_features"] == ["bill_length_mm"]
    assert props["categorical_features"] == ["island", "year"]


def test_errors_say_what_is_wrong(shifted_examples, tmp_path):
    examples, _ = shifted_examples
    with pytest.raises(ParameterError, match="exclude_features"):
        _transform(examples, tmp_path, exclude_features=["no_such_column"])
    examples.properties["label"] = ""
    with pytest.raises(FlywheelError, match="No label column"):
        _transform(examples, tmp_path)
    assert not os.path.exists(tmp_path / "tg" / features.TRANSFORM_JSON)

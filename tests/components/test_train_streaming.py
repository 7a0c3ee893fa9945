"""train streams a large tabular train split through tf.data (flywheel.models.data) instead of loading it."""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    from tests.components.model_fixtures import penguin_examples, penguins_frame, transform_and_train, write_examples
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import penguin_examples, penguins_frame, transform_and_train, write_examples

from flywheel.components import examples_io
from flywheel.components import train as train_module
from flywheel.models import data, features
from flywheel.models import layers as model_layers


@pytest.fixture
def streaming(monkeypatch):
    """Every train split counts as large, and the in-memory path would fail the test if taken."""
    monkeypatch.setattr(train_module, "STREAM_ROWS", 10)

    def in_memory(*args, **kwargs):
        raise AssertionError("train loaded the split in memory")

    monkeypatch.setattr(train_module, "training_data", in_memory)


def _accuracy(examples, model) -> float:
    spec = features.read_json(model.path(features.MODEL_JSON))
    frame = examples_io.read_split(examples, "eval")
    proba = model_layers.load_model(model.path(features.MODEL_FILE)).predict(features.raw_inputs(frame, spec), verbose=0)
    predicted = np.asarray(spec["label_vocabulary"])[np.asarray(proba).argmax(1)]
    return float((predicted == frame["species"].to_numpy()).mean())


def test_a_small_split_keeps_the_in_memory_path(tmp_path):
    examples = penguin_examples(str(tmp_path / "ex"))
    spec = {"label": "species", "label_vocabulary": [], "numeric_features": [], "categorical_features": []}
    assert train_module.STREAM_ROWS >= 100_000
    assert train_module.streamed_training_data(examples, spec, 0.2, 0) is None


def test_a_streamed_split_trains_as_well_with_a_hash_holdout_and_the_same_losses_for_a_seed(tmp_path, streaming):
    examples = penguin_examples(str(tmp_path / "ex"))
    rows = len(examples_io.read_split(examples, "train"))
    _, model = transform_and_train(examples, str(tmp_path / "a"), class_weights="balanced")
    assert _accuracy(examples, model) >= 0.93
    fit_rows, val_rows = model.properties["train_rows"], model.properties["validation_rows"]
    assert fit_rows + val_rows == rows and 0.12 < val_rows / rows < 0.28
    held = data.hash_fraction(np.arange(rows), 0) < 0.2
    assert val_rows == int(held.sum())

    tiny = dict(epochs=2, early_stopping_patience=0, seed=3)
    _, first = transform_and_train(examples, str(tmp_path / "b"), **tiny)
    _, second = transform_and_train(examples, str(tmp_path / "c"), **tiny)

    def losses(m):
        with open(m.path("history.json")) as f:
            return json.load(f)["history"]["loss"]

    assert losses(first) == losses(second) and len(losses(first)) == 2


def test_a_validation_split_is_streamed_as_it_is(tmp_path, streaming):
    frame = penguins_frame()
    examples = write_examples(
        str(tmp_path / "ex"), {"train": frame.iloc[120:], "validation": frame.iloc[60:120], "eval": frame.iloc[:60]}
    )
    _, model = transform_and_train(examples, str(tmp_path / "m"), epochs=3, early_stopping_patience=0)
    assert model.properties["validation_rows"] == 60 and model.properties["train_rows"] == len(frame) - 120
    assert len(json.load(open(model.path("history.json")))["history"]["val_loss"]) == 3

"""train: raw features in, no training/serving skew, safe loading, SavedModel, diagnosis, losses."""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    from tests.components.model_fixtures import imbalanced_examples, penguin_examples, transform_and_train
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import imbalanced_examples, penguin_examples, transform_and_train

from flywheel.components.train import diagnosis
from flywheel.models import features
from flywheel.components import examples_io
from flywheel.models import layers as model_layers
from flywheel.models.fit import balanced_class_weights
from flywheel.errors import ParameterError


@pytest.fixture(scope="module")
def penguins_model(tmp_path_factory):
    """Penguins trained once with the component's defaults (training is the slow part)."""
    root = tmp_path_factory.mktemp("penguins")
    examples = penguin_examples(str(root / "ex"))
    graph, model = transform_and_train(examples, str(root))
    return examples, graph, model


def _eval_inputs(examples, spec, rows=None):
    frame = examples_io.read_split(examples, "eval")
    if rows is not None:
        frame = frame.head(rows)
    return frame, features.raw_inputs(frame, spec)


def test_defaults_reach_095_on_penguins_eval(penguins_model):
    examples, _, model = penguins_model
    spec = features.read_json(model.path(features.MODEL_JSON))
    frame, inputs = _eval_inputs(examples, spec)
    net = model_layers.load_model(model.path(features.MODEL_FILE))

    predicted = np.asarray(net.predict(inputs, verbose=0)).argmax(axis=1)
    truth = features.encode_labels(frame["species"], spec["label_vocabulary"])

    assert (predicted == truth).mean() >= 0.95
    props = model.properties
    assert props["final_val_accuracy"] >= 0.9
    assert 1 <= props["best_epoch"] <= props["epochs_run"] <= 100  # train's defaults: at most 100 epochs
    # Early stopping (patience 5) ends a run 5 epochs after its best one, unless the epoch limit came first.
    assert props["epochs_run"] == 100 or props["best_epoch"] == props["epochs_run"] - 5
    assert props["parameters"] > 0
    assert props["diagnosis"] in ("fine", "over-fitting", "under-fitting")


def test_model_loads_with_safe_mode(penguins_model):
    import keras

    examples, _, model = penguins_model
    model_layers.custom_objects()  # registration is all a safe_mode load needs
    net = keras.saving.load_model(model.path(features.MODEL_FILE), safe_mode=True)
    spec = features.read_json(model.path(features.MODEL_JSON))
    _, inputs = _eval_inputs(examples, spec, rows=5)

    probabilities = np.asarray(net.predict(inputs, verbose=0))
    assert probabilities.shape == (5, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert not any(type(layer).__name__ == "Lambda" for layer in net._flatten_layers())


def test_raw_feature_predictions_equal_separate_preprocessing_then_model(penguins_model):
    """No training/serving skew: the embedded preprocessing is exactly the transform output."""
    examples, graph, model = penguins_model
    spec = features.read_json(graph.path(features.TRANSFORM_JSON))
    _, inputs = _eval_inputs(examples, spec)
    inputs["bill_length_mm"][0] = np.nan  # missing values take the same path too
    inputs["island"][1] = ""
    net = model_layers.load_model(model.path(features.MODEL_FILE))
    preprocess = model_layers.load_model(graph.path(features.PREPROCESS_FILE))

    end_to_end = np.asarray(net.predict(inputs, verbose=0))
    x = preprocess(inputs)
    for layer in net.layers:
        if layer.name.startswith(("hidden_", "dropout_", "probabilities")):
            x = layer(x, training=False)

    assert np.allclose(end_to_end, np.asarray(x), atol=1e-6)


def test_saved_model_signature_takes_raw_features(penguins_model):
    import tensorflow as tf

    examples, _, model = penguins_model
    spec = features.read_json(model.path(features.MODEL_JSON))
    _, inputs = _eval_inputs(examples, spec, rows=6)
    inputs["bill_length_mm"][0] = np.nan  # a missing number, as serving would pass it
    inputs["sex"][1] = ""  # a missing string
    loaded = tf.saved_model.load(model.path(features.SERVING_DIR))
    serve = loaded.signatures["serving_default"]

    assert set(serve.structured_input_signature[1]) == set(features.feature_names(spec))
    served = serve(**{name: tf.constant(value) for name, value in inputs.items()})["probabilities"].numpy()
    keras_side = np.asarray(model_layers.load_model(model.path(features.MODEL_FILE)).predict(inputs, verbose=0))

    assert np.all(np.isfinite(served))
    assert np.allclose(served, keras_side, atol=1e-5)


def test_learning_curve_history_and_contract_are_written(penguins_model):
    _, graph, model = penguins_model
    with open(model.path("learning_curve.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(model.path("history.json")) as f:
        history = json.load(f)
    assert len(history["history"]["loss"]) == model.properties["epochs_run"]
    assert history["diagnosis"] == model.properties["diagnosis"]
    contract = features.read_json(model.path(features.MODEL_JSON))
    assert contract["label_vocabulary"] == graph.properties["label_vocabulary"]
    assert contract["output"] == "probabilities"


def _history(loss, val_loss, acc, val_acc):
    return {"loss": loss, "val_loss": val_loss, "accuracy": acc, "val_accuracy": val_acc}


def test_diagnosis_rule_on_synthetic_histories():
    fine = _history([0.9, 0.5, 0.3, 0.2], [0.9, 0.55, 0.35, 0.3], [0.6, 0.8, 0.9, 0.95], [0.6, 0.78, 0.88, 0.92])
    gap = _history([0.9, 0.3, 0.1, 0.05], [0.9, 0.6, 0.6, 0.6], [0.6, 0.9, 0.98, 1.0], [0.6, 0.8, 0.82, 0.83])
    rising = _history(
        [0.8, 0.5, 0.3, 0.2, 0.15, 0.1, 0.05], [0.8, 0.5, 0.4, 0.45, 0.5, 0.55, 0.6],
        [0.7, 0.8, 0.9, 0.92, 0.94, 0.95, 0.96], [0.7, 0.8, 0.9, 0.9, 0.9, 0.89, 0.9],
    )
    under = _history([1.1, 1.05, 1.0], [1.1, 1.06, 1.02], [0.4, 0.45, 0.5], [0.4, 0.42, 0.48])
    tiny_rise = _history([0.1, 0.05, 0.04, 0.03], [0.001, 0.001, 0.003, 0.008], [1.0] * 4, [1.0] * 4)

    assert diagnosis.diagnose(fine).verdict == diagnosis.FINE
    assert diagnosis.diagnose(gap).verdict == diagnosis.OVER_FITTING
    assert "exceeds validation accuracy" in diagnosis.diagnose(gap).detail
    assert diagnosis.diagnose(rising).verdict == diagnosis.OVER_FITTING
    assert "validation loss rose" in diagnosis.diagnose(rising).detail
    assert diagnosis.diagnose(under).verdict == diagnosis.UNDER_FITTING
    assert diagnosis.diagnose(tiny_rise).verdict == diagnosis.FINE  # 8x relative, but 0.007 absolute: noise
    assert diagnosis.diagnose(rising, window=1).verdict == diagnosis.FINE  # last epoch alone: 0.05 rise < 10%
    with pytest.raises(ValueError, match="val_loss"):
        diagnosis.diagnose({"loss": [1.0], "accuracy": [0.5]})


def test_focal_loss_matches_its_formula_and_round_trips():
    import keras

    loss = model_layers.layer("SparseCategoricalFocalCrossentropy", gamma=2.0, alpha=1.0)
    labels = np.array([0, 2, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], dtype="float32")
    p_true = probs[np.arange(3), labels]
    expected = np.mean(-((1 - p_true) ** 2) * np.log(p_true))

    assert float(loss(labels, probs)) == pytest.approx(expected, rel=1e-4)
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    assert float(loss(labels, probs)) < float(plain)  # easy examples are down-weighted
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert float(restored(labels, probs)) == pytest.approx(expected, rel=1e-4)


def test_balanced_class_weights_follow_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    ours = balanced_class_weights(labels, 3)
    theirs = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert [ours[c] for c in range(3)] == pytest.approx(list(theirs))


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    return imbalanced_examples(str(tmp_path_factory.mktemp("imb") / "ex"))


def _minority_recall(examples, root, **params):
    _, model = transform_and_train(
        examples, root, epochs=25, early_stopping_patience=0, hidden_units=[8], dropout=0.0, **params
    )
    spec = features.read_json(model.path(features.MODEL_JSON))
    frame = examples_io.read_split(examples, "eval")
    net = model_layers.load_model(model.path(features.MODEL_FILE))
    probabilities = np.asarray(net.predict(features.raw_inputs(frame, spec), verbose=0))
    predicted = np.asarray(spec["label_vocabulary"])[probabilities.argmax(1)]
    rare = frame["y"].to_numpy() == "rare"
    return float((predicted[rare] == "rare").mean()), probabilities, model


def test_class_weights_and_focal_loss_change_training(imbalanced, tmp_path):
    plain, plain_proba, _ = _minority_recall(imbalanced, str(tmp_path / "plain"))
    balanced, balanced_proba, _ = _minority_recall(imbalanced, str(tmp_path / "balanced"), class_weights="balanced")
    focal, focal_proba, focal_model = _minority_recall(
        imbalanced, str(tmp_path / "focal"), loss="focal", focal_gamma=2.0, class_weights="balanced"
    )

    assert plain < 0.3  # 5% minority: plain cross-entropy mostly predicts the majority
    assert balanced > plain + 0.3
    assert focal > plain + 0.3
    assert np.abs(focal_proba - balanced_proba).max() > 1e-2  # same data and seed, other loss: other model
    assert focal_model.properties["loss"] == "focal"
    # A model compiled with the custom loss still loads in safe mode.
    model_layers.load_model(focal_model.path(features.MODEL_FILE))


def test_parameters_are_checked(penguins_model, tmp_path):
    examples, _, _ = penguins_model
    with pytest.raises(ParameterError, match="'loss' parameter of train"):
        transform_and_train(examples, str(tmp_path), loss="hinge")
    with pytest.raises(ParameterError, match="'hidden_units'"):
        transform_and_train(examples, str(tmp_path / "b"), hidden_units=[0])


def test_same_seed_same_training(penguins_model, tmp_path):
    examples, _, _ = penguins_model
    tiny = dict(epochs=3, early_stopping_patience=0, seed=7)
    _, first = transform_and_train(examples, str(tmp_path / "a"), **tiny)
    _, second = transform_and_train(examples, str(tmp_path / "b"), **tiny)
    _, other = transform_and_train(examples, str(tmp_path / "c"), **{**tiny, "seed": 8})

    def losses(model):
        with open(model.path("history.json")) as f:
            return json.load(f)["history"]["loss"]

    assert losses(first) == losses(second)
    assert losses(first) != losses(other)

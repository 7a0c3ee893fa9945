"""train: a Keras 3 classifier with the fitted preprocessing inside it.

The model is ``raw feature dict -> preprocess (from transform) -> Dense layers
-> softmax``, so it takes raw features everywhere. Written to ``model.uri``:

* ``model.keras``: the Keras model (load with ``safe_mode=True`` through
  ``flywheel.components._model_layers.load_model``);
* ``serving/``: a SavedModel for TF Serving whose ``serving_default`` signature
  takes one 1-D tensor per raw feature and returns ``probabilities``;
* ``model.json``: the feature contract (``transform.json``) plus the output name;
* ``history.json``, ``learning_curve.png`` and a one-line diagnosis
  (``_model_diagnosis`` holds the rule).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flywheel.dsl.artifacts import Examples, Model, TransformGraph
from flywheel.dsl.component import Input, Output, component
from flywheel.errors import ParameterError

from flywheel.components import _model_diagnosis, examples_io
from flywheel.components import _model_features as features

OUTPUT_NAME = "probabilities"
LOSSES = ("crossentropy", "focal")
CLASS_WEIGHTS = ("none", "balanced")


@component
def train(
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    model: Output[Model],
    hidden_units: list = [16, 8],  # noqa: B006 - component defaults are recorded, never mutated
    dropout: float = 0.1,
    learning_rate: float = 0.01,
    epochs: int = 100,
    batch_size: int = 32,
    early_stopping_patience: int = 5,
    class_weights: str = "none",
    loss: str = "crossentropy",
    focal_gamma: float = 2.0,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> None:
    """Trains a small dense classifier on the train split, with early stopping.

    Validation data for early stopping and the learning curve is the
    ``validation`` split when the Examples have one, else a stratified
    ``validation_fraction`` of the train split; the ``eval`` split is never
    touched (it belongs to ``evaluate``).

    Args:
        examples: Examples with a ``train`` split (and optionally ``validation``).
        transform_graph: Output of ``transform``.
        model: Receives the model files (see the module docstring).
        hidden_units: Sizes of the hidden Dense layers (ReLU).
        dropout: Dropout rate after each hidden layer (0 disables it).
        learning_rate: Adam learning rate.
        epochs: Most epochs to train.
        batch_size: Examples per gradient step.
        early_stopping_patience: Epochs without validation-loss improvement
            before stopping; the best epoch's weights are kept. 0 disables it.
        class_weights: ``"none"`` or ``"balanced"`` (weight n / (k * n_class)).
        loss: ``"crossentropy"`` or ``"focal"`` (sparse categorical focal loss).
        focal_gamma: Focusing parameter of the focal loss.
        validation_fraction: Share of train held out when there is no
            ``validation`` split.
        seed: Seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``).

    Raises:
        ParameterError: a parameter is out of range.
    """
    _check_parameters(
        hidden_units=hidden_units,
        dropout=dropout,
        learning_rate=learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        early_stopping_patience=early_stopping_patience,
        class_weights=class_weights,
        loss=loss,
        focal_gamma=focal_gamma,
        validation_fraction=validation_fraction,
    )
    import keras

    from flywheel.components import _model_layers

    keras.utils.set_random_seed(seed)
    spec = features.read_json(transform_graph.path(features.TRANSFORM_JSON))
    vocabulary = spec["label_vocabulary"]
    train_frame, val_frame = _train_validation(examples, spec["label"], validation_fraction, seed)
    x_train = features.raw_inputs(train_frame, spec)
    y_train = features.encode_labels(train_frame[spec["label"]], vocabulary)
    x_val = features.raw_inputs(val_frame, spec)
    y_val = features.encode_labels(val_frame[spec["label"]], vocabulary)

    preprocess = _model_layers.load_model(transform_graph.path(features.PREPROCESS_FILE))
    net = build_model(
        spec, preprocess, hidden_units=[int(u) for u in hidden_units], dropout=dropout, n_classes=len(vocabulary)
    )
    net.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=_loss(loss, focal_gamma),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    callbacks = []
    stopper = None
    if early_stopping_patience > 0:
        stopper = keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=early_stopping_patience,
                min_delta=1e-3,  # gains below this are noise on a near-zero loss; they should not extend training
                restore_best_weights=True,
            )
        callbacks.append(stopper)
    weights = balanced_class_weights(y_train, len(vocabulary)) if class_weights == "balanced" else None
    started = time.perf_counter()
    fitted = net.fit(
        _dataset(x_train, y_train, batch_size, shuffle_seed=seed),
        validation_data=_dataset(x_val, y_val, batch_size),
        epochs=epochs,
        class_weight=weights,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=0,
    )
    fit_seconds = time.perf_counter() - started
    history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
    epochs_run = len(history["loss"])
    # The epoch whose weights were kept: EarlyStopping restores its best epoch (counted from 0) at the end.
    best_epoch = epochs_run if stopper is None else int(stopper.best_epoch) + 1
    diagnosis = _model_diagnosis.diagnose(history)
    if best_epoch < epochs_run:
        diagnosis = _model_diagnosis.Diagnosis(
            diagnosis.verdict, f"{diagnosis.detail} (early stopping kept epoch {best_epoch} of {epochs_run})"
        )
    final_train = net.evaluate(_dataset(x_train, y_train, 256), verbose=0, return_dict=True)
    final_val = net.evaluate(_dataset(x_val, y_val, 256), verbose=0, return_dict=True)

    net.save(model.path(features.MODEL_FILE))
    export_serving(net, spec, model.path(features.SERVING_DIR))
    contract = {**spec, "output": OUTPUT_NAME, "signature": "serving_default"}
    features.write_json(model.path(features.MODEL_JSON), contract)
    features.write_json(
        model.path("history.json"),
        {"history": history, "best_epoch": best_epoch, "diagnosis": diagnosis.verdict, "detail": diagnosis.detail},
    )
    _model_diagnosis.plot_learning_curve(
        history,
        model.path("learning_curve.png"),
        title=f"diagnosis: {diagnosis.verdict} (kept epoch {best_epoch} of {epochs_run})",
        best_epoch=best_epoch,
    )
    model.properties.update(
        {
            "diagnosis": diagnosis.verdict,
            "diagnosis_detail": diagnosis.detail,
            "final_train_accuracy": float(final_train["accuracy"]),
            "final_val_accuracy": float(final_val["accuracy"]),
            "final_train_loss": float(final_train["loss"]),
            "final_val_loss": float(final_val["loss"]),
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "parameters": int(net.count_params()),
            "fit_seconds": round(fit_seconds, 3),
            "label": spec["label"],
            "label_vocabulary": vocabulary,
            "train_rows": int(len(train_frame)),
            "validation_rows": int(len(val_frame)),
            "loss": loss,
            "class_weights": class_weights,
            "framework": f"keras {keras.__version__}",
        }
    )


def _check_parameters(**values: Any) -> None:
    def fail(name: str, rule: str) -> None:
        raise ParameterError(f"The '{name}' parameter of train must be {rule}. Got {values[name]!r} instead.")

    units = values["hidden_units"]
    if not all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in units):
        fail("hidden_units", "a list of positive ints (e.g. [16, 8])")
    if not 0.0 <= values["dropout"] < 1.0:
        fail("dropout", "in [0, 1)")
    if values["learning_rate"] <= 0:
        fail("learning_rate", "> 0")
    if values["epochs"] < 1:
        fail("epochs", ">= 1")
    if values["batch_size"] < 1:
        fail("batch_size", ">= 1")
    if values["early_stopping_patience"] < 0:
        fail("early_stopping_patience", ">= 0")
    if values["class_weights"] not in CLASS_WEIGHTS:
        fail("class_weights", f"one of {CLASS_WEIGHTS}")
    if values["loss"] not in LOSSES:
        fail("loss", f"one of {LOSSES}")
    if values["focal_gamma"] < 0:
        fail("focal_gamma", ">= 0")
    if not 0.0 < values["validation_fraction"] < 1.0:
        fail("validation_fraction", "in (0, 1)")


def _train_validation(examples: Examples, label: str, fraction: float, seed: int) -> tuple[Any, Any]:
    """(train, validation) frames: the ``validation`` split if present, else a stratified hold-out."""
    train_frame = examples_io.read_split(examples, "train")
    if "validation" in examples_io.split_names(examples):
        return train_frame, examples_io.read_split(examples, "validation")
    from sklearn.model_selection import train_test_split

    counts = train_frame[label].value_counts()
    # Stratify only when every class can appear on both sides.
    stratify = train_frame[label] if len(counts) > 1 and counts.min() >= 2 else None
    fit_part, val_part = train_test_split(train_frame, test_size=fraction, random_state=seed, stratify=stratify)
    return fit_part, val_part


def _dataset(inputs: dict[str, Any], labels: Any, batch_size: int, shuffle_seed: int | None = None) -> Any:
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size)


def _loss(name: str, gamma: float) -> Any:
    import keras

    from flywheel.components import _model_layers

    if name == "focal":
        # alpha=1: class balancing is the job of class_weights; focal only down-weights easy examples.
        return _model_layers.layer("SparseCategoricalFocalCrossentropy", gamma=gamma, alpha=1.0)
    return keras.losses.SparseCategoricalCrossentropy()


def balanced_class_weights(labels: Any, n_classes: int) -> dict[int, float]:
    """sklearn's "balanced" weights: n_samples / (n_classes * count); absent classes get 1.0."""
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    total = counts.sum()
    return {c: float(total / (n_classes * counts[c])) if counts[c] else 1.0 for c in range(n_classes)}


def build_model(
    spec: dict[str, Any], preprocess: Any, *, hidden_units: list[int], dropout: float, n_classes: int
) -> Any:
    """Raw feature inputs -> the fitted preprocessing -> Dense layers -> softmax over classes."""
    import keras

    preprocess.trainable = False
    inputs = {
        name: keras.Input(shape=(), dtype=spec["features"][name]["dtype"], name=name)
        for name in features.feature_names(spec)
    }
    x = preprocess(inputs)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    output = keras.layers.Dense(n_classes, activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs=inputs, outputs=output, name="classifier")


def export_serving(net: Any, spec: dict[str, Any], path: str) -> None:
    """Exports a SavedModel whose ``serving_default`` takes raw features, returns ``probabilities``."""
    import keras
    import tensorflow as tf

    signature = {
        name: tf.TensorSpec(shape=(None,), dtype=tf.string if info["dtype"] == "string" else tf.float32, name=name)
        for name, info in spec["features"].items()
    }

    def serve(raw_features: dict[str, Any]) -> dict[str, Any]:
        return {OUTPUT_NAME: net(raw_features, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[signature])
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    archive.write_out(path, verbose=False)

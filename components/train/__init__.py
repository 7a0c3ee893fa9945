"""train: a Keras 3 classifier with the fitted preprocessing inside it.

The model is ``raw feature dict -> preprocess (from transform) -> Dense layers
-> softmax``, so it takes raw features everywhere. Written to ``model.uri``:

* ``model.keras``: the Keras model (load with ``safe_mode=True`` through
  ``flywheel.models.layers.load_model``);
* ``serving/``: a SavedModel for TF Serving whose ``serving_default`` signature
  takes one 1-D tensor per raw feature and returns ``probabilities``;
* ``model.json``: the feature contract (``transform.json``) plus the output name;
* ``history.json``, ``learning_curve.png`` and a one-line diagnosis
  (``train/diagnosis.py`` holds the rule).

Image Examples train a small CNN (``flywheel.models.images.build_cnn``) on raw pixels
with the fitted pixel scaling inside; the serving signature takes ``image``.
Options for images: mixup and RandAugment (Keras 3's layers, in the input
pipeline only). Options for both: class weights, focal loss, co-teaching
(two networks, ``flywheel.techniques.coteaching``) for noisy labels, and
knowledge distillation from a ``teacher`` Model (Hinton et al.,
``flywheel.techniques.distillation``). When ``transform`` resampled the train
split, the rows come from there.

The body is checks -> data (``training_data``) -> options (``fit_options``) -> the
models layer's fit loop (``flywheel.models.fit.fit``, which ``tune``'s trials and NAS
use too) -> ``write_trained_model``. Tuned ``hyperparameters`` are merged into the
parameter values before the options are made.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from flywheel.dsl.artifacts import Examples, HyperParameters, Model, TransformGraph
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval, Options, nonempty_positive_int_list, positive_int_list
from flywheel.errors import ParameterError

from flywheel.components import examples_io, hyperparameters_io
from flywheel.components.train import diagnosis as learning_curve
from flywheel.components.data import resampling, sanity
from flywheel.models import images as image_models
from flywheel.models import features
from flywheel.models.fit import CLASS_WEIGHTS, LOSSES

OUTPUT_NAME = "probabilities"


@component(resources={"cpu": "2", "memory": "4Gi", "cpu_limit": "4", "memory_limit": "8Gi"})
def train(
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    model: Output[Model],
    hidden_units: Annotated[list, positive_int_list] = [16, 8],  # noqa: B006 - component defaults are recorded, never mutated
    dropout: Annotated[float, Interval(float, 0, 1, closed="left")] = 0.1,
    learning_rate: Annotated[float, Interval(float, 0, None, closed="neither")] = 0.01,
    epochs: Annotated[int, Interval(int, 1, None)] = 100,
    batch_size: Annotated[int, Interval(int, 1, None)] = 32,
    early_stopping_patience: Annotated[int, Interval(int, 0, None)] = 5,
    class_weights: Annotated[str, Options(CLASS_WEIGHTS)] = "none",
    loss: Annotated[str, Options(LOSSES)] = "crossentropy",
    focal_gamma: Annotated[float, Interval(float, 0, None)] = 2.0,
    validation_fraction: Annotated[float, Interval(float, 0, 1, closed="neither")] = 0.2,
    seed: int = 0,
    architecture: str = "auto",
    conv_widths: Annotated[list, nonempty_positive_int_list] = [16, 32],  # noqa: B006
    mixup_alpha: Annotated[float, Interval(float, 0, None)] = 0.0,
    randaugment_n: Annotated[int, Interval(int, 0, None)] = 0,
    randaugment_m: Annotated[float, Interval(float, 0, 10)] = 5.0,
    coteaching: bool = False,
    forget_rate: Annotated[float, Interval(float, 0, 1, closed="left")] = 0.2,
    num_gradual: Annotated[int, Interval(int, 0, None)] = 10,
    teacher: Input[Model] = None,
    distill_temperature: Annotated[float, Interval(float, 0, None, closed="neither")] = 4.0,
    distill_alpha: Annotated[float, Interval(float, 0, 1)] = 0.1,
    hyperparameters: Input[HyperParameters] = None,
    min_class_examples: Annotated[int, Interval(int, 1, None)] = 5,
) -> None:
    """Trains a small dense classifier on the train split, with early stopping.

    Validation data for early stopping and the learning curve is the
    ``validation`` split when the Examples have one, else a stratified
    ``validation_fraction`` of the train split; the ``eval`` split is never
    touched (it belongs to ``evaluate``). Rows come from the transform graph's
    resampled split when ``transform`` resampled (``data/resampling.py``).

    Args:
        examples: Examples with a ``train`` split (and optionally ``validation``).
        transform_graph: Output of ``transform``.
        model: Receives the model files (see the module docstring).
        hidden_units: Sizes of the hidden Dense layers (ReLU); for images, the
            Dense head after the convolutions.
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
        architecture: ``"auto"`` (mlp for tables, cnn for images), ``"mlp"``, or for images only
            ``"cnn"``, ``"resnet"``, ``"efficientnet_b0"``, ``"vit"`` (``flywheel.models.families``).
        conv_widths: Images only: filters of the CNN's Conv2D blocks (ResNet: of its stages;
            ViT: ``len`` encoder blocks of width ``conv_widths[-1]``).
        mixup_alpha: Images only: mixup with Beta(alpha, alpha) weights; 0 disables it.
        randaugment_n: Images only: RandAugment's N (operations per batch); 0 disables it.
        randaugment_m: RandAugment's magnitude M in [0, 10].
        coteaching: Train two networks by co-teaching (for noisy labels);
            fixed ``epochs``, no early stopping; the network with the better
            validation accuracy is kept.
        forget_rate: Co-teaching's tau: the largest share of each batch dropped
            (set it to the expected noise rate).
        num_gradual: Co-teaching's T_k: epochs over which the drop share grows to tau.
        teacher: Optional trained Model (same label vocabulary and inputs) to
            distil from: the loss becomes ``distill_alpha * CE(hard labels) +
            (1 - distill_alpha) * T**2 * KL(teacher_T || student_T)``.
        distill_temperature: The distillation temperature T (> 0).
        distill_alpha: Weight of the hard-label term in [0, 1].
        hyperparameters: Optional output of ``tune``: its values override these parameters
            (recorded in the model property ``tuned_hyperparameters``).
        min_class_examples: Fewest rows each label class needs in every split of
            ``examples``; checked before training, with at least two classes per
            split (``data/sanity.py``).

    Raises:
        ParameterError: a parameter is out of range, or options that do not
            combine are combined (see ``_check_options``), or ``hyperparameters``
            names a parameter train does not have.
        DataSanityError: a split has fewer than two label classes, a class
            has fewer than ``min_class_examples`` rows in a split, or a split
            holds a class the train split lacks.
    """
    # The parameter values as given (first statement: locals() holds only the arguments here).
    given = {name: value for name, value in locals().items() if name in train.parameters}
    tuned = {}
    if hyperparameters is not None:  # tuned values override the ones given
        tuned = hyperparameters_io.overrides(hyperparameters, train.parameters)
        train.check_parameters(tuned)
    p = {**given, **tuned}

    import keras

    from flywheel.models import families as model_families
    from flywheel.models import fit as fit_loop
    from flywheel.models import layers as model_layers

    keras.utils.set_random_seed(p["seed"])
    spec = features.read_json(transform_graph.path(features.TRANSFORM_JSON))
    sanity.check_label_classes(
        sanity.label_counts(examples, spec["label"]),
        label=spec["label"],
        minimum=p["min_class_examples"],
        where=examples.uri,
    )
    image = image_models.is_image_spec(spec)
    _check_options(image, p["coteaching"], p["class_weights"], p["loss"], p["mixup_alpha"], p["randaugment_n"])
    if teacher is not None:
        _check_teacher(teacher, spec, p["coteaching"], p["class_weights"], p["loss"], p["mixup_alpha"])
    source = resampling.resampled_examples(transform_graph) or examples
    streamed = None if image or p["coteaching"] or teacher is not None else streamed_training_data(
        source, spec, p["validation_fraction"], p["seed"])
    if streamed is None:
        x_train, y_train, x_val, y_val = training_data(source, spec, p["validation_fraction"], p["seed"])
        fit_data, val_data, train_rows, validation_rows = (x_train, y_train), (x_val, y_val), len(y_train), len(y_val)
    else:  # batched tf.data streams over the shards; the fit loop takes them as they are
        fit_split, val_split = streamed
        fit_data, val_data = fit_split.dataset(p["batch_size"], p["seed"]), val_split.dataset(p["batch_size"])
        train_rows, validation_rows = len(fit_split), len(val_split)
    preprocess = model_layers.load_model(transform_graph.path(features.PREPROCESS_FILE))
    family = model_families.resolve_family(p["architecture"], image)
    options = fit_options(p, spec, teacher)

    def build() -> Any:
        return model_families.build_classifier(
            spec, preprocess, architecture=family, hidden_units=p["hidden_units"], conv_widths=p["conv_widths"],
            dropout=p["dropout"],
        )

    fitted = fit_loop.fit(build, fit_data, val_data, options)
    write_trained_model(
        model, fitted.net, spec, fitted.history, best_epoch=fitted.best_epoch,
        final_train=fitted.evaluate(fit_data), final_val=fitted.evaluate(val_data),
        fit_seconds=fitted.fit_seconds, train_rows=int(train_rows), validation_rows=int(validation_rows),
        properties={
            **_data_identity(examples),
            "loss": p["loss"],
            "class_weights": p["class_weights"],
            "architecture": family,
            "resampled": source is not examples,
            "mixup_alpha": p["mixup_alpha"],
            "randaugment": [p["randaugment_n"], p["randaugment_m"]] if p["randaugment_n"] else None,
            "coteaching": {"forget_rate": p["forget_rate"], "num_gradual": p["num_gradual"]} if p["coteaching"] else None,
            "distillation": (
                {"teacher_uri": teacher.uri, "temperature": p["distill_temperature"], "alpha": p["distill_alpha"]}
                if teacher is not None else None
            ),
        },
    )
    if hyperparameters is not None:
        model.properties.update({"tuned_hyperparameters": tuned, "hyperparameters_uri": hyperparameters.uri})


def fit_options(p: dict[str, Any], spec: dict[str, Any], teacher: Model | None = None) -> Any:
    """The ``flywheel.models.fit.FitOptions`` of train's parameter values ``p`` (all of them, by name)."""
    from flywheel.models import fit as fit_loop
    from flywheel.models import layers as model_layers

    distillation = None
    if teacher is not None:
        distillation = fit_loop.Distillation(
            model_layers.load_model(teacher.path(features.MODEL_FILE)), p["distill_temperature"], p["distill_alpha"]
        )
    augmentation = fit_loop.Augmentation()
    if image_models.is_image_spec(spec):
        augmentation = fit_loop.Augmentation(
            p["mixup_alpha"], p["randaugment_n"], p["randaugment_m"], value_range=(0.0, spec["pixel_max"])
        )
    return fit_loop.FitOptions(
        schedule=fit_loop.Schedule(
            epochs=p["epochs"], batch_size=p["batch_size"], early_stopping_patience=p["early_stopping_patience"],
            seed=p["seed"],
        ),
        optimizer=fit_loop.Optimizer(p["learning_rate"]),
        objective=fit_loop.Objective(p["loss"], p["focal_gamma"], p["class_weights"]),
        augmentation=augmentation,
        coteaching=fit_loop.CoTeachingOptions(p["forget_rate"], p["num_gradual"]) if p["coteaching"] else None,
        distillation=distillation,
    )


def write_trained_model(
    model: Model, net: Any, spec: dict[str, Any], history: dict[str, list[float]], *, best_epoch: int,
    final_train: dict[str, float], final_val: dict[str, float], fit_seconds: float, train_rows: int,
    validation_rows: int, properties: dict[str, Any],
) -> None:
    """Writes a fitted network as a Model artifact: the files and properties every consumer reads.

    ``model.keras``, the serving SavedModel, ``model.json`` (the feature
    contract), ``history.json`` with the fit diagnosis, ``learning_curve.png``
    and the common properties, plus ``properties``. ``train``,
    ``search_architecture`` and ``scale_model`` all write their models here, so
    ``evaluate``, ``push`` and serving take any of them.
    """
    import keras

    image = image_models.is_image_spec(spec)
    epochs_run = len(history["loss"])
    found = learning_curve.diagnose(history)
    if best_epoch < epochs_run:
        found = learning_curve.Diagnosis(
            found.verdict, f"{found.detail} (early stopping kept epoch {best_epoch} of {epochs_run})"
        )
    net.save(model.path(features.MODEL_FILE))
    if image:
        image_models.export_image_serving(net, spec, model.path(features.SERVING_DIR))
    else:
        export_serving(net, spec, model.path(features.SERVING_DIR))
    contract = {**spec, "output": OUTPUT_NAME, "signature": "serving_default"}
    features.write_json(model.path(features.MODEL_JSON), contract)
    features.write_json(
        model.path("history.json"),
        {"history": history, "best_epoch": best_epoch, "diagnosis": found.verdict, "detail": found.detail},
    )
    learning_curve.plot_learning_curve(
        history,
        model.path("learning_curve.png"),
        title=f"diagnosis: {found.verdict} (kept epoch {best_epoch} of {epochs_run})",
        best_epoch=best_epoch,
    )
    model.properties.update(
        {
            "diagnosis": found.verdict,
            "diagnosis_detail": found.detail,
            "final_train_accuracy": float(final_train["accuracy"]),
            "final_val_accuracy": float(final_val["accuracy"]),
            "final_train_loss": float(final_train["loss"]),
            "final_val_loss": float(final_val["loss"]),
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "parameters": int(net.count_params()),
            "fit_seconds": round(fit_seconds, 3),
            "label": spec["label"],
            "label_vocabulary": spec["label_vocabulary"],
            "train_rows": train_rows,
            "validation_rows": validation_rows,
            "modality": "image" if image else "table",
            "framework": f"keras {keras.__version__}",
            **properties,
        }
    )


def _data_identity(examples: Any) -> dict[str, Any]:
    """Which data (span, version, content hash, source) the model was trained on; push copies it to the registry."""
    source = examples.properties.get("data_source") or {}
    return {
        "data_span": examples.properties.get("span"),
        "data_version": examples.properties.get("version"),
        "data_sha256": source.get("sha256"),
        "data_uri": source.get("uri") or examples.properties.get("source"),
    }


def _check_teacher(
    teacher: Model, spec: dict[str, Any], coteaching: bool, class_weights: str, loss: str, mixup_alpha: float
) -> None:
    """Refuses a teacher with other classes or inputs, and distillation combined with other loss options."""
    if coteaching or class_weights != "none" or loss != "crossentropy" or mixup_alpha > 0:
        raise ParameterError(
            "The 'teacher' input of train (distillation) must come with loss='crossentropy', class_weights='none', "
            f"no co-teaching and no mixup (the distillation loss replaces them). Got loss={loss!r}, "
            f"class_weights={class_weights!r}, coteaching={coteaching!r}, mixup_alpha={mixup_alpha!r} instead."
        )
    contract = features.read_json(teacher.path(features.MODEL_JSON))
    mine = (spec["label_vocabulary"], spec.get("modality"), sorted(spec.get("features", {})))
    theirs = (contract["label_vocabulary"], contract.get("modality"), sorted(contract.get("features", {})))
    if mine != theirs:
        raise ParameterError(
            "The 'teacher' input of train must be a model of the same labels and inputs as the student. "
            f"Got a teacher with (labels, modality, features) {theirs} instead of {mine}."
        )


def _check_options(
    image: bool, coteaching: bool, class_weights: str, loss: str, mixup_alpha: float, randaugment_n: int
) -> None:
    """Refuses option combinations that have no meaning or are not built."""
    if not image and (mixup_alpha > 0 or randaugment_n > 0):
        raise ParameterError(
            "The 'mixup_alpha' and 'randaugment_n' parameters of train apply to image Examples only. "
            f"Got mixup_alpha={mixup_alpha!r}, randaugment_n={randaugment_n!r} for tabular data instead; set them to 0."
        )
    if coteaching and (class_weights != "none" or loss != "crossentropy" or mixup_alpha > 0 or randaugment_n > 0):
        raise ParameterError(
            "The 'coteaching' parameter of train must come with loss='crossentropy', class_weights='none' and no "
            f"augmentation (co-teaching ranks samples by plain cross-entropy). Got loss={loss!r}, "
            f"class_weights={class_weights!r}, mixup_alpha={mixup_alpha!r}, randaugment_n={randaugment_n!r} instead."
        )


def training_data(source: Examples, spec: dict[str, Any], fraction: float, seed: int) -> tuple[Any, Any, Any, Any]:
    """(x_train, y_train, x_val, y_val): the ``validation`` split if present, else a stratified hold-out.

    The data ``train`` fits on; ``tune`` trials and ``search_architecture`` read theirs here too.
    """
    label, vocabulary = spec["label"], spec["label_vocabulary"]
    image = image_models.is_image_spec(spec)

    def read(split: str) -> tuple[Any, Any]:
        if image:
            pixels, frame = examples_io.read_images(source, split)
            return image_models.pixels(pixels), features.encode_labels(frame[label], vocabulary)
        frame = examples_io.read_split(source, split)
        return frame, features.encode_labels(frame[label], vocabulary)

    x_all, y_all = read("train")
    if "validation" in examples_io.split_names(source):
        x_val, y_val = read("validation")
        fit_index = val_index = None
    else:
        fit_index, val_index = resampling.holdout_indices(y_all, fraction, seed)
        x_val, y_val = (x_all[val_index] if image else x_all.iloc[val_index]), y_all[val_index]
        x_all, y_all = (x_all[fit_index] if image else x_all.iloc[fit_index]), y_all[fit_index]
    if image:
        return x_all, y_all, x_val, y_val
    return features.raw_inputs(x_all, spec), y_all, features.raw_inputs(x_val, spec), y_val


# Tabular train splits with more rows than this (Parquet metadata) stream through tf.data instead of
# loading whole (flywheel.models.data); smaller ones keep the in-memory path, which is faster.
STREAM_ROWS = 500_000


def streamed_training_data(source: Examples, spec: dict[str, Any], fraction: float, seed: int) -> tuple[Any, ...] | None:
    """``training_data`` for a large tabular train split, as ``StreamSplit``s; None below ``STREAM_ROWS`` rows.

    ``(fit, validation)``: ``StreamSplit.dataset`` streams each as batches of (raw features, label ids) and
    ``len`` counts its rows in one pass over the labels. Without a
    ``validation`` split, the hold-out is the rows whose index hashes below ``fraction`` (not stratified; see
    ``flywheel.models.data``). Co-teaching and distillation keep the in-memory path.
    """
    from flywheel.models import data

    paths = examples_io.shard_paths(source, "train")
    if sum(data.shard_rows(paths)) <= STREAM_ROWS:
        return None
    if "validation" in examples_io.split_names(source):
        fit, val = data.StreamSplit(paths, spec), data.StreamSplit(examples_io.shard_paths(source, "validation"), spec)
    else:
        fit = data.StreamSplit(paths, spec, holdout=("drop", fraction, seed))
        val = data.StreamSplit(paths, spec, holdout=("keep", fraction, seed))
    return fit, val


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

"""train: a Keras 3 classifier with the fitted preprocessing inside it.

The model is ``raw feature dict -> preprocess (from transform) -> Dense layers
-> softmax``, so it takes raw features everywhere. Written to ``model.uri``:

* ``model.keras``: the Keras model (load with ``safe_mode=True`` through
  ``flywheel.models.layers.load_model``);
* ``serving/``: a SavedModel for TF Serving whose ``serving_default`` signature
  takes one 1-D tensor per raw feature and returns ``probabilities``;
* ``model.json``: the feature contract (``transform.json``) plus the output name;
* ``history.json``, ``learning_curve.png`` and a one-line diagnosis
  (``_model_diagnosis`` holds the rule).

Image Examples train a small CNN (``flywheel.models.images.build_cnn``) on raw pixels
with the fitted pixel scaling inside; the serving signature takes ``image``.
Options for images: mixup and RandAugment (Keras 3's layers, in the input
pipeline only). Options for both: class weights, focal loss, co-teaching
(two networks, ``flywheel.techniques.coteaching``) for noisy labels, and
knowledge distillation from a ``teacher`` Model (Hinton et al.,
``flywheel.techniques.distillation``). When ``transform`` resampled the train
split, the rows come from there.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from flywheel.dsl.artifacts import Examples, HyperParameters, Model, TransformGraph
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval, Options, nonempty_positive_int_list, positive_int_list
from flywheel.errors import ParameterError

from flywheel.components import _data_sanity, _model_diagnosis, _model_resample, _tune_space, examples_io
from flywheel.models import images as image_models
from flywheel.models import features

OUTPUT_NAME = "probabilities"
LOSSES = ("crossentropy", "focal")
CLASS_WEIGHTS = ("none", "balanced")


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
    resampled split when ``transform`` resampled (``_model_resample``).

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
            split (``_data_sanity``).

    Raises:
        ParameterError: a parameter is out of range, or options that do not
            combine are combined (see ``_check_options``), or ``hyperparameters``
            names a parameter train does not have.
        DataSanityError: a split has fewer than two label classes, a class
            has fewer than ``min_class_examples`` rows in a split, or a split
            holds a class the train split lacks.
    """
    if hyperparameters is not None:  # tuned values override the ones given; then train as usual
        given = {name: value for name, value in locals().items() if name in train.parameters}
        tuned = _tune_space.overrides(hyperparameters, train.parameters)
        train.check_parameters(tuned)
        train.fn(examples=examples, transform_graph=transform_graph, model=model, teacher=teacher, **{**given, **tuned})
        model.properties.update({"tuned_hyperparameters": tuned, "hyperparameters_uri": hyperparameters.uri})
        return
    import keras

    from flywheel.models import layers as model_layers

    keras.utils.set_random_seed(seed)
    spec = features.read_json(transform_graph.path(features.TRANSFORM_JSON))
    _data_sanity.check_label_classes(
        _data_sanity.label_counts(examples, spec["label"]),
        label=spec["label"],
        minimum=min_class_examples,
        where=examples.uri,
    )
    image = image_models.is_image_spec(spec)
    _check_options(image, coteaching, class_weights, loss, mixup_alpha, randaugment_n)
    if teacher is not None:
        _check_teacher(teacher, spec, coteaching, class_weights, loss, mixup_alpha)
    vocabulary = spec["label_vocabulary"]
    source = _model_resample.resampled_examples(transform_graph) or examples
    streamed = None if image or coteaching or teacher is not None else streamed_training_data(
        source, spec, validation_fraction, seed)
    x_train, y_train, x_val, y_val = streamed or training_data(source, spec, validation_fraction, seed)

    preprocess = model_layers.load_model(transform_graph.path(features.PREPROCESS_FILE))

    from flywheel.models import families as model_families

    family = model_families.resolve_family(architecture, image)

    def build() -> Any:
        return build_network(
            spec, preprocess, architecture=family, hidden_units=hidden_units, conv_widths=conv_widths, dropout=dropout
        )

    one_hot = mixup_alpha > 0
    stopper = None
    started = time.perf_counter()
    if coteaching:
        from flywheel.techniques.coteaching import CoTeaching

        coteacher = CoTeaching(
            build_network=build, forget_rate=forget_rate, num_gradual=num_gradual, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate, random_state=seed,
        ).fit(x_train, y_train, validation_data=(x_val, y_val))
        net = coteacher.networks_[coteacher.best_index_]
        net.compile(loss=_loss(loss, focal_gamma, one_hot=False), metrics=[_accuracy(False)])
        history = {key: list(values) for key, values in coteacher.history_.items()}
    else:
        net = build()
        fit_train, fit_val = y_train, y_val
        if teacher is not None:
            from flywheel.techniques import distillation

            teacher_net = model_layers.load_model(teacher.path(features.MODEL_FILE))
            fit_train = distillation.distillation_targets(y_train, teacher_net.predict(x_train, batch_size=1024, verbose=0))
            fit_val = distillation.distillation_targets(y_val, teacher_net.predict(x_val, batch_size=1024, verbose=0))
            net.compile(
                optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                loss=distillation.distillation_loss(float(distill_temperature), float(distill_alpha)),
                metrics=[keras.metrics.MeanMetricWrapper(distillation.hard_label_accuracy, name="accuracy")],
            )
        else:
            net.compile(
                optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                loss=_loss(loss, focal_gamma, one_hot=one_hot),
                metrics=[_accuracy(one_hot)],
            )
        callbacks = []
        if early_stopping_patience > 0:
            stopper = keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=early_stopping_patience,
                min_delta=1e-3,  # gains below this are noise on a near-zero loss; they should not extend training
                restore_best_weights=True,
            )
            callbacks.append(stopper)
        weights = balanced_class_weights(y_train, len(vocabulary)) if class_weights == "balanced" else None
        augment = _augmentations(spec, mixup_alpha, randaugment_n, randaugment_m, seed) if image else []
        fitted = net.fit(
            _dataset(x_train, fit_train, batch_size, shuffle_seed=seed, augment=augment,
                     n_classes=len(vocabulary) if one_hot else 0),
            validation_data=_dataset(x_val, fit_val, batch_size, n_classes=len(vocabulary) if one_hot else 0),
            epochs=epochs,
            class_weight=weights,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself, with the seed
            verbose=0,
        )
        history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
        if teacher is not None:  # the distillation loss is a closure; save the student with a plain loss
            net.compile(loss=_loss("crossentropy", focal_gamma), metrics=[_accuracy(False)])
    fit_seconds = time.perf_counter() - started
    epochs_run = len(history["loss"])
    # The epoch whose weights were kept: EarlyStopping restores its best epoch (counted from 0) at the end.
    best_epoch = epochs_run if stopper is None else int(stopper.best_epoch) + 1
    classes = len(vocabulary) if one_hot and not coteaching else 0
    write_trained_model(
        model, net, spec, history, best_epoch=best_epoch,
        final_train=net.evaluate(_dataset(x_train, y_train, 256, n_classes=classes), verbose=0, return_dict=True),
        final_val=net.evaluate(_dataset(x_val, y_val, 256, n_classes=classes), verbose=0, return_dict=True),
        fit_seconds=fit_seconds, train_rows=int(len(y_train)), validation_rows=int(len(y_val)),
        properties={
            **_data_identity(examples),
            "loss": loss,
            "class_weights": class_weights,
            "architecture": family,
            "resampled": source is not examples,
            "mixup_alpha": mixup_alpha,
            "randaugment": [randaugment_n, randaugment_m] if randaugment_n else None,
            "coteaching": {"forget_rate": forget_rate, "num_gradual": num_gradual} if coteaching else None,
            "distillation": (
                {"teacher_uri": teacher.uri, "temperature": distill_temperature, "alpha": distill_alpha}
                if teacher is not None else None
            ),
        },
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
    diagnosis = _model_diagnosis.diagnose(history)
    if best_epoch < epochs_run:
        diagnosis = _model_diagnosis.Diagnosis(
            diagnosis.verdict, f"{diagnosis.detail} (early stopping kept epoch {best_epoch} of {epochs_run})"
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
        fit_index, val_index = _model_resample.holdout_indices(y_all, fraction, seed)
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

    ``(fit, fit, validation, validation)``: each ``StreamSplit`` stands for both the inputs and the labels
    (``_dataset`` streams it, ``balanced_class_weights`` and ``len`` count its labels in one pass). Without a
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
    return fit, fit, val, val


def _augmentations(spec: dict[str, Any], mixup_alpha: float, randaugment_n: int, randaugment_m: float, seed: int) -> list[Any]:
    """The batch functions of the requested augmentations (RandAugment first, then mixup)."""
    from flywheel.techniques.mixing import MixUp, RandAugment

    steps = []
    if randaugment_n > 0:
        steps.append(
            RandAugment(
                num_ops=randaugment_n, magnitude=float(randaugment_m), value_range=[0.0, spec["pixel_max"]], random_state=seed
            ).batch_fn()
        )
    if mixup_alpha > 0:
        steps.append(MixUp(alpha=float(mixup_alpha), random_state=seed).batch_fn())
    return steps


def _dataset(
    inputs: Any,
    labels: Any,
    batch_size: int,
    shuffle_seed: int | None = None,
    *,
    augment: list[Any] = (),
    n_classes: int = 0,
) -> Any:
    """A batched ``tf.data`` stream; ``n_classes`` > 0 one-hot encodes labels (mixup needs soft labels)."""
    import tensorflow as tf

    if hasattr(inputs, "shard_paths"):  # a StreamSplit (streamed_training_data): tables only, so no augmentation
        return inputs.dataset(batch_size, shuffle_seed)

    if n_classes:
        labels = tf.one_hot(labels, n_classes)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    for step in augment:
        dataset = dataset.map(step)
    return dataset


def _loss(name: str, gamma: float, *, one_hot: bool = False) -> Any:
    import keras

    from flywheel.models import layers as model_layers

    if name == "focal":
        # alpha=1: class balancing is the job of class_weights; focal only down-weights easy examples.
        if one_hot:
            return keras.losses.CategoricalFocalCrossentropy(gamma=gamma, alpha=1.0)
        return model_layers.layer("SparseCategoricalFocalCrossentropy", gamma=gamma, alpha=1.0)
    return keras.losses.CategoricalCrossentropy() if one_hot else keras.losses.SparseCategoricalCrossentropy()


def _accuracy(one_hot: bool) -> Any:
    import keras

    if one_hot:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def balanced_class_weights(labels: Any, n_classes: int) -> dict[int, float]:
    """sklearn's "balanced" weights: n_samples / (n_classes * count); absent classes get 1.0."""
    import numpy as np

    counts = labels.label_counts(n_classes) if hasattr(labels, "label_counts") else np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    total = counts.sum()
    return {c: float(total / (n_classes * counts[c])) if counts[c] else 1.0 for c in range(n_classes)}


def build_network(
    spec: dict[str, Any], preprocess: Any, *, architecture: str, hidden_units: list, conv_widths: list, dropout: float
) -> Any:
    """The untrained network ``train`` fits: the ``architecture`` family for images, the dense model for tables.

    ``tune``'s trials build theirs here too, so a trial trains what ``train`` will.
    """
    from flywheel.models import families as model_families

    image = image_models.is_image_spec(spec)
    family = model_families.resolve_family(architecture, image)
    n_classes = len(spec["label_vocabulary"])
    if image:
        return model_families.build_image_classifier(
            family, spec["image_shape"], n_classes, widths=[int(w) for w in conv_widths],
            dense_units=[int(u) for u in hidden_units], dropout=dropout, preprocess=preprocess,
        )
    return build_model(spec, preprocess, hidden_units=[int(u) for u in hidden_units], dropout=dropout, n_classes=n_classes)


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

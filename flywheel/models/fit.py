"""The one Keras fit loop: ``train``, ``tune``'s trials and NAS candidates all train through ``fit``.

``fit(build_network, train_data, validation_data, options) -> FitResult``. The options are small
frozen dataclasses, checked when made (``ParameterError`` in the uniform message)::

    FitOptions(
        optimizer=Optimizer(learning_rate=0.01),                       # Adam
        schedule=Schedule(epochs=100, batch_size=32, early_stopping_patience=5, seed=0),
        objective=Objective(loss="crossentropy", focal_gamma=2.0, class_weights="none"),
        augmentation=Augmentation(mixup_alpha=0.0, randaugment_n=0),   # images only
        coteaching=None,     # or CoTeachingOptions(forget_rate, num_gradual): two networks
        distillation=None,   # or Distillation(teacher_net, temperature, alpha): Hinton et al.
    )

Data is either in-memory ``(features, labels)`` (an array or a dict of 1-D arrays, and integer
labels), batched here by ``dataset`` with a seeded shuffle, or an already batched
``tf.data.Dataset`` yielding ``(features, labels)`` (a streaming reader), which is used as it comes
(its order is the reader's business; balanced class weights take one extra pass over it to count
the labels). Co-teaching, distillation and ``Schedule(shuffle="keras")`` need in-memory arrays.

``fit`` seeds Python, NumPy and TensorFlow with ``schedule.seed`` (``keras.utils.set_random_seed``),
builds the network, compiles it (Adam; the objective's loss, or the distillation loss) and fits
it, with early stopping on validation loss that keeps the best epoch's weights. The network it
returns is compiled with a plain loss (savable, ready for ``FitResult.evaluate``).

Also here: the ``tf.data`` pipeline (``dataset``), the losses and metric (``loss``,
``accuracy``) and sklearn's ``balanced_class_weights``. Keras and TensorFlow are imported lazily.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from flywheel.dsl.constraints import Interval, Options, validate_parameter
from flywheel.errors import ParameterError

LOSSES = ("crossentropy", "focal")
CLASS_WEIGHTS = ("none", "balanced")
SHUFFLES = ("seeded", "keras")


def _check(owner: str, instance: Any, rules: dict[str, list[Any]]) -> None:
    for name, rule in rules.items():
        validate_parameter(owner, name, getattr(instance, name), rule)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """Adam with ``learning_rate`` (> 0)."""

    learning_rate: float = 0.001

    def __post_init__(self) -> None:
        _check("Optimizer", self, {"learning_rate": [Interval(float, 0, None, closed="neither")]})


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long and in what order to train.

    Attributes:
        epochs: Most epochs to train.
        batch_size: Examples per gradient step (in-memory data; a Dataset comes batched).
        early_stopping_patience: Epochs without a validation-loss gain of 1e-3 before stopping;
            the best epoch's weights are kept. 0 disables it; > 0 needs validation data.
        seed: Seeds Python, NumPy and TensorFlow before the network is built, and the shuffle.
        shuffle: ``"seeded"``: in-memory data is shuffled each epoch by ``tf.data`` with ``seed``
            (``dataset``); ``"keras"``: the arrays go to ``keras.Model.fit`` as they are and Keras
            shuffles them (NAS's candidates train so).
        deadline: A ``time.perf_counter()`` value after which training stops at the end of the
            batch (a time budget that holds within one batch); None for none.
    """

    epochs: int
    batch_size: int = 32
    early_stopping_patience: int = 0
    seed: int = 0
    shuffle: str = "seeded"
    deadline: float | None = None

    def __post_init__(self) -> None:
        _check("Schedule", self, {
            "epochs": [Interval(int, 1, None)],
            "batch_size": [Interval(int, 1, None)],
            "early_stopping_patience": [Interval(int, 0, None)],
            "seed": [int],
            "shuffle": [Options(SHUFFLES)],
            "deadline": [Interval(float, None, None), None],
        })


@dataclasses.dataclass(frozen=True)
class Objective:
    """The loss: ``"crossentropy"`` or ``"focal"`` (gamma ``focal_gamma``, alpha 1), with
    ``class_weights`` ``"none"`` or ``"balanced"`` (sklearn's n / (k * n_class))."""

    loss: str = "crossentropy"
    focal_gamma: float = 2.0
    class_weights: str = "none"

    def __post_init__(self) -> None:
        _check("Objective", self, {
            "loss": [Options(LOSSES)],
            "focal_gamma": [Interval(float, 0, None)],
            "class_weights": [Options(CLASS_WEIGHTS)],
        })

    @property
    def plain(self) -> bool:
        return self.loss == "crossentropy" and self.class_weights == "none"


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Image batch augmentations in the input pipeline: RandAugment (``randaugment_n`` operations of
    magnitude ``randaugment_m`` in [0, 10] on pixels in ``value_range``), then mixup with
    Beta(``mixup_alpha``, ``mixup_alpha``) weights (labels become one-hot). 0 disables each."""

    mixup_alpha: float = 0.0
    randaugment_n: int = 0
    randaugment_m: float = 5.0
    value_range: tuple[float, float] = (0.0, 255.0)

    def __post_init__(self) -> None:
        _check("Augmentation", self, {
            "mixup_alpha": [Interval(float, 0, None)],
            "randaugment_n": [Interval(int, 0, None)],
            "randaugment_m": [Interval(float, 0, 10)],
        })

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.randaugment_n > 0


@dataclasses.dataclass(frozen=True)
class CoTeachingOptions:
    """Co-teaching (``flywheel.techniques.coteaching``): two networks, tau ``forget_rate`` reached
    over ``num_gradual`` epochs. Trains the schedule's fixed ``epochs`` (no early stopping) and keeps
    the network with the better validation accuracy."""

    forget_rate: float = 0.2
    num_gradual: int = 10

    def __post_init__(self) -> None:
        _check("CoTeachingOptions", self, {
            "forget_rate": [Interval(float, 0, 1, closed="left")],
            "num_gradual": [Interval(int, 0, None)],
        })


@dataclasses.dataclass(frozen=True, eq=False)
class Distillation:
    """Knowledge distillation from ``teacher`` (a Keras model with the student's inputs and classes):
    loss ``alpha * CE(hard labels) + (1 - alpha) * T**2 * KL(teacher_T || student_T)``."""

    teacher: Any
    temperature: float = 4.0
    alpha: float = 0.1

    def __post_init__(self) -> None:
        _check("Distillation", self, {
            "temperature": [Interval(float, 0, None, closed="neither")],
            "alpha": [Interval(float, 0, 1)],
        })
        if not callable(getattr(self.teacher, "predict", None)):
            raise ParameterError(
                f"The 'teacher' parameter of Distillation must be a Keras model. Got {type(self.teacher).__name__} instead."
            )


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Everything ``fit`` does besides building the network; combinations without meaning are refused."""

    schedule: Schedule
    optimizer: Optimizer = Optimizer()
    objective: Objective = Objective()
    augmentation: Augmentation = Augmentation()
    coteaching: CoTeachingOptions | None = None
    distillation: Distillation | None = None

    def __post_init__(self) -> None:
        for name, kind in (("schedule", Schedule), ("optimizer", Optimizer), ("objective", Objective),
                           ("augmentation", Augmentation)):
            if not isinstance(getattr(self, name), kind):
                raise ParameterError(
                    f"The '{name}' parameter of FitOptions must be a {kind.__name__}. "
                    f"Got {getattr(self, name)!r} instead."
                )
        if self.coteaching is not None and (
            not self.objective.plain or self.augmentation.active or self.distillation is not None
            or self.schedule.shuffle != "seeded"
        ):
            raise ParameterError(
                "FitOptions with coteaching must have Objective() (crossentropy, no class weights), no augmentation, "
                "no distillation and the seeded shuffle: co-teaching ranks samples by plain cross-entropy. "
                f"Got {self.objective}, {self.augmentation}, distillation={self.distillation is not None}, "
                f"shuffle={self.schedule.shuffle!r} instead."
            )
        if self.distillation is not None and (not self.objective.plain or self.augmentation.mixup_alpha > 0):
            raise ParameterError(
                "FitOptions with distillation must have Objective() (crossentropy, no class weights) and no mixup "
                f"(the distillation loss replaces them). Got {self.objective}, mixup_alpha="
                f"{self.augmentation.mixup_alpha!r} instead."
            )
        if self.schedule.shuffle == "keras" and self.augmentation.active:
            raise ParameterError(
                "FitOptions with Schedule(shuffle='keras') cannot augment (augmentations run in the seeded tf.data "
                "pipeline). Use shuffle='seeded' or Augmentation()."
            )


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        net: The fitted network (the best epoch's weights under early stopping; co-teaching's better
            network), compiled with a plain loss.
        history: Per-epoch Keras logs (``loss``, ``accuracy``, ``val_loss``, ... as floats).
        best_epoch: The epoch whose weights were kept, counted from 1.
        fit_seconds: Wall time of building, compiling and fitting.
        one_hot_classes: > 0 when the network was compiled for one-hot labels (mixup): ``evaluate``
            one-hot encodes labels with it.
    """

    net: Any
    history: dict[str, list[float]]
    best_epoch: int
    fit_seconds: float
    one_hot_classes: int = 0

    @property
    def epochs_run(self) -> int:
        return len(self.history["loss"])

    def evaluate(self, data: Any, batch_size: int = 256) -> dict[str, float]:
        """The compiled loss and ``accuracy`` of ``net`` on ``(features, labels)`` or a batched Dataset."""
        if _is_dataset(data):
            return self.net.evaluate(_one_hot(data, self.one_hot_classes), verbose=0, return_dict=True)
        features, labels = _pair(data, "data")
        return self.net.evaluate(dataset(features, labels, batch_size, n_classes=self.one_hot_classes), verbose=0,
                                 return_dict=True)


def fit(build_network: Callable[[], Any], train_data: Any, validation_data: Any, options: FitOptions) -> FitResult:
    """Builds a network with ``build_network()`` and fits it on ``train_data``.

    Args:
        build_network: ``() -> keras.Model`` with a softmax output (called after seeding; twice
            under co-teaching).
        train_data: ``(features, labels)`` in memory, or a batched ``tf.data.Dataset`` of them.
        validation_data: The same kinds, or None (no per-epoch validation; then no early stopping).
        options: ``FitOptions``.

    Raises:
        ParameterError: options that need in-memory data with a Dataset, early stopping without
            validation data, or augmentation of a dict of features (tables).
    """
    import keras

    if not isinstance(options, FitOptions):
        raise ParameterError(f"The 'options' parameter of fit must be a FitOptions. Got {options!r} instead.")
    streamed = _is_dataset(train_data)
    if validation_data is not None and _is_dataset(validation_data) != streamed:
        raise ParameterError(
            "The training and validation data of fit must be of one kind: both (features, labels) in memory or both "
            "batched tf.data.Datasets. Got one of each."
        )
    _check_data(options, train_data, validation_data, streamed)
    schedule = options.schedule
    started = time.perf_counter()
    if options.coteaching is not None:
        return _fit_coteaching(build_network, train_data, validation_data, options, started)

    keras.utils.set_random_seed(schedule.seed)
    net = build_network()
    n_classes = int(net.outputs[0].shape[-1])
    one_hot = n_classes if options.augmentation.mixup_alpha > 0 else 0
    train_labels = val_labels = None
    if not streamed:
        train_x, train_labels = _pair(train_data, "train_data")
        if validation_data is not None:
            val_x, val_labels = _pair(validation_data, "validation_data")
    if options.distillation is not None:
        from flywheel.techniques import distillation

        teacher = options.distillation.teacher
        train_labels = distillation.distillation_targets(train_labels, teacher.predict(train_x, batch_size=1024, verbose=0))
        if validation_data is not None:
            val_labels = distillation.distillation_targets(val_labels, teacher.predict(val_x, batch_size=1024, verbose=0))
        net.compile(
            optimizer=keras.optimizers.Adam(learning_rate=options.optimizer.learning_rate),
            loss=distillation.distillation_loss(float(options.distillation.temperature), float(options.distillation.alpha)),
            metrics=[keras.metrics.MeanMetricWrapper(distillation.hard_label_accuracy, name="accuracy")],
        )
    else:
        net.compile(
            optimizer=keras.optimizers.Adam(learning_rate=options.optimizer.learning_rate),
            loss=loss(options.objective.loss, options.objective.focal_gamma, one_hot=bool(one_hot)),
            metrics=[accuracy(bool(one_hot))],
        )
    callbacks: list[Any] = []
    if schedule.deadline is not None:
        callbacks.append(_deadline_callback(schedule.deadline))
    stopper = None
    if schedule.early_stopping_patience > 0:
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=schedule.early_stopping_patience,
            min_delta=1e-3,  # gains below this are noise on a near-zero loss; they should not extend training
            restore_best_weights=True,
        )
        callbacks.append(stopper)
    weights = None
    if options.objective.class_weights == "balanced":
        weights = balanced_class_weights(_all_labels(train_data) if streamed else train_labels, n_classes)
    if schedule.shuffle == "keras":
        fitted = net.fit(
            train_x, train_labels, validation_data=None if validation_data is None else (val_x, val_labels),
            epochs=schedule.epochs, batch_size=schedule.batch_size, shuffle=True, class_weight=weights,
            callbacks=callbacks, verbose=0,
        )
    else:
        augment = augmentations(options.augmentation, schedule.seed)
        if streamed:
            fit_data = _augmented(_one_hot(train_data, one_hot), augment)
            fit_val = None if validation_data is None else _one_hot(validation_data, one_hot)
        else:
            fit_data = dataset(train_x, train_labels, schedule.batch_size, shuffle_seed=schedule.seed, augment=augment,
                               n_classes=one_hot)
            fit_val = (None if validation_data is None
                       else dataset(val_x, val_labels, schedule.batch_size, n_classes=one_hot))
        fitted = net.fit(
            fit_data, validation_data=fit_val, epochs=schedule.epochs, class_weight=weights, callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself, with the seed
            verbose=0,
        )
    history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
    if options.distillation is not None:  # the distillation loss is a closure; keep the student with a plain loss
        net.compile(loss=loss("crossentropy", options.objective.focal_gamma), metrics=[accuracy(False)])
    fit_seconds = time.perf_counter() - started
    # The epoch whose weights were kept: EarlyStopping restores its best epoch (counted from 0) at the end.
    best_epoch = len(history["loss"]) if stopper is None else int(stopper.best_epoch) + 1
    return FitResult(net=net, history=history, best_epoch=best_epoch, fit_seconds=fit_seconds, one_hot_classes=one_hot)


def _fit_coteaching(
    build_network: Callable[[], Any], train_data: Any, validation_data: Any, options: FitOptions, started: float
) -> FitResult:
    from flywheel.techniques.coteaching import CoTeaching

    schedule, settings = options.schedule, options.coteaching
    x, y = _pair(train_data, "train_data")
    coteacher = CoTeaching(
        build_network=build_network, forget_rate=settings.forget_rate, num_gradual=settings.num_gradual,
        epochs=schedule.epochs, batch_size=schedule.batch_size, learning_rate=options.optimizer.learning_rate,
        random_state=schedule.seed,
    ).fit(x, y, validation_data=None if validation_data is None else _pair(validation_data, "validation_data"))
    net = coteacher.networks_[coteacher.best_index_]
    net.compile(loss=loss(options.objective.loss, options.objective.focal_gamma), metrics=[accuracy(False)])
    history = {key: list(values) for key, values in coteacher.history_.items()}
    return FitResult(net=net, history=history, best_epoch=len(history["loss"]),
                     fit_seconds=time.perf_counter() - started)


def _check_data(options: FitOptions, train_data: Any, validation_data: Any, streamed: bool) -> None:
    if options.schedule.early_stopping_patience > 0 and validation_data is None and options.coteaching is None:
        raise ParameterError(
            "fit's early stopping (Schedule.early_stopping_patience > 0) watches the validation loss, so it needs "
            "validation_data. Pass validation data or set early_stopping_patience=0."
        )
    if streamed:
        needs_arrays = [
            what for what, used in (
                ("co-teaching", options.coteaching is not None),
                ("distillation", options.distillation is not None),
                ("Schedule(shuffle='keras')", options.schedule.shuffle == "keras"),
            ) if used
        ]
        if needs_arrays:
            raise ParameterError(
                f"fit's {', '.join(needs_arrays)} needs (features, labels) in memory; got a tf.data.Dataset. "
                "Pass arrays, or train without these options."
            )
        return
    features, _ = _pair(train_data, "train_data")
    if options.augmentation.active and isinstance(features, dict):
        raise ParameterError(
            "fit's Augmentation (mixup, RandAugment) applies to image arrays only; got a dict of feature columns. "
            "Use Augmentation() for tables."
        )


def _pair(data: Any, name: str) -> tuple[Any, Any]:
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise ParameterError(
        f"The '{name}' of fit must be (features, labels) or a batched tf.data.Dataset of them. "
        f"Got {type(data).__name__} instead."
    )


def _is_dataset(data: Any) -> bool:
    if data is None or isinstance(data, (tuple, list)):
        return False
    import tensorflow as tf

    return isinstance(data, tf.data.Dataset)


def _one_hot(data: Any, n_classes: int) -> Any:
    if not n_classes:
        return data
    import tensorflow as tf

    return data.map(lambda x, y: (x, tf.one_hot(y, n_classes)))


def _augmented(data: Any, augment: list[Any]) -> Any:
    for step in augment:
        data = data.map(step)
    return data


def _all_labels(data: Any) -> Any:
    import numpy as np

    return np.concatenate([np.asarray(labels).reshape(-1) for _, labels in data.as_numpy_iterator()])


def _deadline_callback(deadline: float) -> Any:
    import keras

    class _Deadline(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if time.perf_counter() >= deadline:
                self.model.stop_training = True

    return _Deadline()


def augmentations(augmentation: Augmentation, seed: int) -> list[Any]:
    """The batch functions of the requested augmentations (RandAugment first, then mixup)."""
    from flywheel.techniques.mixing import MixUp, RandAugment

    steps = []
    if augmentation.randaugment_n > 0:
        steps.append(
            RandAugment(
                num_ops=augmentation.randaugment_n, magnitude=float(augmentation.randaugment_m),
                value_range=list(augmentation.value_range), random_state=seed,
            ).batch_fn()
        )
    if augmentation.mixup_alpha > 0:
        steps.append(MixUp(alpha=float(augmentation.mixup_alpha), random_state=seed).batch_fn())
    return steps


def dataset(
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

    if n_classes:
        labels = tf.one_hot(labels, n_classes)
    data = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle_seed is not None:
        data = data.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    for step in augment:
        data = data.map(step)
    return data


def loss(name: str, gamma: float, *, one_hot: bool = False) -> Any:
    """The Keras loss ``name`` (``LOSSES``), sparse or for one-hot labels."""
    import keras

    from flywheel.models import layers as model_layers

    if name == "focal":
        # alpha=1: class balancing is the job of class_weights; focal only down-weights easy examples.
        if one_hot:
            return keras.losses.CategoricalFocalCrossentropy(gamma=gamma, alpha=1.0)
        return model_layers.layer("SparseCategoricalFocalCrossentropy", gamma=gamma, alpha=1.0)
    return keras.losses.CategoricalCrossentropy() if one_hot else keras.losses.SparseCategoricalCrossentropy()


def accuracy(one_hot: bool) -> Any:
    """The ``accuracy`` metric, sparse or for one-hot labels."""
    import keras

    if one_hot:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def balanced_class_weights(labels: Any, n_classes: int) -> dict[int, float]:
    """sklearn's "balanced" weights: n_samples / (n_classes * count); absent classes get 1.0."""
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    total = counts.sum()
    return {c: float(total / (n_classes * counts[c])) if counts[c] else 1.0 for c in range(n_classes)}

"""Knowledge distillation (Hinton, Vinyals & Dean, 2015): a small student learns from a teacher's soft targets.

The student's loss is ``alpha * CE(hard label, student) + (1 - alpha) * T**2 *
KL(softmax(z_t / T) || softmax(z_s / T))``: the temperature ``T`` softens both
distributions so the student sees the teacher's "dark knowledge" (how wrong
classes rank), and ``T**2`` keeps the soft term's gradients on the scale of the
hard term's as T changes. flywheel models end in a softmax, so the logits are
recovered as ``log p`` (a softmax is invariant to the constant that
separates them).

``distillation_targets`` packs the one-hot hard labels and the teacher's
log-probabilities side by side, and ``distillation_loss`` unpacks them, so a
plain ``model.fit`` trains the student (``flywheel/models/fit.py`` does that with
its own early stopping). ``Distiller`` is the estimator form.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.techniques.base import Interval, Technique, validate_parameter

_EPSILON = 1e-7


def distillation_targets(labels: Any, teacher_probabilities: Any) -> np.ndarray:
    """``[one-hot label | teacher log-probabilities]``, shape (n, 2 * classes), the targets ``distillation_loss`` takes.

    Raises:
        FlywheelError: labels and teacher outputs differ in length, or a label is out of range.
    """
    probabilities = np.asarray(teacher_probabilities, dtype=np.float32)
    labels = np.asarray(labels).astype(int).ravel()
    if probabilities.ndim != 2 or len(labels) != len(probabilities):
        raise FlywheelError(
            f"Distillation needs one teacher probability row per label; got {len(labels)} labels and teacher "
            f"outputs of shape {probabilities.shape}. Predict with the teacher on the same rows."
        )
    classes = probabilities.shape[1]
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise FlywheelError(f"Labels must lie in [0, {classes}) to match the teacher's outputs; got {labels.min()}..{labels.max()}.")
    one_hot = np.eye(classes, dtype=np.float32)[labels]
    return np.concatenate([one_hot, np.log(np.clip(probabilities, _EPSILON, 1.0))], axis=1)


def distillation_loss(temperature: float, alpha: float) -> Any:
    """A Keras loss ``(targets, student probabilities) -> per-example loss`` (Hinton et al.)."""
    from keras import ops

    validate_parameter("distillation_loss", "temperature", temperature, [Interval(float, 0, None, closed="neither")])
    validate_parameter("distillation_loss", "alpha", alpha, [Interval(float, 0, 1)])

    def loss(targets: Any, student: Any) -> Any:
        classes = ops.shape(student)[-1]
        hard, teacher_log = targets[:, :classes], targets[:, classes:]
        student_log = ops.log(ops.clip(student, _EPSILON, 1.0))
        hard_term = -ops.sum(hard * student_log, axis=-1)
        soft_teacher = ops.softmax(teacher_log / temperature, axis=-1)
        soft_student_log = ops.log_softmax(student_log / temperature, axis=-1)
        kl = ops.sum(soft_teacher * (ops.log(ops.clip(soft_teacher, _EPSILON, 1.0)) - soft_student_log), axis=-1)
        return alpha * hard_term + (1.0 - alpha) * temperature**2 * kl

    return loss


def hard_label_accuracy(targets: Any, student: Any) -> Any:
    """Accuracy against the hard labels packed in distillation targets (a Keras metric function)."""
    from keras import ops

    classes = ops.shape(student)[-1]
    return ops.cast(ops.equal(ops.argmax(targets[:, :classes], axis=-1), ops.argmax(student, axis=-1)), "float32")


class Distiller(Technique):
    """Trains a student Keras model on a teacher's softened outputs plus the hard labels.

    ``alpha`` is the weight of the hard-label term (``alpha=1`` is training
    without the teacher, the baseline to beat). The student is trained in
    place (build a fresh one per fit). Learned attributes: ``student_``,
    ``history_`` (Keras history: ``loss``, ``accuracy``).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "temperature": [Interval(float, 0, None, closed="neither")],
        "alpha": [Interval(float, 0, 1)],
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, temperature: float = 4.0, alpha: float = 0.1, epochs: int = 20, batch_size: int = 32,
        learning_rate: float = 3e-3, random_state: int | None = 0,
    ) -> None:
        self.temperature = temperature
        self.alpha = alpha
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, student: Any, teacher: Any, x: Any, y: Any) -> Distiller:
        """Fits ``student`` on (x, y) and the teacher's predictions on x.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: the models are missing, or x, y and the teacher's outputs disagree.
        """
        import keras
        import tensorflow as tf

        self._validate_params()
        if not hasattr(student, "fit") or not hasattr(teacher, "predict"):
            raise FlywheelError(
                f"Distiller.fit needs a Keras student and teacher; got {type(student).__name__} and {type(teacher).__name__}."
            )
        rows = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
        if rows != len(y):
            raise FlywheelError(f"Distiller.fit needs one label per row; got {rows} rows and {len(y)} labels.")
        if self.random_state is not None:
            keras.utils.set_random_seed(self.random_state)
        targets = distillation_targets(y, teacher.predict(x, batch_size=1024, verbose=0))
        student.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=distillation_loss(float(self.temperature), float(self.alpha)),
            metrics=[hard_label_accuracy],
        )
        data = tf.data.Dataset.from_tensor_slices((x, targets))
        data = data.shuffle(rows, seed=self.random_state or 0, reshuffle_each_iteration=True).batch(self.batch_size)
        fitted = student.fit(data, epochs=self.epochs, verbose=0)
        history = dict(fitted.history)
        history["accuracy"] = history.pop("hard_label_accuracy")
        self.history_ = {k: [float(v) for v in values] for k, values in history.items()}
        self.student_ = student
        return self

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        rng = np.random.RandomState(0)
        x = rng.normal(size=(64, 4)).astype("float32")
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)

        def build(units: int, seed: int) -> Any:
            import keras

            keras.utils.set_random_seed(seed)
            inputs = keras.Input(shape=(4,))
            hidden = keras.layers.Dense(units, activation="relu")(inputs)
            return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))

        def call(technique: Technique) -> list[Any]:
            technique.fit(build(4, 1), build(16, 0), x, y)
            return [technique.student_.predict(x[:8], verbose=0), np.asarray(technique.history_["loss"])]

        return {
            "params": {"temperature": 2.0, "alpha": 0.5, "epochs": 2, "batch_size": 16, "random_state": 0},
            "bad_params": [{"temperature": 0.0}, {"alpha": 1.5}, {"epochs": 0}, {"random_state": "0"}],
            "call": call,
            "bad_input": lambda technique: technique.fit(build(4, 1), build(16, 0), x, y[:-3]),
            "shapes": lambda result: result[0].shape == (8, 2) and result[1].shape == (2,),
        }

"""Knowledge distillation: the loss is Hinton et al.'s, and a distilled student learns."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.errors import FlywheelError, ParameterError
from flywheel.techniques.distillation import Distiller, distillation_loss, distillation_targets


def _loss(targets, student, temperature, alpha):
    return np.asarray(distillation_loss(temperature, alpha)(targets.astype("float32"), student.astype("float32")))


def test_alpha_one_is_plain_cross_entropy_and_the_soft_term_vanishes_when_student_equals_teacher():
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 2])
    targets = distillation_targets(labels, teacher)
    student = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    assert np.allclose(_loss(targets, student, 3.0, 1.0), -np.log([0.5, 0.6]), atol=1e-5)
    assert np.allclose(_loss(targets, teacher, 3.0, 0.0), 0.0, atol=1e-5)


def test_soft_term_is_the_tempered_kl_scaled_by_t_squared():
    teacher = np.array([[0.7, 0.2, 0.1]])
    student = np.array([[0.4, 0.4, 0.2]])
    targets = distillation_targets([0], teacher)
    t = 4.0
    soft_t = teacher ** (1 / t) / (teacher ** (1 / t)).sum()
    soft_s = student ** (1 / t) / (student ** (1 / t)).sum()
    expected = t**2 * np.sum(soft_t * np.log(soft_t / soft_s))
    assert _loss(targets, student, t, 0.0)[0] == pytest.approx(expected, rel=1e-4)


def test_targets_refuse_mismatched_rows_and_the_loss_checks_its_parameters():
    with pytest.raises(FlywheelError, match="one teacher probability row per label"):
        distillation_targets([0, 1, 1], np.full((2, 2), 0.5))
    with pytest.raises(ParameterError, match="'temperature' parameter of distillation_loss"):
        distillation_loss(0.0, 0.5)


def test_a_distilled_student_fits_and_reports_hard_label_accuracy():
    import keras

    rng = np.random.RandomState(0)
    x = rng.normal(size=(200, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,))
    teacher = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(32, activation="relu")(inputs)))
    teacher.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    teacher.fit(x, y, epochs=20, verbose=0)
    student_in = keras.Input(shape=(4,))
    student = keras.Model(student_in, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(3, activation="relu")(student_in)))
    distiller = Distiller(temperature=2.0, alpha=0.3, epochs=25, learning_rate=0.02).fit(student, teacher, x, y)
    accuracy = float(np.mean(distiller.student_.predict(x, verbose=0).argmax(1) == y))
    assert accuracy > 0.9
    assert distiller.history_["loss"][-1] < distiller.history_["loss"][0]
    assert len(distiller.history_["accuracy"]) == 25

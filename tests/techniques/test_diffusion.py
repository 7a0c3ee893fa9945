"""The conditional diffusion model learns class-conditional samples of digits and reloads safely."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flywheel.errors import FlywheelError
from flywheel.techniques.diffusion import ConditionalDiffusion, noise_schedule, step_features

CLASSES = [0, 1, 4, 7]


@pytest.fixture(scope="module")
def trained():
    digits = load_digits()
    keep = np.isin(digits.target, CLASSES)
    X, y = digits.images[keep, :, :, None] / 16.0, digits.target[keep]
    model = ConditionalDiffusion(
        channels=16, epochs=6, steps_per_epoch=40, batch_size=32, learning_rate=3e-3, sampling_steps=8, random_state=0,
    )
    return X, y, model.fit(X[:200], y[:200])


def test_schedules_decrease_from_almost_one_to_almost_zero():
    for kind in ("cosine", "linear"):
        alpha_bar = noise_schedule(kind, 1000)
        assert alpha_bar[0] > 0.99 and alpha_bar[-1] < 0.01 and np.all(np.diff(alpha_bar) < 0), kind
    assert step_features(np.array([0, 999]), 1000).shape == (2, 32)


def test_loss_decreases_and_samples_have_the_data_shape_range_and_asked_labels(trained):
    _, _, model = trained
    assert model.history_.shape == (6,) and np.all(np.isfinite(model.history_))
    assert model.history_[-1] < 0.7 * model.history_[0], model.history_
    images, labels = model.sample({1: 3, 7: 2})
    assert images.shape == (5, 8, 8, 1) and labels.tolist() == [1, 1, 1, 7, 7]
    assert images.min() >= 0 and images.max() <= 1


def test_samples_are_recognised_as_their_class_by_a_model_trained_on_real_data(trained):
    X, y, model = trained
    judge = LogisticRegression(max_iter=2000).fit(X[200:].reshape(len(X) - 200, -1), y[200:])
    images, labels = model.sample(25)
    agreement = (judge.predict(images.reshape(len(images), -1)) == labels).mean()
    # chance is 0.25; an unconditional or untrained denoiser fails this
    assert agreement > 0.6, agreement
    guided_images, guided_labels = model.set_params(guidance=2.0).sample(25)
    model.set_params(guidance=0.0)
    guided = (judge.predict(guided_images.reshape(len(guided_images), -1)) == guided_labels).mean()
    assert guided >= agreement and guided > 0.85, (guided, agreement)  # classifier-free guidance sharpens the classes


def test_saved_model_loads_with_safe_mode_and_predicts_the_same(trained, tmp_path):
    _, _, model = trained
    model.save(str(tmp_path / "saved"))
    with open(tmp_path / "saved" / "diffusion.json", encoding="utf-8") as handle:
        assert json.load(handle)["classes"] == CLASSES
    loaded = ConditionalDiffusion.load(str(tmp_path / "saved"))  # load() passes safe_mode=True
    rng = np.random.default_rng(1)
    inputs = [
        rng.standard_normal((3, 8, 8, 1)).astype(np.float32),
        step_features(np.array([5, 500, 900]), 1000),
        np.eye(5, dtype=np.float32)[[0, 2, 4]],
    ]
    np.testing.assert_allclose(loaded.denoiser_.predict_on_batch(inputs), model.denoiser_.predict_on_batch(inputs), atol=1e-6)
    images, labels = loaded.sample({4: 2})
    assert images.shape == (2, 8, 8, 1) and labels.tolist() == [4, 4]
    with pytest.raises(FlywheelError, match="ConditionalDiffusion.save"):
        ConditionalDiffusion.load(str(tmp_path / "nothing"))


def test_refuses_unscaled_data_unknown_classes_and_use_before_fit(trained):
    _, _, model = trained
    with pytest.raises(FlywheelError, match=r"values in \[0, 1\]"):
        ConditionalDiffusion().fit(np.full((4, 2, 2), 16.0), np.array([0, 1, 0, 1]))
    with pytest.raises(FlywheelError, match=r"\(n, height, width"):
        ConditionalDiffusion().fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    with pytest.raises(FlywheelError, match="not seen in fit"):
        model.sample({3: 1})
    with pytest.raises(FlywheelError, match="before fit"):
        ConditionalDiffusion().sample(1)

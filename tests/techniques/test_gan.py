"""The conditional GAN learns class-conditional samples of digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flywheel.errors import FlywheelError
from flywheel.techniques.gan import ConditionalGAN


@pytest.fixture(scope="module")
def trained():
    digits = load_digits()
    X, y = digits.images[:600, :, :, None] / 16.0, digits.target[:600]
    return X, y, ConditionalGAN(steps=1500, random_state=0).fit(X, y)


def test_samples_have_the_data_shape_range_and_asked_labels(trained):
    X, _, gan = trained
    images, labels = gan.sample({3: 4, 7: 2})
    assert images.shape == (6, 8, 8, 1) and labels.tolist() == [3, 3, 3, 3, 7, 7]
    assert images.min() >= 0 and images.max() <= 1
    assert np.all(np.isfinite(gan.history_))


def test_samples_are_recognised_as_their_class_by_a_model_trained_on_real_data(trained):
    X, y, gan = trained
    judge = LogisticRegression(max_iter=2000).fit(X.reshape(len(X), -1), y)
    images, labels = gan.sample(30)
    agreement = (judge.predict(images.reshape(len(images), -1)) == labels).mean()
    assert agreement > 0.6, agreement  # chance is 0.1; an unconditional or untrained generator fails this


def test_refuses_unscaled_data_and_unknown_classes(trained):
    _, _, gan = trained
    with pytest.raises(FlywheelError, match=r"values in \[0, 1\]"):
        ConditionalGAN(steps=1).fit(np.full((4, 2), 16.0), np.array([0, 1, 0, 1]))
    with pytest.raises(FlywheelError, match="not seen in fit"):
        gan.sample({11: 1})
    with pytest.raises(FlywheelError, match="before fit"):
        ConditionalGAN().sample(1)

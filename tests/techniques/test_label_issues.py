"""Confident learning finds injected label noise, and pruning it helps."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flywheel.errors import FlywheelError, ParameterError
from flywheel.techniques.label_issues import ConfidentLearning, noisy_labels


def test_noisy_labels_flip_exactly_the_rate_and_the_chosen_kind():
    y = np.repeat(np.arange(4), 50)
    noisy, flipped = noisy_labels(y, noise_rate=0.25, kind="class_conditional", random_state=0)
    assert flipped.sum() == 50 and np.all(noisy[flipped] == (y[flipped] + 1) % 4) and np.all(noisy[~flipped] == y[~flipped])
    noisy, flipped = noisy_labels(y, noise_rate=0.1, kind="symmetric", random_state=0)
    assert flipped.sum() == 20 and np.all(noisy[flipped] != y[flipped])


@pytest.mark.parametrize("kind", ["symmetric", "class_conditional"])
def test_flagged_rows_are_mostly_the_injected_noise_and_pruning_helps(kind):
    digits = load_digits()
    X, y = digits.data[:500] / 16.0, digits.target[:500]
    X_test, y_test = digits.data[500:] / 16.0, digits.target[500:]
    noisy, flipped = noisy_labels(y, noise_rate=0.2, kind=kind, random_state=0)
    finder = ConfidentLearning(cv_folds=3, random_state=0).fit(X, noisy)
    flagged = finder.label_issues_
    precision = (flagged & flipped).sum() / flagged.sum()
    recall = (flagged & flipped).sum() / flipped.sum()
    assert precision > 0.5 and recall > 0.6, (precision, recall)  # noise rate 0.2: a no-op or random flag gets ~0.2
    X_clean, y_clean = finder.prune(X, noisy)
    assert len(y_clean) == len(y) - flagged.sum()
    pruned = LogisticRegression(max_iter=2000).fit(X_clean, y_clean).score(X_test, y_test)
    noisy_acc = LogisticRegression(max_iter=2000).fit(X, noisy).score(X_test, y_test)
    assert pruned > noisy_acc + 0.01, (pruned, noisy_acc)
    assert finder.label_quality_[flipped].mean() < finder.label_quality_[~flipped].mean()


def test_refuses_bad_parameters_and_labels():
    X = np.random.default_rng(0).random((30, 3))
    y = np.tile([0, 1, 2], 10)
    with pytest.raises(ParameterError, match="The 'filter_by' parameter of ConfidentLearning must be one of"):
        ConfidentLearning(filter_by="everything").fit(X, y)
    with pytest.raises(FlywheelError, match="at least cv_folds=5 rows per class"):
        ConfidentLearning().fit(X[:12], y[:12])
    with pytest.raises(FlywheelError, match="integer labels 0..k-1"):
        ConfidentLearning(cv_folds=2).fit(X, y + 1)
    with pytest.raises(FlywheelError, match="call fit"):
        ConfidentLearning().prune(X, y)

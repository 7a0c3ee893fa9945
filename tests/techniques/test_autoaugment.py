"""Augmentation operations, policies, and the policy search."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.errors import FlywheelError, ParameterError
from flywheel.techniques.autoaugment import OPERATIONS, PolicySearch, apply_policy, check_policy


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    out = np.zeros((6, 8, 8, 1))
    out[:, 2:6, 3:5, 0] = rng.random((6, 4, 2)) * 0.5 + 0.5
    return out


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_every_operation_keeps_shape_and_range_and_changes_the_image(images, op):
    out = apply_policy(images, [[[op, 1.0, 1.0]]], random_state=0)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert not np.allclose(out, images), op


def test_probability_zero_is_the_identity_and_draws_are_seeded(images):
    assert np.array_equal(apply_policy(images, [[["rotate", 0.0, 1.0], ["erase", 0.0, 1.0]]], random_state=0), images)
    policy = [[["rotate", 0.5, 0.5], ["noise", 0.5, 0.3]], [["translate_x", 0.8, 0.6]]]
    assert np.array_equal(apply_policy(images, policy, random_state=3), apply_policy(images, policy, random_state=3))


def test_malformed_policies_and_images_are_refused(images):
    for bad in ([], [["rotate", 0.5, 0.5]], [[["spin", 0.5, 0.5]]], [[["rotate", 1.5, 0.5]]]):
        with pytest.raises(ParameterError, match="An augmentation policy must be"):
            check_policy(bad)
    with pytest.raises(FlywheelError, match=r"values in \[0, 1\]"):
        apply_policy(images * 255, [[["rotate", 1.0, 0.5]]])


def test_search_keeps_the_best_trial_and_the_baseline():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.images[:, :, :, None] / 16.0, digits.target
    search = PolicySearch(n_candidates=3, n_mutations=2, n_subpolicies=3, n_copies=1, random_state=0)
    search.fit(X[:100], y[:100], X[100:200], y[100:200])
    scores = [t["score"] for t in search.trials_]
    assert len(scores) == 5 and [t["phase"] for t in search.trials_].count("evolution") == 2
    assert search.best_score_ == max(scores)
    assert 0.5 < search.baseline_score_ < 1.0
    assert len(set(scores)) > 1  # policies differ in effect, so the search has something to choose
    check_policy(search.best_policy_)

"""The policy search with a CNN child model (``child_model="cnn"``)."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.errors import ParameterError
from flywheel.techniques.autoaugment import PolicySearch, check_policy, cnn_child_accuracy


@pytest.fixture
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images[:, :, :, None] / 16.0, data.target


def test_cnn_child_learns_digits_and_is_seeded(digits):
    X, y = digits
    first = cnn_child_accuracy(X[:200], y[:200], X[200:400], y[200:400], epochs=15, seed=0)
    assert first > 0.7  # chance is 0.1
    assert cnn_child_accuracy(X[:200], y[:200], X[200:400], y[200:400], epochs=15, seed=0) == first
    shuffled = np.random.default_rng(0).permutation(y[:200])
    assert cnn_child_accuracy(X[:200], shuffled, X[200:400], y[200:400], epochs=15, seed=0) < 0.3


def test_search_with_cnn_child_scores_with_the_cnn(digits):
    X, y = digits
    args = (X[:60], y[:60], X[60:120], y[60:120])
    cnn = PolicySearch(n_candidates=2, n_mutations=1, n_copies=1, child_model="cnn", child_epochs=5, random_state=0).fit(*args)
    again = PolicySearch(n_candidates=2, n_mutations=1, n_copies=1, child_model="cnn", child_epochs=5, random_state=0).fit(*args)
    logreg = PolicySearch(n_candidates=2, n_mutations=1, n_copies=1, random_state=0).fit(*args)
    scores = [t["score"] for t in cnn.trials_]
    assert scores == [t["score"] for t in again.trials_] and len(scores) == 3
    assert cnn.best_score_ == max(scores)
    check_policy(cnn.best_policy_)
    # The same random candidates and draws, scored by a different child: the scores must differ.
    assert [t["policy"] for t in cnn.trials_[:2]] == [t["policy"] for t in logreg.trials_[:2]]
    assert (cnn.baseline_score_, scores) != (logreg.baseline_score_, [t["score"] for t in logreg.trials_])


def test_unknown_child_model_is_refused_with_the_rule():
    X = np.zeros((4, 8, 8, 1))
    with pytest.raises(ParameterError, match="child_model.*'cnn'.*'logreg'.*Got 'tree'"):
        PolicySearch(child_model="tree").fit(X, [0, 1, 0, 1], X, [0, 1, 0, 1])

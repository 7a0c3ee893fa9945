"""UncertaintySampler: the scores, the committee, and that it picks what the model gets wrong."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from flywheel.errors import FlywheelError, ParameterError
from flywheel.techniques.active_learning import UncertaintySampler, uncertainty_scores, vote_entropy


def test_scores_rank_the_uncertain_row_first():
    proba = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.6, 0.4, 0.0]])
    for strategy in ("least_confidence", "entropy"):
        assert np.argmax(uncertainty_scores(proba, strategy)) == 1
    # margin: the row whose top two classes are closest (0.40 vs 0.35)
    assert np.argsort(-uncertainty_scores(proba, "margin")).tolist() == [1, 2, 0]
    votes = np.array([[0, 1, 2], [0, 1, 1], [0, 2, 0]])
    entropy = vote_entropy(votes, 3)
    assert entropy[0] == 0.0 and entropy[1] > 0 and np.isclose(entropy[2], np.log(3))


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.data / 16.0, bunch.target


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy", "committee"])
def test_uncertainty_picks_examples_the_model_gets_wrong_more_than_random(digits, strategy):
    X, y = digits
    rng = np.random.default_rng(0)
    start = np.concatenate([rng.choice(np.flatnonzero(y == c), 3, replace=False) for c in range(10)])
    pool = np.setdiff1d(np.arange(len(y)), start)
    sampler = UncertaintySampler(strategy=strategy, batch_size=60, committee_size=4, random_state=0).fit(X[start], y[start])
    model = UncertaintySampler(strategy="entropy", random_state=0).fit(X[start], y[start]).estimators_[0]
    wrong = model.predict(X[pool]) != y[pool]
    picked = sampler.query(X[pool])
    random_picked = UncertaintySampler(strategy="random", batch_size=60, random_state=0).fit(X[start], y[start]).query(X[pool])
    assert len(set(picked.tolist())) == 60
    assert wrong[picked].mean() > 1.5 * wrong[random_picked].mean(), (wrong[picked].mean(), wrong.mean())


def test_uncertainty_sampling_beats_random_after_a_few_rounds(digits):
    X, y = digits
    final = {}
    for strategy in ("random", "margin"):
        scores = []
        for seed in (0, 1):
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(y))
            test, train = order[:500], order[500:]
            labeled = [i for c in range(10) for i in train[y[train] == c][:2]]
            pool = np.setdiff1d(train, labeled)
            for _ in range(6):
                sampler = UncertaintySampler(strategy=strategy, batch_size=20, random_state=seed).fit(X[labeled], y[labeled])
                picked = pool[sampler.query(X[pool])]
                labeled += picked.tolist()
                pool = np.setdiff1d(pool, picked)
            model = UncertaintySampler(strategy="entropy").fit(X[labeled], y[labeled]).estimators_[0]
            scores.append(model.score(X[test], y[test]))
        final[strategy] = np.mean(scores)
    assert final["margin"] > final["random"] + 0.015, final


def test_bad_parameters_and_inputs_are_refused(digits):
    X, y = digits
    with pytest.raises(ParameterError, match="The 'strategy' parameter of UncertaintySampler must be one of"):
        UncertaintySampler(strategy="best").fit(X[:20], y[:20])
    with pytest.raises(FlywheelError, match="at least two classes"):
        UncertaintySampler().fit(X[:5], np.zeros(5, dtype=int))
    with pytest.raises(FlywheelError, match="before fit"):
        UncertaintySampler().query(X)
    with pytest.raises(FlywheelError, match="n_features"):
        UncertaintySampler().fit(X[:40], y[:40]).query(X[:, :10])

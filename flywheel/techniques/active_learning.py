"""Active learning: pick the pool examples worth labelling next.

``UncertaintySampler`` fits a classifier (or a committee of bootstrap
classifiers) on the labelled set and ranks the unlabelled pool by

* ``least_confidence``: 1 - max_c p(c | x);
* ``margin``: -(p_top1 - p_top2) (a small margin is informative);
* ``entropy``: -sum_c p(c | x) log p(c | x);
* ``committee``: vote entropy of ``committee_size`` models, each fitted on a
  bootstrap resample of the labelled set (query-by-committee, Seung et al. 1992);
* ``random``: the baseline, a seeded uniform draw.

    sampler = UncertaintySampler(strategy="margin", batch_size=20, random_state=0)
    picked = sampler.fit(X_labeled, y_labeled).query(X_pool)   # indices into X_pool
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.techniques.base import Interval, Options, Technique

STRATEGIES = ("least_confidence", "margin", "entropy", "committee", "random")


def _is_classifier(value: Any) -> bool:
    """a scikit-learn classifier with predict_proba"""
    return hasattr(value, "fit") and hasattr(value, "predict_proba")


def check_xy(X: Any, y: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D float feature matrix and a 1-D integer label vector of equal length.

    Raises:
        FlywheelError: wrong shapes, lengths or non-finite values.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or len(X) == 0:
        raise FlywheelError(
            f"{where} needs X of shape (n_samples, n_features) and y of shape (n_samples,) with n_samples > 0; "
            f"got X {X.shape} and y {y.shape}."
        )
    if not np.all(np.isfinite(X)):
        raise FlywheelError(f"{where} needs finite features; X has NaN or infinite values. Impute them first.")
    return X, y


def uncertainty_scores(proba: np.ndarray, strategy: str) -> np.ndarray:
    """Informativeness of each row of a probability matrix (higher = query first)."""
    proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    if strategy == "least_confidence":
        return 1.0 - proba.max(axis=1)
    if strategy == "margin":
        top = np.sort(proba, axis=1)[:, -2:]
        return -(top[:, 1] - top[:, 0]) if proba.shape[1] > 1 else np.zeros(len(proba))
    if strategy == "entropy":
        return -(proba * np.log(proba)).sum(axis=1)
    raise FlywheelError(f"uncertainty_scores: strategy must be one of least_confidence, margin, entropy; got {strategy!r}.")


def vote_entropy(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Entropy of the committee's vote distribution per example; votes is (members, n)."""
    counts = np.stack([(votes == c).sum(axis=0) for c in range(n_classes)], axis=1) / votes.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(counts > 0, counts * np.log(counts), 0.0).sum(axis=1)


class UncertaintySampler(Technique):
    """Pool-based active-learning query strategy (see the module docstring).

    Args:
        strategy: One of ``STRATEGIES``.
        batch_size: Examples returned per query.
        committee_size: Members of the bootstrap committee (``committee`` only).
        estimator: A scikit-learn classifier with ``predict_proba``; None means
            ``LogisticRegression(C=C, max_iter=2000)``.
        C: Inverse regularisation of the default logistic regression.
        random_state: Seeds the bootstraps, the random baseline and tie-breaks.

    Attributes:
        classes_: Labels seen in ``fit``.
        estimators_: The fitted model (one) or the committee (several).
        scores_: Informativeness of each pool example from the last ``query``.
    """

    _parameter_constraints = {
        "strategy": [Options(STRATEGIES)],
        "batch_size": [Interval(int, 1, None)],
        "committee_size": [Interval(int, 2, None)],
        "estimator": [None, _is_classifier],
        "C": [Interval(float, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, *, strategy="entropy", batch_size=10, committee_size=5, estimator=None, C=1.0, random_state=None):
        self.strategy = strategy
        self.batch_size = batch_size
        self.committee_size = committee_size
        self.estimator = estimator
        self.C = C
        self.random_state = random_state

    def _new_model(self) -> Any:
        from sklearn.base import clone
        from sklearn.linear_model import LogisticRegression

        return clone(self.estimator) if self.estimator is not None else LogisticRegression(C=self.C, max_iter=2000)

    def fit(self, X: Any, y: Any) -> UncertaintySampler:
        """Fits the model (or the bootstrap committee) on the labelled examples.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: malformed X/y or fewer than two classes.
        """
        self._validate_params()
        X, y = check_xy(X, y, "UncertaintySampler.fit")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise FlywheelError(
                f"UncertaintySampler.fit needs labelled examples of at least two classes; got only {self.classes_.tolist()}. "
                "Start with a few labels per class."
            )
        rng = np.random.default_rng(self.random_state)
        self.estimators_ = []
        if self.strategy == "random":
            return self
        members = self.committee_size if self.strategy == "committee" else 1
        for _ in range(members):
            idx = np.arange(len(y))
            if members > 1:
                idx = rng.integers(0, len(y), len(y))
                while len(np.unique(y[idx])) < 2:  # a member needs two classes to be a classifier
                    idx = rng.integers(0, len(y), len(y))
            self.estimators_.append(self._new_model().fit(X[idx], y[idx]))
        return self

    def score_pool(self, X_pool: Any) -> np.ndarray:
        """Informativeness of every pool example (higher is queried first).

        Raises:
            FlywheelError: not fitted, or the pool has the wrong number of features.
        """
        if not hasattr(self, "classes_"):
            raise FlywheelError("UncertaintySampler.score_pool called before fit; fit it on the labelled set first.")
        X_pool = np.asarray(X_pool, dtype=np.float64)
        if X_pool.ndim != 2 or (self.estimators_ and X_pool.shape[1] != self.estimators_[0].n_features_in_):
            raise FlywheelError(f"UncertaintySampler needs a pool of shape (n, n_features_seen_in_fit); got {X_pool.shape}.")
        rng = np.random.default_rng(None if self.random_state is None else self.random_state + 1)
        if self.strategy == "random":
            return rng.random(len(X_pool))
        if self.strategy == "committee":
            votes = np.stack([np.searchsorted(self.classes_, m.predict(X_pool)) for m in self.estimators_])
            scores = vote_entropy(votes, len(self.classes_))
        else:
            scores = uncertainty_scores(self.estimators_[0].predict_proba(X_pool), self.strategy)
        return scores + rng.random(len(X_pool)) * 1e-9  # seeded tie-break (vote entropy ties often)

    def query(self, X_pool: Any) -> np.ndarray:
        """Indices (into ``X_pool``) of the ``batch_size`` most informative examples, best first."""
        self.scores_ = self.score_pool(X_pool)
        return np.argsort(-self.scores_, kind="stable")[: self.batch_size]

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        from sklearn.datasets import make_classification

        X, y = make_classification(n_samples=60, n_features=5, n_informative=3, n_classes=3, random_state=0)

        def bad_input(sampler: UncertaintySampler) -> None:
            sampler.fit(X[:10], y[:9])

        return {
            "params": {"strategy": "committee", "batch_size": 5, "committee_size": 3, "random_state": 0},
            "bad_params": [{"strategy": "most_certain"}, {"batch_size": 0}, {"committee_size": 1}, {"C": -1.0}],
            "call": lambda s: s.fit(X[:30], y[:30]).query(X[30:]),
            "bad_input": bad_input,
        }

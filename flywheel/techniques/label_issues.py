"""Confident learning: flag likely label errors with cleanlab, from out-of-fold probabilities.

``ConfidentLearning`` gets out-of-fold predicted probabilities by stratified
K-fold cross-validation of a classifier (every example is scored by a model
that never saw it) and hands them to ``cleanlab.filter.find_label_issues``
(Northcutt et al., "Confident Learning", JAIR 2021)::

    finder = ConfidentLearning(cv_folds=5, random_state=0).fit(X, noisy_y)
    finder.label_issues_          # boolean mask of flagged rows
    X_clean, y_clean = finder.prune(X, noisy_y)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.techniques.active_learning import _is_classifier, check_xy
from flywheel.techniques.base import Interval, Options, Technique

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def noisy_labels(
    y: Any, *, noise_rate: float, kind: str = "symmetric", n_classes: int | None = None, random_state: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Injects label noise for experiments; returns (noisy labels, mask of flipped rows).

    ``symmetric``: a flipped label becomes any other class uniformly.
    ``class_conditional``: a flipped label of class c becomes class (c + 1) mod k
    (a fixed confusion, the structured noise confident learning models).
    Exactly ``round(noise_rate * n)`` rows are flipped.
    """
    y = np.asarray(y)
    k = n_classes or int(y.max()) + 1
    rng = np.random.default_rng(random_state)
    flip = np.zeros(len(y), dtype=bool)
    flip[rng.choice(len(y), int(round(noise_rate * len(y))), replace=False)] = True
    noisy = y.copy()
    if kind == "symmetric":
        noisy[flip] = (y[flip] + rng.integers(1, k, flip.sum())) % k
    elif kind == "class_conditional":
        noisy[flip] = (y[flip] + 1) % k
    else:
        raise FlywheelError(f"noisy_labels: kind must be 'symmetric' or 'class_conditional'; got {kind!r}.")
    return noisy, flip


class ConfidentLearning(Technique):
    """Finds label issues with cleanlab from cross-validated probabilities.

    Args:
        cv_folds: Folds of the stratified cross-validation.
        filter_by: cleanlab's ``filter_by`` (how the confident joint becomes a mask).
        estimator: A scikit-learn classifier with ``predict_proba``; None means
            standardisation + ``LogisticRegression(C=C, max_iter=2000)``.
        C: Inverse regularisation of the default logistic regression.
        random_state: Seeds the fold assignment.

    Attributes:
        pred_probs_: (n, k) out-of-fold predicted probabilities.
        label_issues_: (n,) boolean mask of flagged rows.
        label_quality_: (n,) cleanlab's self-confidence label-quality score.
    """

    _parameter_constraints = {
        "cv_folds": [Interval(int, 2, None)],
        "filter_by": [Options(FILTERS)],
        "estimator": [None, _is_classifier],
        "C": [Interval(float, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, *, cv_folds=5, filter_by="prune_by_noise_rate", estimator=None, C=1.0, random_state=None):
        self.cv_folds = cv_folds
        self.filter_by = filter_by
        self.estimator = estimator
        self.C = C
        self.random_state = random_state

    def _new_model(self) -> Any:
        from sklearn.base import clone
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.estimator is not None:
            return clone(self.estimator)
        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))

    def fit(self, X: Any, y: Any) -> ConfidentLearning:
        """Cross-validates, then flags the rows whose given label is likely wrong.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: malformed X/y, labels not 0..k-1, or a class with fewer rows than folds.
        """
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        self._validate_params()
        X, y = check_xy(X, y, "ConfidentLearning.fit")
        counts = np.bincount(y.astype(np.int64)) if np.issubdtype(y.dtype, np.integer) and y.min() >= 0 else None
        if counts is None or np.any(counts == 0) or len(counts) < 2:
            raise FlywheelError(
                f"ConfidentLearning.fit needs integer labels 0..k-1 (k >= 2) with every class present; got values {np.unique(y)[:10].tolist()}."
            )
        if counts.min() < self.cv_folds:
            raise FlywheelError(
                f"ConfidentLearning.fit needs at least cv_folds={self.cv_folds} rows per class; the smallest class has {counts.min()}. "
                "Lower cv_folds or add data."
            )
        folds = StratifiedKFold(n_splits=self.cv_folds, shuffle=True, random_state=self.random_state)
        self.pred_probs_ = cross_val_predict(self._new_model(), X, y, cv=folds, method="predict_proba")
        self.label_issues_ = np.asarray(find_label_issues(y, self.pred_probs_, filter_by=self.filter_by), dtype=bool)
        self.label_quality_ = get_label_quality_scores(y, self.pred_probs_)
        return self

    def prune(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """The rows of (X, y) not flagged by the last ``fit`` (which must have seen the same rows).

        Raises:
            FlywheelError: not fitted, or a different number of rows.
        """
        if not hasattr(self, "label_issues_") or len(self.label_issues_) != len(y):
            raise FlywheelError("ConfidentLearning.prune needs the rows the last fit saw; call fit(X, y) first.")
        keep = ~self.label_issues_
        return np.asarray(X)[keep], np.asarray(y)[keep]

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        from sklearn.datasets import make_classification

        X, y = make_classification(n_samples=90, n_features=6, n_informative=4, n_classes=3, random_state=0)
        noisy, _ = noisy_labels(y, noise_rate=0.2, random_state=0)

        def bad_input(finder: ConfidentLearning) -> None:
            finder.fit(X, np.zeros(len(X), dtype=int))

        return {
            "params": {"cv_folds": 3, "random_state": 0},
            "bad_params": [{"cv_folds": 1}, {"filter_by": "all"}, {"C": 0.0}, {"random_state": -2}],
            "call": lambda finder: (finder.fit(X, noisy).label_issues_, finder.pred_probs_),
            "bad_input": bad_input,
        }

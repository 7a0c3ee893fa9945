"""Explaining predictions on tables: KernelSHAP and LIME, each with its faithfulness check.

Both explainers take a model as a plain ``predict_fn``: a function from a
numeric matrix ``(n, d)`` to class probabilities ``(n, k)``. (A flywheel model
takes a dict of raw features; ``flywheel.components.explain`` encodes strings
as category codes and back, so these classes never see strings.)

* ``KernelShap`` (Lundberg & Lee 2017, ``shap.KernelExplainer``): Shapley
  values per feature and class against a background sample. Faithfulness:
  ``additivity_errors`` — the values plus the base value must add up to the
  model output, per prediction.
* ``LimeTabular`` (Ribeiro et al. 2016, ``lime.lime_tabular``): a weighted
  linear surrogate around each prediction; ``scores_`` holds the surrogate's
  R² on its perturbed neighbourhood.
* ``deletion_test``: replaces the top-k attributed features of each row with
  a baseline value and measures how far the predicted class's probability
  moves, against replacing k random features (averaged over rows and draws).
  A faithful attribution moves the prediction more than a random one.

::

    shap_ = KernelShap(background_size=20, random_state=0).fit(predict, X_train)
    values = shap_.explain(X)                       # (n, d, k)
    errors = additivity_errors(values, shap_.expected_value_, predict(X))
    lime_ = LimeTabular(num_samples=500, random_state=0).fit(predict, X_train)
    weights = lime_.explain(X)                      # (n, d), predicted class
    result = deletion_test(predict, X, weights, X_train.mean(axis=0), k=2, random_state=0)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from flywheel.techniques._checks import TechniqueInputError
from flywheel.techniques.base import Interval, Technique, validate_parameter

PredictFn = Callable[[np.ndarray], np.ndarray]


def _check_matrix(owner: str, x: Any, *, columns: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 (n, d) matrix, or a TechniqueInputError that says what is wrong."""
    array = np.asarray(x)
    if array.ndim != 2 or len(array) == 0 or not np.issubdtype(array.dtype, np.number):
        raise TechniqueInputError(
            f"{owner} needs a non-empty numeric matrix (rows, features); got shape {array.shape} and dtype "
            f"{array.dtype}. Encode categorical features as numbers first."
        )
    array = array.astype("float64")
    if not np.isfinite(array).all():
        raise TechniqueInputError(f"{owner} needs finite features; the input holds NaN or inf. Impute them first.")
    if columns is not None and array.shape[1] != columns:
        raise TechniqueInputError(
            f"{owner} was fitted on {columns} features; got a matrix with {array.shape[1]}. "
            "Explain rows with the same columns as the background."
        )
    return array


def _check_predict(owner: str, predict_fn: Any, sample: np.ndarray) -> np.ndarray:
    """Calls ``predict_fn`` on a sample and checks it returns (n, k >= 2) probabilities."""
    if not callable(predict_fn):
        raise TechniqueInputError(f"{owner} needs a callable predict_fn (matrix -> probabilities); got {predict_fn!r}.")
    out = np.asarray(predict_fn(sample), dtype="float64")
    if out.ndim != 2 or out.shape[0] != len(sample) or out.shape[1] < 2:
        raise TechniqueInputError(
            f"{owner} needs predict_fn to return class probabilities of shape ({len(sample)}, classes >= 2); "
            f"got shape {out.shape}."
        )
    return out


class _SeededNumpy:
    """Seeds NumPy's global generator (shap samples coalitions with it) and restores it on exit."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.saved = np.random.get_state()
        if self.seed is not None:
            np.random.seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        np.random.set_state(self.saved)


class KernelShap(Technique):
    """KernelSHAP (``shap.KernelExplainer``, identity link) over a sampled background.

    Args:
        background_size: Rows of the background sample that stands for
            "feature absent" (drawn without replacement from the fit data).
        nsamples: Coalitions evaluated per explained row; with d features,
            ``nsamples >= 2**d - 2`` enumerates them all (exact Shapley values).
        random_state: Seeds the background draw and the coalition sampling.

    Attributes (after ``fit``):
        background_: The background rows, (background_size, d).
        expected_value_: Mean model output over the background, (k,).
    """

    _parameter_constraints = {
        "background_size": [Interval(int, 1, None)],
        "nsamples": [Interval(int, 2, None)],
        "random_state": ["random_state"],
    }

    def __init__(self, *, background_size: int = 20, nsamples: int = 200, random_state: int | None = None) -> None:
        self.background_size = background_size
        self.nsamples = nsamples
        self.random_state = random_state

    def fit(self, predict_fn: PredictFn, X: Any) -> KernelShap:
        """Draws the background from ``X`` and computes the base value."""
        self._validate_params()
        X = _check_matrix("KernelShap", X)
        rng = np.random.default_rng(self.random_state)
        size = min(self.background_size, len(X))
        self.background_ = X[np.sort(rng.choice(len(X), size, replace=False))]
        outputs = _check_predict("KernelShap", predict_fn, self.background_)
        self.predict_fn_ = predict_fn
        self.expected_value_ = outputs.mean(axis=0)
        return self

    def explain(self, X: Any) -> np.ndarray:
        """Shapley values of every row, feature and class: an array (n, d, k)."""
        import shap

        X = _check_matrix("KernelShap", X, columns=self.background_.shape[1])
        explainer = shap.KernelExplainer(self.predict_fn_, self.background_, link="identity")
        with _SeededNumpy(self.random_state):
            values = explainer.shap_values(X, nsamples=self.nsamples, silent=True)
        values = np.asarray(values, dtype="float64")
        if values.ndim == 3 and values.shape[0] == len(self.expected_value_) and values.shape[1] == len(X):
            values = np.transpose(values, (1, 2, 0))  # older shap: a list per class
        return values

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        return _kernel_shap_case()


def additivity_errors(values: np.ndarray, base_values: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Per row, the largest |sum of SHAP values + base value - model output| over classes.

    Args:
        values: SHAP values (n, d, k).
        base_values: Base (expected) value per class (k,).
        outputs: Model outputs (n, k) of the explained rows.
    """
    values = np.asarray(values, dtype="float64")
    reconstructed = values.sum(axis=1) + np.asarray(base_values, dtype="float64")[None, :]
    return np.abs(reconstructed - np.asarray(outputs, dtype="float64")).max(axis=1)


class LimeTabular(Technique):
    """LIME for tables (``lime.lime_tabular.LimeTabularExplainer``), one class per row.

    Args:
        num_samples: Perturbed neighbours per explained row.
        kernel_width: Width of the exponential proximity kernel; None is
            LIME's default (0.75 * sqrt(d)).
        discretize_continuous: Quartile-discretise numeric features (LIME's default).
        random_state: Seeds the neighbourhood sampling.

    Attributes (after ``explain``):
        scores_: R² of each row's weighted linear surrogate on its neighbourhood, (n,).
        local_predictions_: The surrogate's prediction at each row, (n,).
        labels_: The explained class of each row, (n,).
        intercepts_: The surrogate's intercept per row, (n,).
    """

    _parameter_constraints = {
        "num_samples": [Interval(int, 10, None)],
        "kernel_width": [Interval(float, 0, None, closed="neither"), None],
        "discretize_continuous": [bool],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        num_samples: int = 500,
        kernel_width: float | None = None,
        discretize_continuous: bool = True,
        random_state: int | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.kernel_width = kernel_width
        self.discretize_continuous = discretize_continuous
        self.random_state = random_state

    def fit(
        self,
        predict_fn: PredictFn,
        X: Any,
        *,
        feature_names: Sequence[str] | None = None,
        categorical_features: Sequence[int] = (),
    ) -> LimeTabular:
        """Learns the feature statistics LIME samples neighbours from (``X``: training rows)."""
        self._validate_params()
        X = _check_matrix("LimeTabular", X)
        _check_predict("LimeTabular", predict_fn, X[:2])
        names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise TechniqueInputError(
                f"LimeTabular needs one feature name per column ({X.shape[1]}); got {len(names)}: {names}."
            )
        bad = [i for i in categorical_features if not 0 <= int(i) < X.shape[1]]
        if bad:
            raise TechniqueInputError(
                f"LimeTabular's categorical_features must be column indices in [0, {X.shape[1]}); got {bad}."
            )
        self.feature_names_ = names
        self.categorical_features_ = [int(i) for i in categorical_features]
        self.training_data_ = X
        self.predict_fn_ = predict_fn
        return self

    def explain(self, X: Any, labels: Sequence[int] | None = None) -> np.ndarray:
        """LIME weights of every row's feature for its class, an array (n, d).

        Args:
            X: Rows to explain (n, d).
            labels: The class to explain per row; None explains the predicted class.
        """
        from lime.lime_tabular import LimeTabularExplainer

        X = _check_matrix("LimeTabular", X, columns=self.training_data_.shape[1])
        if labels is None:
            labels = np.asarray(self.predict_fn_(X)).argmax(axis=1)
        labels = np.asarray(labels, dtype=int)
        if labels.shape != (len(X),):
            raise TechniqueInputError(f"LimeTabular needs one label per row ({len(X)}); got shape {labels.shape}.")
        explainer = LimeTabularExplainer(
            self.training_data_,
            mode="classification",
            feature_names=self.feature_names_,
            categorical_features=self.categorical_features_,
            kernel_width=self.kernel_width,
            discretize_continuous=self.discretize_continuous,
            random_state=self.random_state,
        )
        weights = np.zeros(X.shape, dtype="float64")
        scores, local, intercepts = [], [], []
        for i, (row, label) in enumerate(zip(X, labels)):
            explanation = explainer.explain_instance(
                row, self.predict_fn_, labels=(int(label),), num_features=X.shape[1], num_samples=self.num_samples
            )
            for feature, weight in explanation.local_exp[int(label)]:
                weights[i, feature] = weight
            scores.append(float(explanation.score))
            local.append(float(np.ravel(explanation.local_pred)[0]))
            intercepts.append(float(explanation.intercept[int(label)]))
        self.scores_ = np.asarray(scores)
        self.local_predictions_ = np.asarray(local)
        self.intercepts_ = np.asarray(intercepts)
        self.labels_ = labels
        return weights

    def removal_effects(self, X: Any, weights: Any, baseline: Any) -> np.ndarray:
        """The surrogate's own estimate of each feature's contribution over ``baseline``, (n, d).

        Positive means the row's value raises the class probability over the
        baseline value, so removing the feature would lower it by that much.

        Removing = replacing the feature by ``baseline``. Needs
        ``discretize_continuous=False``, where the surrogate is linear in the
        standardised numbers (``w * (x - b) / std``) and in "same category as
        the row" indicators (``w * [b != x]``); these, not the raw weights,
        are the attributions the deletion test ranks.

        Raises:
            TechniqueInputError: the explainer discretises numbers, or shapes differ.
        """
        if self.discretize_continuous:
            raise TechniqueInputError(
                "LimeTabular.removal_effects needs discretize_continuous=False (a linear surrogate over the "
                "numbers); got discretize_continuous=True. Construct it with discretize_continuous=False."
            )
        X = _check_matrix("LimeTabular", X, columns=self.training_data_.shape[1])
        weights = np.asarray(weights, dtype="float64")
        baseline = np.asarray(baseline, dtype="float64")
        if weights.shape != X.shape or baseline.shape != (X.shape[1],):
            raise TechniqueInputError(
                f"LimeTabular.removal_effects needs weights of shape {X.shape} and a baseline of shape "
                f"({X.shape[1]},); got {weights.shape} and {baseline.shape}."
            )
        scale = self.training_data_.std(axis=0)
        scale[scale == 0] = 1.0
        effects = weights * (X - baseline[None, :]) / scale[None, :]
        for i in self.categorical_features_:
            effects[:, i] = weights[:, i] * (X[:, i] != baseline[i])
        return effects

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        return _lime_case()


@dataclasses.dataclass(frozen=True)
class DeletionResult:
    """Outcome of ``deletion_test``: mean |change| of the explained class's probability.

    Attributes:
        top_change: Mean over rows when the k top-attributed features are replaced.
        random_change: Mean over rows and draws when k random features are replaced.
        top_per_row: Per-row change for the top features, (n,).
        random_per_row: Per-row change averaged over the random draws, (n,).
        k: Features replaced per row.
    """

    top_change: float
    random_change: float
    top_per_row: np.ndarray
    random_per_row: np.ndarray
    k: int


def deletion_test(
    predict_fn: PredictFn,
    X: Any,
    attributions: Any,
    baseline: Any,
    *,
    k: int = 1,
    labels: Sequence[int] | None = None,
    n_random: int = 10,
    random_state: int | None = None,
) -> DeletionResult:
    """Replaces each row's k most-attributed features (by |attribution|) with ``baseline`` values.

    Args:
        predict_fn: Matrix -> probabilities.
        X: Explained rows (n, d).
        attributions: Per-row feature attributions for the explained class (n, d).
        baseline: The "removed" value of each feature (d,), e.g. the training
            mean (and mode for categorical codes).
        k: Features replaced per row.
        labels: Explained class per row; None uses the predicted class.
        n_random: Random draws of k features per row for the baseline comparison.
        random_state: Seeds the random draws.

    Raises:
        ParameterError: k or n_random is out of range.
        TechniqueInputError: shapes do not fit together.
    """
    X = _check_matrix("deletion_test", X)
    attributions = np.asarray(attributions, dtype="float64")
    baseline = np.asarray(baseline, dtype="float64")
    n, d = X.shape
    validate_parameter("deletion_test", "k", k, [Interval(int, 1, d)])
    validate_parameter("deletion_test", "n_random", n_random, [Interval(int, 1, None)])
    if attributions.shape != X.shape or baseline.shape != (d,):
        raise TechniqueInputError(
            f"deletion_test needs attributions of shape {X.shape} and a baseline of shape ({d},); "
            f"got {attributions.shape} and {baseline.shape}."
        )
    original = np.asarray(predict_fn(X), dtype="float64")
    labels = original.argmax(axis=1) if labels is None else np.asarray(labels, dtype=int)
    rows = np.arange(n)
    before = original[rows, labels]
    top = np.argsort(-np.abs(attributions), axis=1, kind="stable")[:, :k]
    removed = X.copy()
    removed[rows[:, None], top] = baseline[top]
    top_change = np.abs(before - np.asarray(predict_fn(removed))[rows, labels])
    rng = np.random.default_rng(random_state)
    batches = []
    for _ in range(n_random):
        picked = np.argsort(rng.random((n, d)), axis=1)[:, :k]
        batch = X.copy()
        batch[rows[:, None], picked] = baseline[picked]
        batches.append(batch)
    predicted = np.asarray(predict_fn(np.concatenate(batches)), dtype="float64").reshape(n_random, n, -1)
    random_change = np.abs(before[None, :] - predicted[:, rows, labels]).mean(axis=0)
    return DeletionResult(float(top_change.mean()), float(random_change.mean()), top_change, random_change, k)


def _linear_case() -> tuple[np.ndarray, PredictFn]:
    """A tiny 3-class logistic model over 4 features (the contract suite's problem)."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=80, n_features=4, n_informative=3, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, random_state=0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    return X, model.predict_proba


def _kernel_shap_case() -> dict[str, Any]:
    X, predict = _linear_case()
    return {
        "params": {"background_size": 10, "nsamples": 40, "random_state": 0},
        "bad_params": [{"background_size": 0}, {"nsamples": 1}, {"random_state": -1}],
        "call": lambda technique: technique.fit(predict, X).explain(X[:3]),
        "bad_input": lambda technique: technique.fit(predict, np.full((5, 4), np.nan)),
        "shapes": lambda values: np.asarray(values).shape == (3, 4, 3),
    }


def _lime_case() -> dict[str, Any]:
    X, predict = _linear_case()

    def call(technique: LimeTabular) -> tuple[np.ndarray, np.ndarray]:
        weights = technique.fit(predict, X).explain(X[:3])
        return weights, technique.scores_

    return {
        "params": {"num_samples": 100, "random_state": 0},
        "bad_params": [{"num_samples": 5}, {"kernel_width": -1.0}, {"discretize_continuous": "yes"}, {"random_state": -3}],
        "call": call,
        "bad_input": lambda technique: technique.fit(predict, X).explain(X[:2, :3]),
    }


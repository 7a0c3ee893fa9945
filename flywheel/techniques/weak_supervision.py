"""Weak supervision: labeling functions, their summary, and a generative label model.

A labeling function (LF) looks at one example and votes a class or abstains.
Two ways to write one, both usable from a pipeline file:

* a JSON rule (parameters must be JSON, so this is what a pipeline file
  passes most easily)::

      {"name": "big_radius", "feature": "mean_radius", "op": ">", "value": 15, "label": 0}

  votes ``label`` where the condition holds and abstains elsewhere;
  ``op`` is one of > >= < <= == != in;

* Python code in an importable module, referred to as ``"package.module:name"``::

      @labeling_function()
      def short_text(row):            # row: a dict of the example's columns
          return 1 if len(row["text"]) < 20 else ABSTAIN

``apply_labeling_functions`` builds the label matrix L (n examples x m LFs,
class indices, -1 = abstain); ``lf_summary`` is Snorkel's LF summary
(polarity, coverage, overlaps, conflicts, and empirical accuracy when gold
labels are known); ``LabelModel`` learns every LF's class-conditional vote
distribution *without labels* by EM on a conditionally independent model
(Dawid & Skene 1979, the generative model behind Snorkel's first label model)
and returns probabilistic labels; ``majority_vote`` is the baseline.

Correlated LFs (say four size thresholds that make the same mistakes) break
the independence assumption: their shared error is counted four times. The
label model therefore groups LFs whose firing sets overlap strongly (Jaccard
similarity above ``dependency_threshold``) and counts each member's vote with
weight 1 / group size: a simple, label-free stand-in for the dependency
structure Snorkel learns.
"""

from __future__ import annotations

import dataclasses
import importlib
import operator
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from flywheel.errors import FlywheelError, ParameterError
from flywheel.techniques.base import Interval, Technique

if TYPE_CHECKING:
    import pandas as pd

ABSTAIN = -1
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


@dataclasses.dataclass(frozen=True)
class LabelingFunction:
    """A named voter: ``vote(frame)`` returns one label value (or ABSTAIN) per row."""

    name: str
    fn: Callable[[dict[str, Any]], Any] | None = None
    rule: dict[str, Any] | None = None

    def vote(self, frame: pd.DataFrame) -> np.ndarray:
        if self.rule is not None:
            column = frame[self.rule["feature"]]
            if self.rule["op"] == "in":
                hit = column.isin(list(self.rule["value"])).to_numpy()
            else:
                hit = _OPS[self.rule["op"]](column, self.rule["value"]).fillna(False).to_numpy(dtype=bool)
            votes = np.full(len(frame), ABSTAIN, dtype=object)
            votes[hit] = self.rule["label"]
            return votes
        return np.array([self.fn(row) for row in frame.to_dict(orient="records")], dtype=object)

    def __call__(self, row: dict[str, Any]) -> Any:
        import pandas as pd

        return self.vote(pd.DataFrame([row]))[0]


def labeling_function(name: str | None = None) -> Callable[[Callable[..., Any]], LabelingFunction]:
    """Decorator: turns ``fn(row: dict) -> label or ABSTAIN`` into a LabelingFunction."""

    def wrap(fn: Callable[..., Any]) -> LabelingFunction:
        return LabelingFunction(name=name or fn.__name__, fn=fn)

    return wrap


def rule(spec: dict[str, Any]) -> LabelingFunction:
    """A LabelingFunction from a JSON rule (see the module docstring).

    Raises:
        ParameterError: a key is missing or the operator is unknown.
    """
    missing = [k for k in ("feature", "op", "value", "label") if k not in spec]
    ops = sorted(_OPS) + ["in"]
    if missing or spec.get("op") not in ops:
        raise ParameterError(
            f"A labeling-function rule needs keys feature, op (one of {' '.join(ops)}), value and label; "
            f"got {spec!r}. Example: {{\"feature\": \"mean_radius\", \"op\": \">\", \"value\": 15, \"label\": 0}}."
        )
    name = spec.get("name") or f"{spec['feature']}{spec['op']}{spec['value']}->{spec['label']}"
    return LabelingFunction(name=str(name), rule=dict(spec))


def resolve_labeling_functions(specs: list[Any]) -> list[LabelingFunction]:
    """LabelingFunctions from JSON rules, ``"module:name"`` references or LabelingFunction objects.

    Raises:
        ParameterError: an entry is none of these, or its module/name cannot be imported.
    """
    lfs: list[LabelingFunction] = []
    for spec in specs:
        if isinstance(spec, LabelingFunction):
            lfs.append(spec)
        elif isinstance(spec, dict):
            lfs.append(rule(spec))
        elif isinstance(spec, str) and ":" in spec:
            module_name, _, attr = spec.partition(":")
            try:
                found = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ParameterError(f"Labeling function {spec!r} cannot be imported ({exc}); use 'package.module:name'.") from exc
            lfs.append(found if isinstance(found, LabelingFunction) else LabelingFunction(name=attr, fn=found))
        else:
            raise ParameterError(
                f"A labeling function must be a JSON rule (dict) or 'package.module:name'. Got {spec!r} instead."
            )
    names = [lf.name for lf in lfs]
    if len(set(names)) != len(names):
        raise ParameterError(f"Labeling-function names must be unique; got {names}.")
    return lfs


def apply_labeling_functions(frame: pd.DataFrame, lfs: list[LabelingFunction], classes: list[Any]) -> np.ndarray:
    """The label matrix L (len(frame) x len(lfs)): class indices, ABSTAIN (-1) where an LF abstains.

    Raises:
        FlywheelError: an LF votes a value that is not a class, or reads a missing column.
    """
    index = {c: i for i, c in enumerate(classes)}
    L = np.full((len(frame), len(lfs)), ABSTAIN, dtype=np.int64)
    for j, lf in enumerate(lfs):
        try:
            votes = lf.vote(frame)
        except KeyError as exc:
            raise FlywheelError(f"Labeling function '{lf.name}' reads column {exc} which the data lacks; columns: {list(frame.columns)}.") from exc
        for i, vote in enumerate(votes):
            if vote is None or (not isinstance(vote, str) and vote == ABSTAIN):
                continue
            if vote not in index:
                raise FlywheelError(f"Labeling function '{lf.name}' voted {vote!r}, which is not a class; classes: {classes}.")
            L[i, j] = index[vote]
    return L


def check_label_matrix(L: Any, cardinality: int, where: str) -> np.ndarray:
    """L as a 2-D int array with values in [-1, cardinality).

    Raises:
        FlywheelError: wrong shape or out-of-range votes.
    """
    L = np.asarray(L)
    if L.ndim != 2 or L.shape[0] == 0 or L.shape[1] == 0 or not np.issubdtype(L.dtype, np.integer):
        raise FlywheelError(f"{where} needs an integer label matrix of shape (n_examples, n_lfs); got {L.dtype} {L.shape}.")
    if L.min() < ABSTAIN or L.max() >= cardinality:
        raise FlywheelError(f"{where}: votes must be -1 (abstain) or a class index below {cardinality}; got values {L.min()}..{L.max()}.")
    return L.astype(np.int64)


def lf_summary(L: Any, y: Any = None, names: list[str] | None = None) -> pd.DataFrame:
    """Snorkel's LF summary: polarity, coverage, overlaps, conflicts (+ correct/incorrect/accuracy with gold y)."""
    import pandas as pd

    L = np.asarray(L)
    fired = L != ABSTAIN
    n_fired = fired.sum(axis=1)
    rows = []
    for j in range(L.shape[1]):
        on = fired[:, j]
        others = np.delete(L, j, axis=1)
        conflict = on & ((others != ABSTAIN) & (others != L[:, [j]])).any(axis=1)
        row = {
            "lf": names[j] if names else j,
            "polarity": sorted(np.unique(L[on, j]).tolist()),
            "coverage": float(on.mean()),
            "overlaps": float((on & (n_fired > 1)).mean()),
            "conflicts": float(conflict.mean()),
        }
        if y is not None:
            correct = int((L[on, j] == np.asarray(y)[on]).sum())
            row.update({"correct": correct, "incorrect": int(on.sum()) - correct, "emp_accuracy": correct / max(int(on.sum()), 1)})
        rows.append(row)
    return pd.DataFrame(rows)


def majority_vote(L: Any, cardinality: int) -> np.ndarray:
    """Probabilistic majority vote: ties share the mass, all-abstain rows are uniform."""
    L = check_label_matrix(L, cardinality, "majority_vote")
    counts = np.stack([(L == c).sum(axis=1) for c in range(cardinality)], axis=1).astype(np.float64)
    best = counts == counts.max(axis=1, keepdims=True)
    return best / best.sum(axis=1, keepdims=True)


class LabelModel(Technique):
    """Generative label model: EM on conditionally independent LFs (Dawid-Skene).

    Each LF j has a vote distribution ``P(L_j = v | y = c)`` over v in
    {abstain, 0..k-1}; modelling abstentions lets the model use *which* LFs
    fire, which matters for LFs that vote one class only. EM starts from
    majority vote, so class indices keep their meaning.

    Args:
        cardinality: Number of classes k.
        max_iter: Most EM iterations.
        tol: Stop when the mean change of the probabilistic labels is below it.
        smoothing: Dirichlet pseudo-count added to every vote count (keeps
            probabilities off 0 for LFs with few votes).
        dependency_threshold: LFs whose firing sets have a Jaccard similarity
            above it form a group whose votes share one unit of weight; None
            assumes independent LFs (plain Dawid-Skene).

    Attributes:
        class_prior_: Learnt P(y = c).
        conditional_: (m, k, k + 1) learnt P(L_j = v | y = c); column 0 is abstain.
        lf_accuracy_: (m,) learnt P(vote correct | LF fires).
        n_iter_: EM iterations run.
        lf_groups_: (m,) group id of every LF (see dependency_threshold).
        lf_weights_: (m,) weight of every LF's vote (1 / group size).
    """

    _parameter_constraints = {
        "cardinality": [Interval(int, 2, None)],
        "max_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None, closed="neither")],
        "smoothing": [Interval(float, 0, None, closed="neither")],
        "dependency_threshold": [Interval(float, 0, 1, closed="right"), None],
    }

    def __init__(self, *, cardinality=2, max_iter=200, tol=1e-6, smoothing=1.0, dependency_threshold=0.8):
        self.cardinality = cardinality
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.dependency_threshold = dependency_threshold

    def _groups(self, L: np.ndarray) -> np.ndarray:
        m = L.shape[1]
        groups = np.arange(m)
        if self.dependency_threshold is None:
            return groups
        fired = (L != ABSTAIN).astype(np.float64)
        both = fired.T @ fired
        either = fired.sum(axis=0)[:, None] + fired.sum(axis=0)[None, :] - both
        similar = both / np.maximum(either, 1.0) > self.dependency_threshold
        for a in range(m):  # connected components, by relabelling
            for b in range(a + 1, m):
                if similar[a, b] and groups[a] != groups[b]:
                    groups[groups == groups[b]] = groups[a]
        return groups

    def _m_step(self, onehot: np.ndarray, q: np.ndarray) -> None:
        # counts[j, c, v] = sum_i q[i, c] * [L_ij == v - 1]
        counts = np.einsum("ic,ijv->jcv", q, onehot) + self.smoothing
        self.conditional_ = counts / counts.sum(axis=2, keepdims=True)
        self.class_prior_ = (q.sum(axis=0) + self.smoothing) / (len(q) + self.smoothing * self.cardinality)

    def _posterior(self, onehot: np.ndarray) -> np.ndarray:
        log_q = np.log(self.class_prior_)[None, :] + np.einsum(
            "ijv,jcv,j->ic", onehot, np.log(self.conditional_), self.lf_weights_
        )
        log_q -= log_q.max(axis=1, keepdims=True)
        q = np.exp(log_q)
        return q / q.sum(axis=1, keepdims=True)

    def _onehot(self, L: np.ndarray) -> np.ndarray:
        return np.eye(self.cardinality + 1)[L + 1]  # (n, m, k+1)

    def fit(self, L: Any) -> LabelModel:
        """Learns the LF vote distributions from the label matrix alone.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: L is malformed.
        """
        self._validate_params()
        L = check_label_matrix(L, self.cardinality, "LabelModel.fit")
        onehot = self._onehot(L)
        self.lf_groups_ = self._groups(L)
        self.lf_weights_ = 1.0 / np.bincount(self.lf_groups_, minlength=L.shape[1])[self.lf_groups_]
        q = majority_vote(L, self.cardinality)
        self.n_iter_ = 0
        for self.n_iter_ in range(1, self.max_iter + 1):
            self._m_step(onehot, q)
            new_q = self._posterior(onehot)
            change = float(np.abs(new_q - q).mean())
            q = new_q
            if change < self.tol:
                break
        self._m_step(onehot, q)
        diag = np.stack([self.conditional_[:, c, c + 1] for c in range(self.cardinality)], axis=1)
        fires = 1.0 - self.conditional_[:, :, 0]
        self.lf_accuracy_ = (diag * self.class_prior_).sum(axis=1) / np.maximum((fires * self.class_prior_).sum(axis=1), 1e-12)
        return self

    def predict_proba(self, L: Any) -> np.ndarray:
        """P(y = c | the LF votes) for every row of L.

        Raises:
            FlywheelError: not fitted, or L is malformed / has another number of LFs.
        """
        if not hasattr(self, "conditional_"):
            raise FlywheelError("LabelModel.predict_proba called before fit; fit it on the label matrix first.")
        L = check_label_matrix(L, self.cardinality, "LabelModel.predict_proba")
        if L.shape[1] != self.conditional_.shape[0]:
            raise FlywheelError(f"LabelModel was fitted on {self.conditional_.shape[0]} LFs; got a matrix with {L.shape[1]}.")
        return self._posterior(self._onehot(L))

    def predict(self, L: Any) -> np.ndarray:
        """The most probable class of every row (ties to the lower index)."""
        return self.predict_proba(L).argmax(axis=1)

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, 80)
        L = np.where(rng.random((80, 4)) < [0.9, 0.7, 0.6, 0.5], y[:, None], rng.integers(0, 3, (80, 4)))
        L = np.where(rng.random((80, 4)) < 0.3, ABSTAIN, L)

        def bad_input(model: LabelModel) -> None:
            model.fit(np.full((5, 3), 7))

        return {
            "params": {"cardinality": 3, "max_iter": 50},
            "bad_params": [{"cardinality": 1}, {"max_iter": 0}, {"tol": 0.0}, {"smoothing": -1.0}, {"dependency_threshold": 0.0}],
            "call": lambda model: model.fit(L).predict_proba(L),
            "bad_input": bad_input,
        }


def pretrain_finetune(
    X_weak: Any,
    proba_weak: Any,
    X_gold: Any,
    y_gold: Any,
    *,
    hidden_units: int = 32,
    pretrain_epochs: int = 200,
    finetune_epochs: int = 100,
    random_state: int | None = None,
) -> Any:
    """Weakly supervised pre-training: an MLP fitted on probabilistic labels, then fine-tuned on gold.

    Soft labels enter as weighted copies of each row (weight P(y = c)), which
    is exactly cross-entropy against the soft target. Fine-tuning continues
    from the pre-trained weights (``warm_start``) on the gold rows only.

    Returns:
        The fitted ``sklearn.neural_network.MLPClassifier`` (with a scaler in a Pipeline).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    X_weak = np.asarray(X_weak, dtype=np.float64)
    proba = np.asarray(proba_weak, dtype=np.float64)
    k = proba.shape[1]
    scaler = StandardScaler().fit(np.vstack([X_weak, np.asarray(X_gold, dtype=np.float64)]))
    Xw = scaler.transform(np.repeat(X_weak, k, axis=0))
    yw = np.tile(np.arange(k), len(X_weak))
    keep = proba.reshape(-1) > 1e-3
    mlp = MLPClassifier(hidden_layer_sizes=(hidden_units,), max_iter=pretrain_epochs, random_state=random_state, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(Xw[keep], yw[keep], sample_weight=proba.reshape(-1)[keep])
        mlp.set_params(max_iter=finetune_epochs)
        mlp.fit(scaler.transform(np.asarray(X_gold, dtype=np.float64)), np.asarray(y_gold))
    from sklearn.pipeline import Pipeline

    return Pipeline([("scale", scaler), ("mlp", mlp)])

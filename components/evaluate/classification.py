"""Classification metrics (scikit-learn), per slice, and KFP's metric shapes.

Why scikit-learn and not TensorFlow Model Analysis: measured on this stack
(2 CPU cores, penguins eval split of 86 rows, 3 slicing specs),
``tfma.analyze_raw_data`` costs ~0.95 s extra import and ~3.5 s cold / 2.2 s
warm per call, because it builds and runs a Beam pipeline even for 86 rows;
evaluate needs two calls (candidate and served model), ~6 s of a 15 s budget
for the whole six-step pipeline. The same metrics from scikit-learn take
milliseconds. ``benchmarks/model_components.py --tfma`` re-measures.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np

MISSING_SLICE = "(missing)"
SCALAR_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "roc_auc_ovr",
    "average_precision",
)


def classification_metrics(y_true: Sequence[str], proba: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted class probabilities against true class names.

    Args:
        y_true: True class names (strings); names the model does not know count
            as errors.
        proba: ``(n, len(class_names))`` probabilities, columns in ``class_names`` order.
        class_names: The model's classes.

    Returns:
        ``count``, the ``SCALAR_METRICS`` (macro averages; ROC-AUC and average
        precision are one-vs-rest means over classes that have both positives
        and negatives, None when no class has), ``per_class`` and
        ``confusion_matrix`` (``labels`` and ``matrix``, rows = true class).
    """
    import numpy as np
    from sklearn import metrics as skm

    y_true = np.asarray([str(v) for v in y_true], dtype=object)
    proba = np.asarray(proba, dtype="float64").reshape(len(y_true), len(class_names))
    names = np.asarray(list(class_names), dtype=object)
    y_pred = names[proba.argmax(axis=1)] if len(y_true) else np.asarray([], dtype=object)
    labels = list(class_names) + sorted(set(y_true) - set(class_names))
    result: dict[str, Any] = {"count": int(len(y_true))}
    if not len(y_true):
        return {**result, **{m: None for m in SCALAR_METRICS}, "per_class": {}, "confusion_matrix": None}
    result["accuracy"] = float(skm.accuracy_score(y_true, y_pred))
    result["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, y_pred))
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    result["precision_macro"], result["recall_macro"], result["f1_macro"] = float(p), float(r), float(f)
    p, r, f, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=list(class_names), average=None, zero_division=0
    )
    per_class: dict[str, dict[str, Any]] = {}
    aucs, aps = [], []
    for i, name in enumerate(class_names):
        positives = y_true == name
        auc = ap = None
        if 0 < positives.sum() < len(y_true):
            auc = float(skm.roc_auc_score(positives, proba[:, i]))
            ap = float(skm.average_precision_score(positives, proba[:, i]))
            aucs.append(auc)
            aps.append(ap)
        per_class[name] = {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(support[i]),
            "roc_auc": auc,
            "average_precision": ap,
        }
    result["roc_auc_ovr"] = float(np.mean(aucs)) if aucs else None
    result["average_precision"] = float(np.mean(aps)) if aps else None
    result["per_class"] = per_class
    result["confusion_matrix"] = {
        "labels": labels,
        "matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    return result


def sliced_metrics(
    frame: Any,
    y_true: Sequence[str],
    proba: np.ndarray,
    class_names: Sequence[str],
    slice_features: Sequence[str],
    *,
    max_values: int = 50,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Metrics per value of each slice feature.

    Returns:
        ``({feature: {value: metrics}}, notes)``; notes say which slice
        features were skipped and why (absent from the data, too many values).
    """
    import numpy as np

    y_true = np.asarray([str(v) for v in y_true], dtype=object)
    slices: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for feature in slice_features:
        if feature not in frame.columns:
            notes.append(f"slice feature '{feature}' is not a column of the eval data; skipped")
            continue
        column = frame[feature]
        values = np.asarray([MISSING_SLICE if _is_missing(v) else str(v) for v in column], dtype=object)
        distinct = sorted(set(values))
        if len(distinct) > max_values:
            notes.append(f"slice feature '{feature}' has {len(distinct)} values (> {max_values}); skipped")
            continue
        with warnings.catch_warnings():
            # A slice often holds one class (all Torgersen penguins are Adelie); sklearn warns, the numbers stand.
            warnings.simplefilter("ignore", UserWarning)
            slices[feature] = {
                value: classification_metrics(y_true[values == value], proba[values == value], class_names)
                for value in distinct
            }
    return slices, notes


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def headline(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of a ``classification_metrics`` result (JSON and MLMD friendly)."""
    return {name: metrics.get(name) for name in SCALAR_METRICS}


def kfp_confusion_matrix(confusion: dict[str, Any]) -> dict[str, Any]:
    """KFP's ClassificationMetrics confusion-matrix shape."""
    return {
        "annotationSpecs": [{"displayName": str(name)} for name in confusion["labels"]],
        "rows": [{"row": [int(v) for v in row]} for row in confusion["matrix"]],
    }


def kfp_roc_curves(
    y_true: Sequence[str], proba: np.ndarray, class_names: Sequence[str], *, max_points: int = 200
) -> tuple[list[dict[str, float]], dict[str, list[dict[str, float]]]]:
    """ROC points in KFP's ``confidenceMetrics`` shape: micro-average, and per class.

    Returns:
        ``(micro_average_points, {class: points})``; each point is
        ``{"confidenceThreshold", "recall", "falsePositiveRate"}``.
    """
    import numpy as np
    from sklearn.metrics import roc_curve

    y_true = np.asarray([str(v) for v in y_true], dtype=object)
    onehot = np.stack([y_true == name for name in class_names], axis=1)
    per_class = {}
    for i, name in enumerate(class_names):
        if 0 < onehot[:, i].sum() < len(y_true):
            per_class[name] = _points(*roc_curve(onehot[:, i], proba[:, i]), max_points)
    micro: list[dict[str, float]] = []
    if onehot.any() and not onehot.all():
        micro = _points(*roc_curve(onehot.ravel(), np.asarray(proba).ravel()), max_points)
    return micro, per_class


def _points(fpr: Any, tpr: Any, thresholds: Any, max_points: int) -> list[dict[str, float]]:
    import numpy as np

    keep = np.unique(np.linspace(0, len(fpr) - 1, num=min(len(fpr), max_points)).astype(int))
    # roc_curve's first threshold is +inf ("predict nothing"); JSON has no inf, 1.0 means the same here.
    return [
        {
            "confidenceThreshold": float(min(thresholds[i], 1.0)),
            "recall": float(tpr[i]),
            "falsePositiveRate": float(fpr[i]),
        }
        for i in keep
    ]


# --- Metrics in batches (evaluate on splits of any size) ---------------------------------------
#
# Counts, accuracy, balanced accuracy, precision/recall/F1 and the confusion matrix are sums over
# rows, so they are exact from per-batch counts. ROC-AUC and average precision need the scores'
# order: up to EXACT_ROWS rows the scores are kept and scikit-learn computes them exactly (the same
# numbers as ``classification_metrics``); beyond, per-class histograms of the scores in ``bins``
# equal-width bins over [0, 1] stand in. The binned ROC-AUC and AP are then exactly those of the
# scores rounded down to their bin (ties scored as scikit-learn scores them); the ROC-AUC of the
# real scores differs by at most half the share of (positive, negative) pairs that fall in one
# bin, which the result states per class (``roc_auc_max_error``).

EXACT_ROWS = 250_000
AUC_BINS = 1 << 16
SLICE_AUC_BINS = 1 << 10


class MetricsAccumulator:
    """``classification_metrics`` computed batch by batch, with memory bounded whatever the rows."""

    def __init__(self, class_names: Sequence[str], *, bins: int = AUC_BINS, exact_rows: int | None = None) -> None:
        """``exact_rows``: rows up to which the scores are kept for exact ROC-AUC/AP (None: ``EXACT_ROWS``)."""
        import numpy as np

        self.class_names = [str(c) for c in class_names]
        self.bins = bins
        self.exact_rows = EXACT_ROWS if exact_rows is None else exact_rows
        self.count = 0
        k = len(self.class_names)
        self._index = {name: i for i, name in enumerate(self.class_names)}
        self._unknown: dict[str, int] = {}  # true names outside the vocabulary -> row of the confusion matrix
        self._confusion = np.zeros((k, k), dtype=np.int64)  # grows a row per unknown true name
        self._positive = np.zeros((k, bins), dtype=np.int64)
        self._negative = np.zeros((k, bins), dtype=np.int64)
        self._exact: list[tuple[Any, Any]] | None = []

    def update(self, y_true: Sequence[str], proba: np.ndarray) -> None:
        """Adds one batch: true class names and ``(n, len(class_names))`` probabilities."""
        import numpy as np

        k = len(self.class_names)
        names = [str(v) for v in y_true]
        proba = np.asarray(proba, dtype="float32").reshape(len(names), k)
        if not names:
            return
        for name in names:
            if name not in self._index and name not in self._unknown:
                self._unknown[name] = k + len(self._unknown)
                self._confusion = np.vstack([self._confusion, np.zeros((1, k), dtype=np.int64)])
        rows = np.asarray([self._index.get(name, self._unknown.get(name)) for name in names], dtype=np.int64)
        np.add.at(self._confusion, (rows, proba.argmax(axis=1)), 1)
        binned = np.minimum((np.clip(proba, 0.0, 1.0) * self.bins).astype(np.int64), self.bins - 1)
        for i in range(k):
            positive = rows == i
            self._positive[i] += np.bincount(binned[positive, i], minlength=self.bins)
            self._negative[i] += np.bincount(binned[~positive, i], minlength=self.bins)
        self.count += len(names)
        if self._exact is not None:
            self._exact.append((rows.astype(np.int32), proba))
            if self.count > self.exact_rows:
                self._exact = None  # too many rows to keep: the histograms take over

    @property
    def exact(self) -> bool:
        """Whether ROC-AUC and AP are exact (all scores kept)."""
        return self._exact is not None

    def _exact_data(self) -> tuple[list[str], Any]:
        import numpy as np

        labels = self.class_names + sorted(self._unknown, key=self._unknown.get)
        rows = np.concatenate([r for r, _ in self._exact]) if self._exact else np.zeros(0, dtype=np.int32)
        proba = np.concatenate([p for _, p in self._exact]) if self._exact else np.zeros((0, len(self.class_names)))
        return [labels[r] for r in rows], proba

    def result(self) -> dict[str, Any]:
        """What ``classification_metrics`` returns, plus ``auc_method`` ("exact" or "binned")."""
        if self._exact is not None:
            y_true, proba = self._exact_data()
            return {**classification_metrics(y_true, proba, self.class_names), "auc_method": "exact"}
        return self._binned_result()

    def _binned_result(self) -> dict[str, Any]:
        import numpy as np

        k, n = len(self.class_names), self.count
        unknown = sorted(self._unknown, key=self._unknown.get)
        labels = self.class_names + unknown
        matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
        matrix[:, :k] = self._confusion
        # The confusion matrix's labels order unknown names after the vocabulary, sorted (as classification_metrics).
        order = list(range(k)) + [k + unknown.index(name) for name in sorted(unknown)]
        matrix = matrix[np.ix_(order, order)]
        labels = [labels[i] for i in order]
        tp = np.diag(matrix).astype(float)
        row, col = matrix.sum(axis=1).astype(float), matrix.sum(axis=0).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(col > 0, tp / col, 0.0)
            recall = np.where(row > 0, tp / row, 0.0)
            f1 = np.where(row + col > 0, 2 * tp / (row + col), 0.0)
        present = (row > 0) | (col > 0)
        result: dict[str, Any] = {"count": int(n)}
        result["accuracy"] = float(tp.sum() / n)
        result["balanced_accuracy"] = float(np.mean(recall[row > 0]))
        result["precision_macro"] = float(np.mean(precision[present]))
        result["recall_macro"] = float(np.mean(recall[present]))
        result["f1_macro"] = float(np.mean(f1[present]))
        per_class: dict[str, dict[str, Any]] = {}
        aucs, aps, errors = [], [], {}
        for i, name in enumerate(self.class_names):
            positives = int(self._positive[i].sum())
            auc = ap = None
            if 0 < positives < n:
                auc, errors[name] = _binned_auc(self._positive[i], self._negative[i])
                ap = _binned_average_precision(self._positive[i], self._negative[i])
                aucs.append(auc)
                aps.append(ap)
            per_class[name] = {
                "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(row[i]), "roc_auc": auc, "average_precision": ap,
            }
        result["roc_auc_ovr"] = float(np.mean(aucs)) if aucs else None
        result["average_precision"] = float(np.mean(aps)) if aps else None
        result["per_class"] = per_class
        result["confusion_matrix"] = {"labels": labels, "matrix": matrix.tolist()}
        result["auc_method"] = "binned"
        result["auc_bins"] = self.bins
        result["roc_auc_max_error"] = {name: round(err, 8) for name, err in errors.items()}
        return result

    def roc_curves(self, max_points: int = 200) -> tuple[list[dict[str, float]], dict[str, list[dict[str, float]]]]:
        """``kfp_roc_curves`` of the rows seen (binned thresholds beyond ``exact_rows``)."""
        if self._exact is not None:
            y_true, proba = self._exact_data()
            return kfp_roc_curves(y_true, proba, self.class_names, max_points=max_points)
        per_class = {}
        for i, name in enumerate(self.class_names):
            if 0 < self._positive[i].sum() < self.count:
                per_class[name] = _points(*_binned_roc(self._positive[i], self._negative[i], self.bins), max_points)
        positive, negative = self._positive.sum(axis=0), self._negative.sum(axis=0)
        micro: list[dict[str, float]] = []
        if positive.sum() and negative.sum():
            micro = _points(*_binned_roc(positive, negative, self.bins), max_points)
        return micro, per_class


def _binned_auc(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC of the binned scores, the most it can differ from the real scores' ROC-AUC)."""
    import numpy as np

    p, q = positive.astype(float), negative.astype(float)
    pairs = p.sum() * q.sum()
    below = np.cumsum(q) - q  # negatives in lower bins
    auc = float((p * (below + 0.5 * q)).sum() / pairs)
    return auc, float(0.5 * (p * q).sum() / pairs)


def _binned_average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """Average precision (scikit-learn's step sum) with one threshold per non-empty bin."""
    import numpy as np

    p, q = positive[::-1].astype(float), negative[::-1].astype(float)
    keep = (p + q) > 0
    tp, fp = np.cumsum(p)[keep], np.cumsum(q)[keep]
    recall = tp / p.sum()
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * tp / (tp + fp)))


def _binned_roc(positive: np.ndarray, negative: np.ndarray, bins: int) -> tuple[Any, Any, Any]:
    """(fpr, tpr, thresholds) like ``sklearn.metrics.roc_curve``, one threshold per non-empty bin (its lower edge)."""
    import numpy as np

    p, q = positive[::-1].astype(float), negative[::-1].astype(float)
    edges = (np.arange(bins)[::-1]) / bins
    keep = (p + q) > 0
    tpr = np.concatenate([[0.0], np.cumsum(p)[keep] / p.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(q)[keep] / q.sum()])
    return fpr, tpr, np.concatenate([[np.inf], edges[keep]])


class SliceAccumulator:
    """``sliced_metrics`` batch by batch: a ``MetricsAccumulator`` per value of each slice feature."""

    def __init__(self, class_names: Sequence[str], slice_features: Sequence[str], columns: Sequence[str], *,
                 max_values: int = 50, bins: int = SLICE_AUC_BINS, exact_rows: int | None = None) -> None:
        self.class_names = list(class_names)
        self.max_values = max_values
        self._bins, self._exact_rows = bins, exact_rows
        self.notes = [
            f"slice feature '{feature}' is not a column of the eval data; skipped"
            for feature in slice_features if feature not in columns
        ]
        self.features = [feature for feature in slice_features if feature in columns]
        self._slices: dict[str, dict[str, MetricsAccumulator]] = {feature: {} for feature in self.features}
        self._too_many: dict[str, int] = {}

    def update(self, frame: Any, y_true: Sequence[str], proba: np.ndarray) -> None:
        import numpy as np

        y_true = np.asarray([str(v) for v in y_true], dtype=object)
        for feature in self.features:
            if feature in self._too_many:
                continue
            values = np.asarray([MISSING_SLICE if _is_missing(v) else str(v) for v in frame[feature]], dtype=object)
            slices = self._slices[feature]
            distinct = set(values)
            if len(set(slices) | distinct) > self.max_values:
                self._too_many[feature] = len(set(slices) | distinct)
                del self._slices[feature]
                continue
            for value in distinct:
                if value not in slices:
                    slices[value] = MetricsAccumulator(self.class_names, bins=self._bins, exact_rows=self._exact_rows)
                chosen = values == value
                slices[value].update(y_true[chosen], proba[chosen])

    def result(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """``({feature: {value: metrics}}, notes)`` as ``sliced_metrics`` returns them."""
        notes = list(self.notes) + [
            f"slice feature '{feature}' has more than {self.max_values} values ({count} seen); skipped"
            for feature, count in self._too_many.items()
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            slices = {
                feature: {value: values[value].result() for value in sorted(values)}
                for feature, values in self._slices.items()
            }
        return slices, notes

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

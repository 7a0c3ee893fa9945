"""The ``transform.json`` document from fitted constants: one place for its layout, whichever
path fitted them (``fit_spec`` in memory or streamed, ``beam.fit_spec_on_beam`` on tf.Transform)."""

from __future__ import annotations

from typing import Any, Iterable


def spec_document(
    *,
    label: str,
    split: str,
    rows: int,
    numeric: dict[str, tuple[int, float, float, int]],
    categorical: dict[str, tuple[Iterable[tuple[str, int]], int]],
    labels: Iterable[str],
    max_vocabulary: int,
    count_errors: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The ``transform.json`` document (see ``flywheel.models.features``).

    Args:
        label: The label column.
        split: The split the constants were fitted on.
        rows: Its rows.
        numeric: Feature -> (present values, mean, variance, missing rows), in feature order. A
            feature with no present value normalizes to 0: mean 0, variance 1.
        categorical: Feature -> ((value, count) pairs of its present values, missing rows).
        labels: The label's distinct values.
        max_vocabulary: Most frequent values kept per feature (ties by value: deterministic).
        count_errors: Feature -> how many rows each count may be low by (a bounded summary's).
    """
    spec: dict[str, Any] = {
        "label": label,
        "numeric_features": list(numeric),
        "categorical_features": list(categorical),
        "features": {},
        "missing": {"numeric": "NaN (JSON null)", "categorical": '"" (JSON null)'},
        "fitted_on": {"split": split, "rows": int(rows)},
    }
    for name, (present, mean, variance, missing) in numeric.items():
        spec["features"][name] = {
            "kind": "numeric",
            "dtype": "float32",
            "mean": float(mean) if present else 0.0,
            "variance": float(variance) if present else 1.0,
            "missing_in_train": int(missing),
        }
    for name, (counts, missing) in categorical.items():
        # Most frequent first, ties by value, so the vocabulary is deterministic.
        ordered = sorted(((str(v), int(c)) for v, c in counts), key=lambda item: (-item[1], item[0]))
        spec["features"][name] = {
            "kind": "categorical",
            "dtype": "string",
            "vocabulary": [value for value, _ in ordered[:max_vocabulary]],
            "missing_in_train": int(missing),
        }
        if (count_errors or {}).get(name):
            spec["features"][name]["vocabulary_count_error"] = int(count_errors[name])
    spec["label_vocabulary"] = sorted(labels)
    return spec

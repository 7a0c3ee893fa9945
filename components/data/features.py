"""Shared I/O of the data-centric technique components: features, subsets.

Every technique component reads Examples the same way: image Examples become
flattened pixels scaled to [0, 1]; tabular Examples become their numeric
columns plus one-hot columns of their string columns (missing numbers get the
column median). Labels become class indices in ``class_names`` order.
The bundled demo sets as Examples are ``bundled.py``'s components.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flywheel.dsl.artifacts import Artifact
from flywheel.errors import FlywheelError

from flywheel.components import examples_io

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ID_COLUMN = "example_id"
# Bookkeeping columns the technique components add; never features.
NOT_FEATURES = (ID_COLUMN, "is_label_issue", "label_quality", "al_round", "al_score", "weak_confidence")
NOT_FEATURE_PREFIXES = ("proba_", "gold_")


def class_names_of(examples: Artifact, frame: pd.DataFrame | None, label: str) -> list[Any]:
    """The classes in index order: the artifact's ``class_names`` or the sorted label values."""
    names = examples.properties.get("class_names")
    if names:
        return list(names)
    if frame is None or label not in frame.columns:
        raise FlywheelError(f"Examples at {examples.uri} have no 'class_names' property and no '{label}' column.")
    return sorted(frame[label].dropna().unique().tolist())


def encode_labels(values: Any, classes: list[Any], where: str) -> np.ndarray:
    """Maps label values to class indices.

    Raises:
        FlywheelError: a value is not one of ``classes``.
    """
    import numpy as np

    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in values if v not in index})
    if unknown:
        raise FlywheelError(f"{where}: label values {unknown[:5]} are not among the classes {classes}.")
    return np.array([index[v] for v in values], dtype=np.int64)


def tabular_features(frame: pd.DataFrame, exclude: list[str]) -> tuple[np.ndarray, list[str]]:
    """Numeric columns (median-filled) plus one-hot string columns, as float32."""
    import numpy as np
    import pandas as pd

    data = frame.drop(columns=[c for c in frame.columns if c in exclude or str(c).startswith(NOT_FEATURE_PREFIXES)])
    numeric = data.select_dtypes(include="number")
    numeric = numeric.fillna(numeric.median()).fillna(0.0)
    text = data.drop(columns=numeric.columns)
    parts = [numeric]
    if len(text.columns):
        parts.append(pd.get_dummies(text.astype("string").fillna("<missing>"), dtype=float))
    table = pd.concat(parts, axis=1)
    return table.to_numpy(dtype=np.float32), list(table.columns)


def load_features(examples: Artifact, split: str, *, label: str = "") -> tuple[np.ndarray, pd.DataFrame, Any]:
    """(X 2-D float32, frame, images or None) of one split, images flattened to [0, 1]."""
    import numpy as np

    if examples_io.is_image(examples):
        images, frame = examples_io.read_images(examples, split)
        scale = 255.0 if images.dtype == np.uint8 else max(float(np.max(images)), 1.0)
        return (images.reshape(len(images), -1) / scale).astype(np.float32), frame, images
    frame = examples_io.read_split(examples, split)
    name = label or str(examples.properties.get("label") or "")
    X, _ = tabular_features(frame, [name, *NOT_FEATURES])
    return X, frame, None


def aligned_features(first: Artifact, first_split: str, second: Artifact, second_split: str, *, label: str) -> tuple[Any, ...]:
    """Features of two splits encoded alike (same one-hot columns): (X1, frame1, X2, frame2, images2)."""
    import pandas as pd

    if examples_io.is_image(first):
        X1, frame1, _ = load_features(first, first_split)
        X2, frame2, images2 = load_features(second, second_split)
        return X1, frame1, X2, frame2, images2
    frame1 = examples_io.read_split(first, first_split)
    frame2 = examples_io.read_split(second, second_split)
    both, _ = tabular_features(pd.concat([frame1, frame2], ignore_index=True), [label, *NOT_FEATURES])
    return both[: len(frame1)], frame1, both[len(frame1) :], frame2, None


def write_like(source: Artifact, target: Artifact, split: str, frame: pd.DataFrame, images: Any = None) -> None:
    """Writes one split in the source's modality and copies its dataset properties."""
    for key in ("label", "modality", "image_shape", "class_names", "source"):
        if key in source.properties:
            target.properties[key] = source.properties[key]
    if examples_io.is_image(source):
        examples_io.write_images(target, split, images, frame.reset_index(drop=True))
    else:
        examples_io.write_split(target, split, frame.reset_index(drop=True))
    names = examples_io.split_names(target)
    target.properties["split_names"] = names
    counts = dict(target.properties.get("row_counts") or {})
    counts[split] = len(frame)
    target.properties["row_counts"] = counts

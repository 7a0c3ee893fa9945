"""Input checks shared by the techniques of this package (not a technique itself)."""

from __future__ import annotations

from typing import Any

from flywheel.errors import FlywheelError


class TechniqueInputError(FlywheelError):
    """Data handed to a technique does not have the shape, type or content it needs."""


def check_features_labels(owner: str, x: Any, y: Any, *, min_dims: int = 2, min_classes: int = 2) -> tuple[Any, Any]:
    """``(x as a float/uint8 array, y as a 1-D array)`` after checking they fit together.

    Raises:
        TechniqueInputError: x is not numeric, has too few dimensions or holds
            NaN/inf; y is not 1-D, has another length, or too few classes.
    """
    import numpy as np

    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < min_dims or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise TechniqueInputError(
            f"{owner} needs numeric features of at least {min_dims} dimensions (samples first); "
            f"got an array of shape {x.shape} and dtype {x.dtype}."
        )
    if not np.isfinite(x.astype("float64", copy=False)).all():
        raise TechniqueInputError(f"{owner} needs finite features; the input holds NaN or inf. Impute them first.")
    if y.ndim != 1 or len(y) != len(x):
        raise TechniqueInputError(
            f"{owner} needs one label per sample (a 1-D array of length {len(x)}); got labels of shape {y.shape}."
        )
    classes = np.unique(y)
    if len(classes) < min_classes:
        raise TechniqueInputError(
            f"{owner} needs at least {min_classes} classes in the labels; got {len(classes)} "
            f"({', '.join(map(str, classes[:5]))})."
        )
    return x, y


def requested_labels(owner: str, classes: Any, counts: Any) -> tuple[Any, Any]:
    """(labels, their indices into ``classes``) asked of a fitted class-conditional generator.

    ``counts`` maps class -> how many; an int means that many of every class.

    Raises:
        FlywheelError: a class the generator was not fitted on.
    """
    import numpy as np

    if isinstance(counts, int):
        counts = {c: counts for c in classes.tolist()}
    unknown = [c for c in counts if c not in classes]
    if unknown:
        raise FlywheelError(f"{owner}.sample: classes {unknown} were not seen in fit; seen: {classes.tolist()}.")
    labels = np.concatenate([np.full(int(n), c) for c, n in counts.items()]) if counts else np.zeros(0)
    return labels.astype(classes.dtype), np.searchsorted(classes, labels)

"""Shared I/O of the data-centric technique components: features, subsets, demo data.

Every technique component reads Examples the same way: image Examples become
flattened pixels scaled to [0, 1]; tabular Examples become their numeric
columns plus one-hot columns of their string columns (missing numbers get the
column median). Labels become class indices in ``class_names`` order.

``digits_examples`` and ``table_examples`` write scikit-learn's bundled sets
(and Palmer penguins) as Examples, so the technique pipelines and tests run
offline without ``ingest``. (``ingest`` gains an image path in issue 7; the
pipelines can switch to it then.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flywheel.dsl.artifacts import Artifact, Examples
from flywheel.dsl.component import Output, component
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components import examples_io

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ID_COLUMN = "example_id"
# Bookkeeping columns the technique components add; never features.
NOT_FEATURES = (ID_COLUMN, "is_label_issue", "label_quality", "al_round", "al_score", "weak_confidence")
NOT_FEATURE_PREFIXES = ("proba_", "gold_")
TABLES = ("breast_cancer", "wine", "penguins", "digits_table")


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


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (uint8 images (1797, 8, 8, 1) scaled to 0..255, labels)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)


def table_frame(name: str) -> tuple[pd.DataFrame, str]:
    """A bundled table and its label column.

    Raises:
        ParameterError: unknown name.
    """
    import pandas as pd

    if name == "penguins":
        import palmerpenguins

        frame = palmerpenguins.load_penguins().dropna(subset=["species"]).reset_index(drop=True)
        return frame.drop(columns=["year"], errors="ignore"), "species"
    loaders = {"breast_cancer": "load_breast_cancer", "wine": "load_wine", "digits_table": "load_digits"}
    if name not in loaders:
        raise ParameterError(f"The 'dataset' parameter must be one of {', '.join(TABLES)}. Got {name!r} instead.")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loaders[name])()
    columns = [str(c).replace(" ", "_") for c in getattr(bunch, "feature_names", range(bunch.data.shape[1]))]
    frame = pd.DataFrame(bunch.data, columns=columns)
    frame["label"] = bunch.target.astype("int64")
    return frame, "label"


def _split_indices(n: int, labels: np.ndarray, eval_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    import numpy as np

    return train_test_split(np.arange(n), test_size=eval_ratio, stratify=labels, random_state=seed)


@component
def digits_examples(examples: Output[Examples], eval_ratio: float = 0.3, per_class: int = 0, seed: int = 0) -> None:
    """Writes scikit-learn's digits as image Examples (splits ``train`` and ``eval``).

    Args:
        examples: Receives the image Examples (8x8x1 uint8, ``label`` 0-9).
        eval_ratio: Share of the images in ``eval`` (stratified).
        per_class: Keep only this many train images per class (0 keeps all):
            the low-data setting of the augmentation techniques.
        seed: Seeds the split and the per-class subset.

    Raises:
        ParameterError: eval_ratio is not in (0, 1) or per_class < 0.
    """
    import numpy as np
    import pandas as pd

    if not 0 < eval_ratio < 1:
        raise ParameterError(f"The 'eval_ratio' parameter of digits_examples must be in (0, 1). Got {eval_ratio!r} instead.")
    if per_class < 0:
        raise ParameterError(f"The 'per_class' parameter of digits_examples must be >= 0. Got {per_class!r} instead.")
    images, labels = digits_arrays()
    train, test = _split_indices(len(labels), labels, eval_ratio, seed)
    if per_class:
        rng = np.random.default_rng(seed)
        train = np.concatenate([rng.permutation(train[labels[train] == c])[:per_class] for c in range(10)])
    examples.properties.update(
        {"label": "label", "modality": "image", "image_shape": [8, 8, 1], "class_names": list(range(10)), "source": "sklearn digits"}
    )
    for split, idx in (("train", np.sort(train)), ("eval", np.sort(test))):
        frame = pd.DataFrame({ID_COLUMN: idx.astype("int64"), "label": labels[idx]})
        write_like(examples, examples, split, frame, images[idx])


@component
def table_examples(examples: Output[Examples], dataset: str = "breast_cancer", eval_ratio: float = 0.3, seed: int = 0) -> None:
    """Writes a bundled table (breast_cancer, wine, penguins, digits_table) as Examples.

    Raises:
        ParameterError: unknown dataset or eval_ratio not in (0, 1).
    """
    import numpy as np

    if not 0 < eval_ratio < 1:
        raise ParameterError(f"The 'eval_ratio' parameter of table_examples must be in (0, 1). Got {eval_ratio!r} instead.")
    frame, label = table_frame(dataset)
    frame.insert(0, ID_COLUMN, np.arange(len(frame), dtype=np.int64))
    train, test = _split_indices(len(frame), frame[label].to_numpy(), eval_ratio, seed)
    examples.properties.update({"label": label, "source": dataset})
    for split, idx in (("train", np.sort(train)), ("eval", np.sort(test))):
        write_like(examples, examples, split, frame.iloc[idx])

"""The bundled data sets as Examples: ``digits_examples`` and ``table_examples`` components.

They write scikit-learn's bundled sets (and Palmer penguins) as Examples, so the technique
pipelines and tests run offline without ``ingest``. (``ingest`` gains an image path in issue 7;
the pipelines can switch to it then.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flywheel.dsl.artifacts import Examples
from flywheel.dsl.component import Output, component
from flywheel.errors import ParameterError

from flywheel.components.data.features import ID_COLUMN, write_like

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TABLES = ("breast_cancer", "wine", "penguins", "digits_table")


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

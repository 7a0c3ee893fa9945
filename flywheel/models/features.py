"""The feature contract shared by transform, train, evaluate and serving.

``transform`` writes ``transform.json`` (copied next to the trained model as
``model.json``)::

    {"label": "species", "label_vocabulary": ["Adelie", ...],
     "numeric_features": [...], "categorical_features": [...],
     "features": {"island": {"kind": "categorical", "dtype": "string", "vocabulary": [...]},
                  "bill_length_mm": {"kind": "numeric", "dtype": "float32",
                                     "mean": 43.9, "variance": 29.8}, ...},
     "missing": {"numeric": "NaN (or null)", "categorical": "\\"\\" (or null)"}}

A categorical feature fitted in a streamed pass over more distinct values than
transform keeps exact counts for also has ``"vocabulary_count_error"``: how many
rows each count behind its vocabulary may be low by (a Misra-Gries summary).

Raw features go into a model as a dict of 1-D arrays, one per feature: numbers
as float32 with NaN for missing, strings with "" for missing. ``raw_inputs``
builds that dict from a DataFrame, so every caller feeds a model the same way.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TRANSFORM_JSON = "transform.json"
PREPROCESS_FILE = "preprocess.keras"
MODEL_FILE = "model.keras"
MODEL_JSON = "model.json"
SERVING_DIR = "serving"
MISSING_STRING = ""


def read_json(path: str) -> dict[str, Any]:
    """Reads a JSON file, with an error that names the file when it is absent."""
    if not os.path.isfile(path):
        raise FlywheelError(f"Expected the file {path}, which does not exist; was the artifact written by flywheel?")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays show up in metrics; JSON has no type for them.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def feature_names(spec: dict[str, Any]) -> list[str]:
    """All raw feature names of a spec, numeric first, in the spec's order."""
    return [*spec["numeric_features"], *spec["categorical_features"]]


def raw_inputs(frame: pd.DataFrame, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """The dict of raw feature arrays a flywheel model takes, built from a DataFrame.

    Raises:
        FlywheelError: a feature the model needs is not a column of ``frame``.
    """
    import numpy as np
    import pandas as pd

    missing = [name for name in feature_names(spec) if name not in frame.columns]
    if missing:
        raise FlywheelError(
            f"The model needs the feature(s) {missing}, which the data does not have "
            f"(columns: {list(frame.columns)}). Feed the columns the model was trained on."
        )
    inputs: dict[str, np.ndarray] = {}
    for name in spec["numeric_features"]:
        inputs[name] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float32", na_value=np.nan)
    for name in spec["categorical_features"]:
        column = frame[name]
        values = column.astype(object).where(column.notna(), MISSING_STRING)
        inputs[name] = np.asarray([str(v) for v in values], dtype=object)
    return inputs


def raw_inputs_from_records(records: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """``raw_inputs`` for rows given as dicts (JSON-like values), without pandas.

    The same rules: numbers as float32 with NaN for a missing or non-numeric value,
    categories as ``str`` with "" for a missing one (None or NaN).

    Raises:
        FlywheelError: a row lacks a feature the model needs.
    """
    import math

    import numpy as np

    names = feature_names(spec)
    for index, record in enumerate(records):
        missing = [name for name in names if name not in record]
        if missing:
            raise FlywheelError(
                f"The model needs the feature(s) {missing}, which row {index} does not have "
                f"(keys: {sorted(record)}). Feed the columns the model was trained on."
            )

    def number(value: Any) -> float:
        try:
            return math.nan if value is None else float(value)
        except (TypeError, ValueError):
            return math.nan

    def category(value: Any) -> str:
        return MISSING_STRING if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)

    inputs: dict[str, np.ndarray] = {}
    for name in spec["numeric_features"]:
        inputs[name] = np.asarray([number(record[name]) for record in records], dtype="float32")
    for name in spec["categorical_features"]:
        inputs[name] = np.asarray([category(record[name]) for record in records], dtype=object)
    return inputs


def encode_labels(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Maps label values to their index in ``vocabulary``.

    Raises:
        FlywheelError: a label is missing or not in the vocabulary.
    """
    import numpy as np

    index = {name: i for i, name in enumerate(vocabulary)}
    names = values.astype(object).where(values.notna(), None)
    unknown = sorted({str(v) for v in names if v is None or str(v) not in index})
    if unknown:
        raise FlywheelError(
            f"Label values {unknown[:10]} are not in the label vocabulary {vocabulary} learned from "
            "the train split; drop those rows or re-run transform on data that has them."
        )
    return np.asarray([index[str(v)] for v in names], dtype="int32")

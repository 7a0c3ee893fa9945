"""Test data for the model components: Palmer penguins as an Examples artifact.

Import these helpers from test files (``from model_fixtures import ...``); the
fixtures live in the test modules so each test builds its own tiny data.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from flywheel.components import examples_io
from flywheel.dsl.artifacts import Examples

LABEL = "species"


def penguins_frame() -> pd.DataFrame:
    """The bundled Palmer penguins (344 rows, some NaNs), shuffled deterministically."""
    from palmerpenguins import load_penguins

    frame = load_penguins()
    order = np.random.RandomState(0).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def write_examples(uri: str, splits: dict[str, pd.DataFrame], label: str = LABEL) -> Examples:
    """Writes DataFrames as the splits of an Examples artifact at ``uri``."""
    os.makedirs(uri, exist_ok=True)
    examples = Examples(uri=uri)
    for name, frame in splits.items():
        examples_io.write_split(examples, name, frame)
    examples.properties.update(
        {
            "label": label,
            "split_names": list(splits),
            "row_counts": {name: int(len(frame)) for name, frame in splits.items()},
            "columns": list(next(iter(splits.values())).columns),
        }
    )
    return examples


def penguin_examples(uri: str, eval_fraction: float = 0.25) -> Examples:
    """Penguins split deterministically into train (75%) and eval (25%)."""
    frame = penguins_frame()
    n_eval = int(round(len(frame) * eval_fraction))
    return write_examples(uri, {"train": frame.iloc[n_eval:], "eval": frame.iloc[:n_eval]})

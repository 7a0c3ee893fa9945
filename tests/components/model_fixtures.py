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


def imbalanced_examples(uri: str, *, seed: int = 0, minority: int = 24, majority: int = 456) -> Examples:
    """Two overlapping Gaussian classes, 5% minority ("rare"); eval is balanced so minority recall is measurable."""
    rng = np.random.RandomState(seed)

    def rows(n_common: int, n_rare: int) -> pd.DataFrame:
        common = rng.normal(0.0, 1.0, size=(n_common, 2))
        rare = rng.normal(1.0, 1.0, size=(n_rare, 2))
        frame = pd.DataFrame(np.vstack([common, rare]), columns=["x1", "x2"])
        frame["y"] = ["common"] * n_common + ["rare"] * n_rare
        return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    return write_examples(uri, {"train": rows(majority, minority), "eval": rows(200, 200)}, label="y")


def run(comp, inputs: dict, outputs: dict, **params):
    """Runs a component the way the runner does; returns the filled-in output artifacts."""
    from flywheel.component_call import call_component

    call_component(comp, inputs, outputs, params)
    return outputs


def transform_and_train(examples: Examples, root: str, **train_params):
    """(transform_graph, model) artifacts for ``examples``, written under ``root``."""
    from flywheel.components.train import train
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import Model, TransformGraph

    graph = run(transform, {"examples": examples}, {"transform_graph": TransformGraph(uri=os.path.join(root, "tg"))})
    model = run(
        train,
        {"examples": examples, "transform_graph": graph["transform_graph"]},
        {"model": Model(uri=os.path.join(root, "model"))},
        **train_params,
    )
    return graph["transform_graph"], model["model"]


def small_penguin_model(examples_uri: str, train_root: str):
    """(examples, model) of a small penguins model (4 epochs, 8 units): enough for tests that use a real model."""
    examples = penguin_examples(examples_uri)
    _, model = transform_and_train(examples, train_root, epochs=4, hidden_units=[8], early_stopping_patience=0)
    return examples, model


def fake_model_dir(path: str, content: str = "weights-1") -> str:
    """A directory shaped like train's output (serving/ SavedModel files, model.keras) without training.

    Push and the registry only move bytes, so their tests need no real model.
    """
    os.makedirs(os.path.join(path, "serving", "variables"))
    with open(os.path.join(path, "serving", "saved_model.pb"), "w") as f:
        f.write(f"graph {content}")
    with open(os.path.join(path, "serving", "variables", "variables.index"), "w") as f:
        f.write(content)
    with open(os.path.join(path, "model.keras"), "w") as f:
        f.write(f"keras {content}")
    return path

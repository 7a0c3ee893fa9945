"""Reading and writing Examples artifacts (the on-disk contract of every component).

Layout (TFX's ``Split-<name>`` convention, Parquet instead of TFRecord)::

    <examples.uri>/Split-train/data.parquet
    <examples.uri>/Split-eval/data.parquet

Properties set by ``ingest``: ``label`` (label column, "" if none),
``split_names`` (list), ``row_counts`` ({split: rows}), ``columns`` (list),
``fingerprint`` (content hash), ``source`` (what was read).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from flywheel.dsl.artifacts import Artifact
from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    import pandas as pd

SPLIT_PREFIX = "Split-"
DATA_FILE = "data.parquet"


def split_dir(artifact: Artifact, split: str) -> str:
    """The directory of one split inside an artifact (Examples or ExampleStatistics)."""
    return os.path.join(artifact.uri, f"{SPLIT_PREFIX}{split}")


def split_names(artifact: Artifact) -> list[str]:
    """Split names present on disk, in a stable order (train first)."""
    if not os.path.isdir(artifact.uri):
        return []
    names = [d[len(SPLIT_PREFIX):] for d in os.listdir(artifact.uri) if d.startswith(SPLIT_PREFIX)]
    return sorted(names, key=lambda n: (n != "train", n != "eval", n))


def read_split(examples: Artifact, split: str) -> pd.DataFrame:
    """Loads one split of an Examples artifact as a DataFrame.

    Raises:
        FlywheelError: the split does not exist.
    """
    import pandas as pd

    path = os.path.join(split_dir(examples, split), DATA_FILE)
    if not os.path.isfile(path):
        raise FlywheelError(
            f"Examples at {examples.uri} have no split '{split}' (looked for {path}); "
            f"splits present: {', '.join(split_names(examples)) or 'none'}."
        )
    return pd.read_parquet(path)


def write_split(examples: Artifact, split: str, frame: pd.DataFrame) -> str:
    """Writes one split of an Examples artifact; returns the file written."""
    directory = split_dir(examples, split)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, DATA_FILE)
    frame.to_parquet(path, index=False)
    return path


def label_of(examples: Artifact, label: str = "") -> str:
    """The label column: the explicit one if given, else the artifact's property.

    Raises:
        FlywheelError: no label is known.
    """
    name = label or str(examples.properties.get("label") or "")
    if not name:
        raise FlywheelError(
            f"No label column known for Examples at {examples.uri}; pass label=... to ingest "
            "or to this component."
        )
    return name

"""Reading and writing Examples artifacts (the on-disk contract of every component).

Layout (TFX's ``Split-<name>`` convention, Parquet instead of TFRecord)::

    <examples.uri>/Split-train/data.parquet
    <examples.uri>/Split-eval/data.parquet

Properties set by ``ingest``: ``label`` (label column, "" if none),
``split_names`` (list), ``row_counts`` ({split: rows}), ``columns`` (list),
``fingerprint`` (content hash), ``source`` (what was read).

Image Examples (``properties["modality"] == "image"``) add, per split, the
pixel array ``Split-<name>/images.npy`` (N, height, width, channels; uint8 or
float32) beside ``data.parquet``, whose row i describes image i (at least the
``label`` column). Their properties add ``image_shape`` ([h, w, c]) and
``class_names`` (label values in class-index order).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flywheel.dsl.artifacts import Artifact
from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    import pandas as pd

SPLIT_PREFIX = "Split-"
DATA_FILE = "data.parquet"
IMAGES_FILE = "images.npy"


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


def is_image(examples: Artifact) -> bool:
    """Whether an Examples artifact holds images (see the module docstring)."""
    return examples.properties.get("modality") == "image"


def write_images(examples: Artifact, split: str, images: Any, frame: pd.DataFrame) -> str:
    """Writes one split of image Examples: the pixel array plus one frame row per image.

    Raises:
        FlywheelError: the array is not 4-D or its length differs from the frame's.
    """
    import numpy as np

    array = np.asarray(images)
    if array.ndim != 4 or len(array) != len(frame):
        raise FlywheelError(
            f"Image split '{split}' needs an array of shape (N, height, width, channels) with one frame row "
            f"per image; got shape {array.shape} and {len(frame)} rows."
        )
    directory = split_dir(examples, split)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, IMAGES_FILE)
    np.save(path, array, allow_pickle=False)
    frame.to_parquet(os.path.join(directory, DATA_FILE), index=False)
    return path


def read_images(examples: Artifact, split: str) -> tuple[Any, pd.DataFrame]:
    """Loads one split of image Examples: (pixel array, frame); never unpickles.

    Raises:
        FlywheelError: the split or its images are missing.
    """
    import numpy as np

    path = os.path.join(split_dir(examples, split), IMAGES_FILE)
    if not os.path.isfile(path):
        raise FlywheelError(
            f"Examples at {examples.uri} have no images for split '{split}' (looked for {path}); "
            "image Examples come from ingest with an image directory or an .npz file."
        )
    return np.load(path, allow_pickle=False), read_split(examples, split)

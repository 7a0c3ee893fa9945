"""Reading and writing Examples artifacts (the on-disk contract of every component).

Layout (TFX's ``Split-<name>`` convention, Parquet shards instead of TFRecord)::

    <examples.uri>/Split-train/data-00000-of-00002.parquet
    <examples.uri>/Split-train/data-00001-of-00002.parquet
    <examples.uri>/Split-eval/data-00000-of-00001.parquet

A split is the concatenation of its shards in shard order; artifacts written
before sharding hold one ``data.parquet`` per split and are read the same way.
``iter_split_batches`` streams a split in bounded batches (memory independent
of its size); ``SplitWriter`` writes one batch at a time and publishes the
shards only when the split is complete.

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

import glob
import os
import shutil
from typing import TYPE_CHECKING, Any

from flywheel.dsl.artifacts import Artifact
from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

SPLIT_PREFIX = "Split-"
DATA_FILE = "data.parquet"  # the single file of a split written before sharding (still read)
SHARD_PATTERN = "data-{index:05d}-of-{count:05d}.parquet"
SHARD_GLOB = "data-*-of-*.parquet"  # what matches every SHARD_PATTERN name (shard_paths, Beam's file pattern)
IMAGES_FILE = "images.npy"
# Rows per Parquet shard that SplitWriter starts a new file after.
SHARD_ROWS = 500_000
# Rows per Parquet row group at most: readers (iter_split_batches, train's stream, Beam) decode a whole
# row group at a time, so a frame written in one call must not become one row group as large as itself.
ROW_GROUP_ROWS = 65_536


def split_dir(artifact: Artifact, split: str) -> str:
    """The directory of one split inside an artifact (Examples or ExampleStatistics)."""
    return os.path.join(artifact.uri, f"{SPLIT_PREFIX}{split}")


def split_names(artifact: Artifact) -> list[str]:
    """Split names present on disk, in a stable order (train first)."""
    if not os.path.isdir(artifact.uri):
        return []
    names = [d[len(SPLIT_PREFIX):] for d in os.listdir(artifact.uri) if d.startswith(SPLIT_PREFIX)]
    return sorted(names, key=lambda n: (n != "train", n != "eval", n))


def shard_paths(examples: Artifact, split: str) -> list[str]:
    """The Parquet files of one split in order (its shards, or the one ``data.parquet`` of older artifacts).

    Raises:
        FlywheelError: the split does not exist.
    """
    directory = split_dir(examples, split)
    shards = sorted(glob.glob(os.path.join(glob.escape(directory), SHARD_GLOB)))
    if shards:
        return shards
    legacy = os.path.join(directory, DATA_FILE)
    if os.path.isfile(legacy):
        return [legacy]
    raise FlywheelError(
        f"Examples at {examples.uri} have no split '{split}' (looked for {directory}/{SHARD_GLOB} "
        f"and {DATA_FILE}); splits present: {', '.join(split_names(examples)) or 'none'}."
    )


def split_columns(examples: Artifact, split: str) -> list[str]:
    """The column names of one split, read from its first shard's schema (no rows read).

    Raises:
        FlywheelError: the split does not exist.
    """
    import pyarrow.parquet as pq

    return [name for name in pq.read_schema(shard_paths(examples, split)[0]).names if not name.startswith("__index_level_")]


def split_rows(examples: Artifact, split: str) -> int:
    """Rows of one split, from its shards' Parquet footers (no rows read; the artifact's properties may lack them)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in shard_paths(examples, split))


def empty_split_frame(examples: Artifact, split: str) -> pd.DataFrame:
    """A zero-row DataFrame with the split's columns and pandas dtypes (from its first shard's schema; no rows read)."""
    import pyarrow.parquet as pq

    frame = pq.read_schema(shard_paths(examples, split)[0]).empty_table().to_pandas()
    return frame[[name for name in frame.columns if not str(name).startswith("__index_level_")]]


def read_split(examples: Artifact, split: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Loads one split of an Examples artifact as one DataFrame (its shards concatenated).

    Args:
        examples: The Examples artifact.
        split: Split name.
        columns: Only these columns (None: all).

    Raises:
        FlywheelError: the split does not exist.
    """
    import pandas as pd

    frames = [pd.read_parquet(path, columns=columns) for path in shard_paths(examples, split)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def head_table(examples: Artifact, split: str, rows: int, columns: list[str] | None = None) -> Any:
    """The first ``rows`` rows of one split as a ``pyarrow.Table`` (no pandas; reads only what it needs).

    Args:
        examples: The Examples artifact.
        split: Split name.
        rows: How many rows at most (fewer when the split is shorter).
        columns: Only these columns (None: all); every one must be in the split.

    Raises:
        FlywheelError: the split does not exist or lacks one of ``columns``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if columns is not None:
        present = split_columns(examples, split)
        missing = [name for name in columns if name not in present]
        if missing:
            raise FlywheelError(
                f"The '{split}' split of {examples.uri} has no column(s) {missing} (columns: {present})."
            )
    tables: list[Any] = []
    taken = 0
    for path in shard_paths(examples, split):
        with pq.ParquetFile(path) as shard:
            if not tables:  # the first shard's columns, even when it has no rows
                tables.append(shard.schema_arrow.empty_table().select(columns or shard.schema_arrow.names))
            for batch in shard.iter_batches(batch_size=max(1, min(rows, 65_536)), columns=columns):
                if taken >= rows:
                    break
                tables.append(pa.Table.from_batches([batch.slice(0, rows - taken)]))
                taken += tables[-1].num_rows
        if taken >= rows:
            break
    return pa.concat_tables(tables)


def iter_split_batches(
    examples: Artifact, split: str, batch_rows: int = 65_536, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Streams one split as DataFrames of at most ``batch_rows`` rows, shard after shard.

    Memory stays bounded by the batch (and one Parquet row group), whatever the split's size.

    Raises:
        FlywheelError: the split does not exist.
        ParameterError: ``batch_rows`` is not a positive int.
    """
    import pyarrow.parquet as pq

    from flywheel.errors import ParameterError

    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ParameterError(f"The 'batch_rows' argument of iter_split_batches must be an int >= 1. Got {batch_rows!r} instead.")
    for path in shard_paths(examples, split):
        with pq.ParquetFile(path) as shard:
            for batch in shard.iter_batches(batch_size=batch_rows, columns=columns):
                yield batch.to_pandas()


class SplitWriter:
    """Writes one split batch by batch into Parquet shards of at most ``shard_rows`` rows.

    Shards are written under a hidden staging folder and moved into
    ``Split-<name>/`` by ``close``; ``abort`` (or an exception inside a
    ``with`` block) deletes them, so a failed write never leaves a half split.
    """

    def __init__(
        self, examples: Artifact, split: str, *, shard_rows: int | None = None, types: dict[str, Any] | None = None
    ) -> None:
        """Args: ``types``: Arrow types of columns known in advance (the rest come from the first frame)."""
        self.split = split
        self._types = types or {}
        self.rows = 0
        self._directory = split_dir(examples, split)
        self._staging = os.path.join(examples.uri, f".staging-{SPLIT_PREFIX}{split}")
        self._shard_rows = shard_rows or SHARD_ROWS
        self._writer: Any = None
        self._schema: Any = None
        self._shards: list[str] = []
        self._rows_in_shard = 0
        shutil.rmtree(self._staging, ignore_errors=True)
        os.makedirs(self._staging)

    def write(self, frame: pd.DataFrame) -> None:
        """Appends the rows of ``frame`` (same columns and types as the first frame written)."""
        import pyarrow as pa

        if not self._shards and not len(frame):
            self._open_shard(pa, frame)  # an empty split still has one shard that carries its columns
        start = 0
        while start < len(frame):
            if self._writer is None:
                self._open_shard(pa, frame)
            take = min(len(frame) - start, self._shard_rows - self._rows_in_shard)
            part = frame.iloc[start:start + take]
            self._writer.write_table(
                pa.Table.from_pandas(part, schema=self._schema, preserve_index=False), row_group_size=ROW_GROUP_ROWS
            )
            start += take
            self._rows_in_shard += take
            self.rows += take
            if self._rows_in_shard >= self._shard_rows:
                self._writer.close()
                self._writer = None

    def _open_shard(self, pa: Any, frame: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        if self._schema is None:
            inferred = pa.Schema.from_pandas(frame, preserve_index=False)
            self._schema = pa.schema(
                [pa.field(f.name, self._types.get(f.name, f.type)) for f in inferred], metadata=inferred.metadata
            )
        path = os.path.join(self._staging, f"part-{len(self._shards):05d}.parquet")
        self._shards.append(path)
        self._writer = pq.ParquetWriter(path, self._schema)
        self._rows_in_shard = 0

    def close(self) -> list[str]:
        """Publishes the shards as ``Split-<name>/data-NNNNN-of-MMMMM.parquet``; returns their paths."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        os.makedirs(self._directory, exist_ok=True)
        for stale in glob.glob(os.path.join(glob.escape(self._directory), "data*.parquet")):
            os.remove(stale)
        published = []
        for index, path in enumerate(self._shards):
            target = os.path.join(self._directory, SHARD_PATTERN.format(index=index, count=len(self._shards)))
            os.replace(path, target)
            published.append(target)
        shutil.rmtree(self._staging, ignore_errors=True)
        return published

    def abort(self) -> None:
        """Deletes what was written; the split is left as it was."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_split(examples: Artifact, split: str, frame: pd.DataFrame) -> str:
    """Writes one split of an Examples artifact from one DataFrame; returns the first file written."""
    with SplitWriter(examples, split) as writer:
        writer.write(frame)
    return shard_paths(examples, split)[0]


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
    write_split(examples, split, frame)
    return path


def read_images(examples: Artifact, split: str) -> tuple[Any, pd.DataFrame]:
    """Loads one split of image Examples: (pixel array, frame); never unpickles.

    Raises:
        FlywheelError: the split or its images are missing.
    """
    import numpy as np

    return np.load(images_path(examples, split), allow_pickle=False), read_split(examples, split)


def images_path(examples: Artifact, split: str) -> str:
    """The pixel array file of one split of image Examples (``np.load`` it with ``mmap_mode="r"`` to read a few).

    Raises:
        FlywheelError: the split or its images are missing.
    """
    path = os.path.join(split_dir(examples, split), IMAGES_FILE)
    if not os.path.isfile(path):
        raise FlywheelError(
            f"Examples at {examples.uri} have no images for split '{split}' (looked for {path}); "
            "image Examples come from ingest with an image directory or an .npz file."
        )
    return path

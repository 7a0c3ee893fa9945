"""flywheel.models.data: the streaming tabular reader feeds what train's in-memory path feeds."""

from __future__ import annotations

import collections
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.errors import FlywheelError, ParameterError
from flywheel.models import data, features

SPEC = {
    "label": "y",
    "label_vocabulary": ["no", "yes", "maybe"],
    "numeric_features": ["x", "z"],
    "categorical_features": ["c"],
    "features": {
        "x": {"kind": "numeric", "dtype": "float32"},
        "z": {"kind": "numeric", "dtype": "float32"},
        "c": {"kind": "categorical", "dtype": "string"},
    },
}


def _frame(rows: int, start: int = 0) -> pd.DataFrame:
    i = np.arange(start, start + rows)
    return pd.DataFrame(
        {
            "x": np.where(i % 7 == 0, np.nan, i / 3.0),
            "z": (i % 5).astype("int64"),  # an int column: raw_inputs makes it float32
            "c": pd.Series([None if k % 11 == 0 else f"cat{k % 4}" for k in i], dtype=object),
            "y": [SPEC["label_vocabulary"][k % 3] for k in i],
            "unused": ["pad"] * rows,
        }
    )


def _shards(tmp_path, sizes: list[int]) -> list[str]:
    directory = tmp_path / "Split-train"
    directory.mkdir()
    paths, start = [], 0
    for index, size in enumerate(sizes):
        path = str(directory / f"data-{index:05d}-of-{len(sizes):05d}.parquet")
        pq.write_table(pa.Table.from_pandas(_frame(size, start), preserve_index=False), path, row_group_size=97)
        paths.append(path)
        start += size
    return paths


def _rows(x: dict, y) -> list[tuple]:
    """Rows as hashable tuples (NaN as None), for multiset comparison."""
    names = features.feature_names(SPEC)
    columns = [np.asarray(x[n]) for n in names]
    out = []
    for r in range(len(y)):
        values = []
        for column in columns:
            v = column[r]
            v = v.decode() if isinstance(v, bytes) else v
            values.append(None if isinstance(v, (float, np.floating)) and math.isnan(v) else (float(v) if isinstance(v, (float, np.floating)) else v))
        out.append((*values, int(y[r])))
    return out


def _collect(dataset) -> tuple[list[tuple], list[int]]:
    rows, sizes = [], []
    for x, y in dataset:
        sizes.append(int(y.shape[0]))
        rows += _rows({k: v.numpy() for k, v in x.items()}, y.numpy())
    return rows, sizes


def _in_memory(paths):
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return frame, features.raw_inputs(frame, SPEC), features.encode_labels(frame["y"], SPEC["label_vocabulary"])


def test_the_stream_holds_the_same_rows_labels_and_dtypes_as_the_in_memory_path(tmp_path):
    paths = _shards(tmp_path, [1000, 333, 1, 700])
    _, x, y = _in_memory(paths)
    dataset = data.stream_dataset(paths, SPEC, 64, shuffle_buffer=500, seed=3, read_rows=50, cycle_length=3)
    spec_x, spec_y = dataset.element_spec
    assert spec_x["x"].dtype.name == "float32" and spec_x["c"].dtype.name == "string" and spec_y.dtype.name == "int32"
    rows, sizes = _collect(dataset)
    assert collections.Counter(rows) == collections.Counter(_rows(x, y))
    assert len(rows) == 2034 and sizes[:-1] == [64] * (len(sizes) - 1)
    assert sum(r[0] is None for r in rows) == sum(1 for i in range(2034) if i % 7 == 0)  # NaN kept for missing
    assert sum(r[2] == "" for r in rows) == sum(1 for i in range(2034) if i % 11 == 0)  # "" for a missing category


def test_the_order_is_the_same_for_a_seed_and_differs_for_another_and_between_epochs(tmp_path):
    paths = _shards(tmp_path, [400, 400, 400])

    def epochs(seed):
        dataset = data.stream_dataset(paths, SPEC, 32, shuffle_buffer=256, seed=seed, read_rows=40)
        return [_collect(dataset)[0] for _ in range(2)]

    first, again, other = epochs(7), epochs(7), epochs(8)
    assert first == again
    assert first[0] != first[1]  # reshuffled every epoch
    assert first[0] != other[0]
    assert collections.Counter(first[0]) == collections.Counter(other[0])


def test_the_hash_holdout_splits_rows_disjointly_and_deterministically(tmp_path):
    paths = _shards(tmp_path, [900, 600, 500])
    _, x, y = _in_memory(paths)
    fit = data.stream_dataset(paths, SPEC, 100, holdout=("drop", 0.2, 5), read_rows=64, cycle_length=1)
    val = data.stream_dataset(paths, SPEC, 100, holdout=("keep", 0.2, 5), read_rows=64, cycle_length=1)
    fit_rows, val_rows = _collect(fit)[0], _collect(val)[0]
    everything = _rows(x, y)
    chosen = data.hash_fraction(np.arange(2000), 5) < 0.2
    assert val_rows == [row for row, c in zip(everything, chosen) if c]  # no shuffle, one shard at a time: the split's order
    assert fit_rows == [row for row, c in zip(everything, chosen) if not c]
    assert 0.17 < len(val_rows) / 2000 < 0.23
    assert not np.array_equal(chosen, data.hash_fraction(np.arange(2000), 6) < 0.2)  # the seed moves the hold-out


def test_a_shard_without_a_feature_and_bad_arguments_are_named(tmp_path):
    paths = _shards(tmp_path, [10])
    pq.write_table(pa.table({"x": [1.0], "y": ["no"]}), str(tmp_path / "thin.parquet"))
    with pytest.raises(FlywheelError, match=r"no column\(s\) \['z', 'c'\]"):
        list(data.iter_batches([str(tmp_path / "thin.parquet")], SPEC))
    with pytest.raises(ParameterError, match="'batch_size' argument of stream_dataset must be an int >= 1"):
        data.stream_dataset(paths, SPEC, 0)
    with pytest.raises(ParameterError, match="at least one Parquet shard"):
        data.stream_dataset([], SPEC, 8)
    bad = _frame(5)
    bad.loc[2, "y"] = "unheard"
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), str(tmp_path / "bad.parquet"))
    with pytest.raises(FlywheelError, match="unheard"):
        list(data.iter_batches([str(tmp_path / "bad.parquet")], SPEC))


# Peak memory of the reader is flat in the split's size: a split 3x larger adds little to the
# child's peak RSS, while loading it whole (the in-memory path) adds far more.
_CHILD = textwrap.dedent(
    """
    import glob, json, sys
    import pandas as pd
    from flywheel.models import data, features
    spec = json.loads(sys.argv[2])
    paths = sorted(glob.glob(sys.argv[1] + "/*.parquet"))
    rows = 0
    if sys.argv[3] == "stream":
        for x, y in data.stream_dataset(paths, spec, 256, shuffle_buffer=4096, seed=0, read_rows=4096):
            rows += int(y.shape[0])
    else:
        frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        x, y = features.raw_inputs(frame, spec), features.encode_labels(frame["y"], spec["label_vocabulary"])
        import tensorflow as tf
        for bx, by in tf.data.Dataset.from_tensor_slices((x, y)).batch(256):
            rows += int(by.shape[0])
    peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
    print(rows, peak * 1024)
    """
)


def _wide_split(directory, rows: int) -> None:
    directory.mkdir()
    per_shard = 20_000
    for index, first in enumerate(range(0, rows, per_shard)):
        n = min(per_shard, rows - first)
        i = np.arange(first, first + n)
        frame = pd.DataFrame({
            "x": i / 2.0, "z": (i % 9).astype(float),
            "c": [f"{k % 1000:04d}" + "category text " * 24 for k in i],
            "y": np.asarray(SPEC["label_vocabulary"])[i % 3],
        })
        frame.to_parquet(directory / f"data-{index:05d}.parquet", index=False)


def _peak(directory, mode: str) -> tuple[int, int]:
    import json

    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(directory), json.dumps(SPEC), mode], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows, peak = map(int, done.stdout.split()[-2:])
    return rows, peak


def test_peak_memory_of_the_reader_is_flat_in_the_split_size(tmp_path):
    _wide_split(tmp_path / "small", 80_000)  # four shards: as many open readers as the big split
    _wide_split(tmp_path / "big", 240_000)
    rows_small, small = _peak(tmp_path / "small", "stream")
    rows_big, big = _peak(tmp_path / "big", "stream")
    rows_whole, whole = _peak(tmp_path / "big", "whole")
    assert (rows_small, rows_big, rows_whole) == (80_000, 240_000, 240_000)
    grown_whole = whole - small
    assert grown_whole > 80 << 20, (small, big, whole)  # the split held whole costs this much more than the small stream
    assert big - small < 0.1 * grown_whole, (small, big, whole)

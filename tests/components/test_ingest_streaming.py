"""Streaming ingest: batches and shards change nothing, errors in late batches, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from flywheel.components import examples_io
from flywheel.components.ingest import stream as ingest_stream
from flywheel.components.examples_io import read_split, shard_paths
from flywheel.components.ingest import DataReadError, ingest
from flywheel.dsl.artifacts import Examples

ROWS = 400


def _rows(rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "n": rng.integers(0, 50, size=rows).astype(float),
            "code": [str(i) for i in range(rows)],
            "x": rng.normal(size=rows).round(3),
            "label": rng.choice(["a", "b", "c"], size=rows),
        }
    )
    frame.loc[rows - 3, "n"] = np.nan  # a missing value only in the last batch
    frame.loc[rows - 5, "code"] = "x17"  # text only in the last batch: the column is text in every shard
    return frame


def _ingest(tmp_path, name: str, path: str, **params) -> Examples:
    examples = Examples(uri=str(tmp_path / name))
    os.makedirs(examples.uri)
    ingest(examples=examples, path=path, **params)
    return examples


def _small_batches(monkeypatch) -> None:
    monkeypatch.setattr(ingest_stream, "CSV_BLOCK_BYTES", 1024)
    monkeypatch.setattr(ingest_stream, "JSONL_BATCH_LINES", 7)
    monkeypatch.setattr(ingest_stream, "PARQUET_BATCH_ROWS", 9)
    monkeypatch.setattr(examples_io, "SHARD_ROWS", 60)


def _write(frame: pd.DataFrame, path: str, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        with open(path, "w") as handle:
            for record in frame.to_dict(orient="records"):
                handle.write(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()}) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_small_batches_and_many_shards_give_the_same_split_rows_and_fingerprint(tmp_path, monkeypatch, fmt):
    path = str(tmp_path / f"data.{fmt}")
    _write(_rows(), path, fmt)
    whole = _ingest(tmp_path, "whole", path)
    _small_batches(monkeypatch)
    streamed = _ingest(tmp_path, "streamed", path)

    assert len(shard_paths(streamed, "train")) >= 4  # 60-row shards
    assert os.path.basename(shard_paths(streamed, "train")[0]) == f"data-00000-of-{len(shard_paths(streamed, 'train')):05d}.parquet"
    assert len(shard_paths(whole, "train")) == 1
    for split in ("train", "eval"):
        pd.testing.assert_frame_equal(read_split(streamed, split), read_split(whole, split))
    assert streamed.properties["fingerprint"] == whole.properties["fingerprint"]
    assert streamed.properties["row_counts"] == whole.properties["row_counts"]
    train = read_split(streamed, "train")
    assert train["n"].dtype == np.float64
    assert train["code"].map(type).eq(str).all()  # text in the last batch made every batch's column text


def test_a_json_key_first_seen_in_a_late_batch_is_a_column_with_missing_values_before(tmp_path, monkeypatch):
    _small_batches(monkeypatch)
    path = tmp_path / "d.jsonl"
    lines = [{"x": i, "label": "ab"[i % 2]} for i in range(40)] + [{"x": 1, "late": 5, "label": "a"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    examples = _ingest(tmp_path, "ex", str(path))
    both = pd.concat([read_split(examples, "train"), read_split(examples, "eval")])
    assert both["late"].notna().sum() == 1 and both["late"].dtype == np.float64
    assert both["x"].dtype == np.int64  # int everywhere, no missing value: stays int


def test_a_ragged_line_in_a_late_block_is_named_by_its_line(tmp_path, monkeypatch):
    _small_batches(monkeypatch)
    lines = ["x,color,label"] + [f"{i},red,{'ab'[i % 2]}" for i in range(2000)]
    lines[1500] = "1499,red,a,extra"
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataReadError, match=r"d\.csv, line 1501: expected 3 fields \(as in the header\), got 4"):
        _ingest(tmp_path, "ex", str(path))


def test_an_undecodable_byte_in_a_late_chunk_names_offset_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_stream, "READ_CHUNK_BYTES", 64)
    text = "x,label\n" + "".join(f"{i},a\n" for i in range(100))
    raw = text.encode() + b"7,r\xe9d\n"
    (tmp_path / "d.csv").write_bytes(raw)
    with pytest.raises(DataReadError) as caught:
        _ingest(tmp_path, "ex", str(tmp_path / "d.csv"))
    assert f"at offset {len(text) + 3} (line 102, column 4)" in str(caught.value)


def test_an_error_in_a_late_batch_publishes_nothing(tmp_path, monkeypatch):
    _small_batches(monkeypatch)
    frame = _rows()
    frame.loc[ROWS - 2, "x"] = np.inf
    path = str(tmp_path / "d.parquet")
    frame.to_parquet(path, index=False)
    examples = Examples(uri=str(tmp_path / "ex"))
    os.makedirs(examples.uri)
    with pytest.raises(DataReadError, match=f"first at data row {ROWS - 1}"):
        ingest(examples=examples, path=path)
    assert os.listdir(examples.uri) == []


# Peak memory of ingest does not grow with the file: a CSV larger than the memory left above the
# interpreter's own footprint goes through under RLIMIT_AS, where reading it whole fails.
HEADROOM_BYTES = 96 << 20
FILE_BYTES = 128 << 20
_CHILD = textwrap.dedent(
    """
    import os, resource, sys
    limit = int(sys.argv[3])
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from flywheel.components.ingest import ingest
    from flywheel.dsl.artifacts import Examples
    if sys.argv[4] == "whole":  # the same state as the baseline run, then the file's bytes read at once
        ingest(examples=Examples(uri=sys.argv[2] + "-small"), path=sys.argv[5], label="label")
        try:
            open(sys.argv[1], "rb").read()
        except MemoryError:
            print("MemoryError")
        else:
            print([int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmPeak")][0] * 1024)
        sys.exit(0)
    os.makedirs(sys.argv[2], exist_ok=True)
    examples = Examples(uri=sys.argv[2])
    ingest(examples=examples, path=sys.argv[1], label="label")
    peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmPeak")][0]
    print(sum(examples.properties["row_counts"].values()), peak * 1024)
    """
)


def _child(path, out, limit: int, mode: str = "ingest", small: str = "") -> str:
    # Arrow's default jemalloc pool reserves address space in large chunks that RLIMIT_AS counts
    # though they are never touched; the system allocator makes the limit measure real use.
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(out), str(limit), mode, str(small)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_a_file_larger_than_the_memory_left_goes_through_under_rlimit_as(tmp_path):
    small = tmp_path / "small.csv"
    small.write_text("id,text,x,label\n" + "".join(f"{i},t{i},{i / 2},{'ab'[i % 2]}\n" for i in range(50)))
    baseline = int(_child(small, tmp_path / "small-out", 0).split()[1])  # interpreter + pandas + pyarrow + ingest

    big = tmp_path / "big.csv"
    filler = "lorem ipsum dolor sit amet " * 16
    rows = 0
    with open(big, "w") as handle:
        handle.write("id,text,x,label\n")
        while handle.tell() < FILE_BYTES:
            handle.write("".join(f"{rows + i},{filler}{i % 1000},{i / 4},{'ab'[i % 2]}\n" for i in range(10_000)))
            rows += 10_000
    limit = baseline + HEADROOM_BYTES
    assert os.path.getsize(big) > HEADROOM_BYTES

    # the limit bites: the file's bytes alone do not fit (ingest before streaming held them, their text and a frame)
    assert _child(big, tmp_path / "whole", limit, "whole", small) == "MemoryError"
    counted, peak = map(int, _child(big, tmp_path / "big-out", limit).split())
    assert counted == rows
    assert peak <= limit


def test_a_split_written_before_sharding_is_still_read(tmp_path):
    examples = Examples(uri=str(tmp_path / "old"))
    os.makedirs(os.path.join(examples.uri, "Split-train"))
    _rows(30).to_parquet(os.path.join(examples.uri, "Split-train", "data.parquet"), index=False)
    pd.testing.assert_frame_equal(read_split(examples, "train"), _rows(30))
    assert sum(len(b) for b in examples_io.iter_split_batches(examples, "train", batch_rows=7)) == 30


def test_iter_split_batches_streams_every_shard_in_order_in_bounded_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(examples_io, "SHARD_ROWS", 25)
    examples = Examples(uri=str(tmp_path / "ex"))
    os.makedirs(examples.uri)
    examples_io.write_split(examples, "train", _rows(100))
    assert len(shard_paths(examples, "train")) == 4
    batches = list(examples_io.iter_split_batches(examples, "train", batch_rows=10, columns=["x", "label"]))
    assert max(len(b) for b in batches) == 10 and list(batches[0].columns) == ["x", "label"]
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), _rows(100)[["x", "label"]])
    with pytest.raises(Exception, match="batch_rows"):
        next(examples_io.iter_split_batches(examples, "train", batch_rows=0))

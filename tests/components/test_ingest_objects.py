"""ingest reads data by URI: spans on an S3 bucket (moto on loopback), streamed through flywheel.storage."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from flywheel import storage
from flywheel.components import examples_io
from flywheel.components.ingest import DataReadError, ingest
from flywheel.data_sources import DataSourceError
from flywheel.dsl.artifacts import Examples


def _frame(rows: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"x": range(start, start + rows), "size": [0.5 * i for i in range(rows)],
                         "label": ["a", "b"] * (rows // 2)})


def _put_csv(uri: str, frame: pd.DataFrame) -> None:
    storage.write_bytes(uri, frame.to_csv(index=False).encode())


def _put_parquet(uri: str, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    storage.write_bytes(uri, buffer.getvalue())


def test_the_newest_span_on_a_bucket_is_streamed_and_equals_the_same_files_read_locally(s3_bucket, tmp_path, new_artifact):
    _put_csv(f"{s3_bucket}/data/span-1/rows.csv", _frame(40))
    _put_csv(f"{s3_bucket}/data/span-2/part-a.csv", _frame(60, start=100))
    _put_parquet(f"{s3_bucket}/data/span-2/part-b.parquet", _frame(30, start=500))
    storage.write_bytes(f"{s3_bucket}/data/span-2/_SUCCESS", b"")  # markers are skipped, as locally

    remote = new_artifact(Examples, "remote")
    ingest(examples=remote, path=f"{s3_bucket}/data/span-{{SPAN}}/")
    props = remote.properties
    assert props["span"] == 2
    assert sum(props["row_counts"].values()) == 90
    assert sorted(f["uri"].rsplit("/", 1)[-1] for f in props["data_source"]["files"]) == ["part-a.csv", "part-b.parquet"]

    local_dir = tmp_path / "span-2"
    local_dir.mkdir()
    _frame(60, start=100).to_csv(local_dir / "part-a.csv", index=False)
    _frame(30, start=500).to_parquet(local_dir / "part-b.parquet", index=False)
    local = new_artifact(Examples, "local")
    ingest(examples=local, path=str(local_dir))
    assert props["fingerprint"] == local.properties["fingerprint"]  # the same rows, split the same way
    for split in ("train", "eval"):
        pd.testing.assert_frame_equal(examples_io.read_split(remote, split), examples_io.read_split(local, split))


def test_a_malformed_object_names_the_uri_and_line_and_publishes_nothing(s3_bucket, new_artifact):
    storage.write_bytes(f"{s3_bucket}/bad/rows.csv", b"x,label\n1,a\n2,b,extra\n")
    examples = new_artifact(Examples, "bad")
    with pytest.raises(DataReadError, match=r"rows\.csv.*line 3"):
        ingest(examples=examples, path=f"{s3_bucket}/bad/rows.csv")
    assert examples_io.split_names(examples) == []


def test_nothing_at_the_uri_is_a_clear_error(s3_bucket, new_artifact):
    with pytest.raises(DataSourceError, match="No object is at the data path s3://.*check the bucket and prefix"):
        ingest(examples=new_artifact(Examples, "none"), path=f"{s3_bucket}/missing/")

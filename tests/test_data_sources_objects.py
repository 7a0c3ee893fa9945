"""Span patterns and fingerprints over object-store URIs (S3 API of moto on loopback)."""

from __future__ import annotations

import time

import pytest

from flywheel import storage
from flywheel.data_sources import DataSourceError, cache_identity, describe_source, resolve_pattern


def test_span_pattern_on_a_bucket_resolves_the_newest_spans(s3_bucket):
    for span in (1, 2, 10):
        storage.write_bytes(f"{s3_bucket}/data/span-{span}/part-0.csv", f"x\n{span}\n".encode())
    storage.write_bytes(f"{s3_bucket}/data/span-10/_SUCCESS", b"")
    storage.write_bytes(f"{s3_bucket}/data/other/part-0.csv", b"x\n0\n")

    newest = resolve_pattern(f"{s3_bucket}/data/span-{{SPAN}}/")
    assert newest["span"] == 10 and newest["paths"] == [f"{s3_bucket}/data/span-10"]
    assert resolve_pattern(f"{s3_bucket}/data/span-{{SPAN}}/", span_count=2)["spans"] == [2, 10]

    record = describe_source(f"{s3_bucket}/data/span-{{SPAN}}/")
    assert record["kind"] == "object" and record["span"] == 10
    assert [f["uri"] for f in record["files"]] == [f"{s3_bucket}/data/span-10/part-0.csv"]  # _SUCCESS left out
    assert record["size"] == 5 and record["fingerprint"]


def test_the_fingerprint_changes_when_an_object_is_rewritten_and_not_otherwise(s3_bucket):
    storage.write_bytes(f"{s3_bucket}/d/part.csv", b"x\n1\n")
    first = cache_identity(describe_source(f"{s3_bucket}/d/"))
    assert cache_identity(describe_source(f"{s3_bucket}/d/")) == first
    time.sleep(1.1)  # S3 mtimes have one-second resolution
    storage.write_bytes(f"{s3_bucket}/d/part.csv", b"x\n2\n")
    assert cache_identity(describe_source(f"{s3_bucket}/d/")) != first


def test_an_empty_prefix_or_pattern_is_a_clear_error(s3_bucket):
    with pytest.raises(DataSourceError, match="No object is at the data path"):
        describe_source(f"{s3_bucket}/nothing/")
    with pytest.raises(DataSourceError, match="No file or directory matches the data path"):
        describe_source(f"{s3_bucket}/nothing/span-{{SPAN}}/")

"""Data read from outside the store is part of the cache key, and runs say why a node hit or missed."""

from __future__ import annotations

import os

import pytest

from flywheel import pipeline
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.runner.toy import consume, read_lines


@pytest.fixture()
def reader():
    @pipeline(name="reader")
    def reader_pipeline(source: str = ""):
        data = read_lines(source=source)
        consume(data=data.output)

    return reader_pipeline


def _reason(home, result, node):
    return MetadataStore(home).latest_nodes(result.run)[node].details["cache_reason"]


def test_appended_rows_miss_and_an_untouched_file_hits(home, tmp_path, reader):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n" + "1,2\n" * 200)
    runner = LocalRunner(home, max_workers=0)
    first = runner.run(reader, {"source": str(data)})
    assert first.states == {"read_lines": "COMPLETE", "consume": "COMPLETE"}
    assert _reason(home, first, "read_lines") == "no earlier execution of this node"

    with open(data, "a", encoding="utf-8") as handle:
        handle.write("3,4\n" * 144)
    second = runner.run(reader, {"source": str(data)})
    assert second.states == {"read_lines": "COMPLETE", "consume": "COMPLETE"}
    assert second.outputs["read_lines"]["out"].properties["lines"] == 345
    assert _reason(home, second, "read_lines") == "input data changed: data.csv size 804 B -> 1.4 kB"
    assert _reason(home, second, "consume").startswith("input 'data' changed")

    os.utime(data, (1_000_000_000, 1_000_000_000))  # touched: new mtime, same bytes
    third = runner.run(reader, {"source": str(data)})
    assert third.states == {"read_lines": "CACHED", "consume": "CACHED"}
    assert third.outputs["read_lines"]["out"].uri == second.outputs["read_lines"]["out"].uri
    assert "data.csv unchanged" in _reason(home, third, "read_lines")


def test_same_size_rewrite_is_a_content_change(home, tmp_path, reader):
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")
    runner = LocalRunner(home, max_workers=0)
    runner.run(reader, {"source": str(data)})
    data.write_text("x\n2\n")
    again = runner.run(reader, {"source": str(data)})
    assert again.states["read_lines"] == "COMPLETE"
    assert "content changed (sha256" in _reason(home, again, "read_lines")
    recorded = MetadataStore(home).latest_nodes(again.run)["read_lines"].details["data_sources"][0]
    assert recorded["size"] == 4 and recorded["files"][0]["uri"] == str(data) and len(recorded["sha256"]) == 64


def test_rerun_one_node_and_no_cache_say_so(home, tmp_path, reader):
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")
    runner = LocalRunner(home, max_workers=0)
    runner.run(reader, {"source": str(data)})
    partial = runner.run(reader, {"source": str(data)}, rerun={"consume"})
    assert partial.states == {"read_lines": "CACHED", "consume": "COMPLETE"}
    assert _reason(home, partial, "consume") == "caching off for this run (--no-cache or --rerun)"
    with pytest.raises(Exception, match="does not have"):
        runner.run(reader, {"source": str(data)}, rerun={"nope"})


def test_a_node_whose_cache_policy_is_off_always_runs(home, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")

    @pipeline(name="policy")
    def policy(source: str = ""):
        data_task = read_lines(source=source)
        consume(data=data_task.output).set_caching(False)

    runner = LocalRunner(home, max_workers=0)
    runner.run(policy, {"source": str(data)})
    again = runner.run(policy, {"source": str(data)})
    assert again.states == {"read_lines": "CACHED", "consume": "COMPLETE"}
    assert _reason(home, again, "consume") == "caching off for this node (its cache policy)"


def test_an_object_store_uri_is_fingerprinted_from_its_listing_and_can_be_cached(s3_bucket):
    from flywheel import storage
    from flywheel.data_sources import describe_source, uncacheable

    storage.write_bytes(f"{s3_bucket}/data.csv", b"a,b\n1,2\n")
    record = describe_source(f"{s3_bucket}/data.csv")
    assert record["kind"] == "object" and record["fingerprint_basis"] == "size+mtime" and not uncacheable(record)
    assert uncacheable({**record, "fingerprint": None})  # no fingerprint of any kind: the node always runs


def test_an_unchanged_file_is_hashed_once_and_a_rewritten_one_again(tmp_path, monkeypatch):
    # The runner fingerprints ingest's file before the node runs and ingest records it again.
    from flywheel import data_sources

    data = tmp_path / "rows.csv"
    data.write_text("x,label\n1,a\n")
    opened = []
    real_open = open
    monkeypatch.setattr(data_sources, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k), raising=False)
    first = data_sources.file_sha256(str(data))
    assert data_sources.file_sha256(str(data)) == first and len(opened) == 1
    data.write_text("x,label\n2,b\n")  # same size, new content
    second = data_sources.file_sha256(str(data))
    assert second != first and len(opened) == 2

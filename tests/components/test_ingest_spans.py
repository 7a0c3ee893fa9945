"""ingest with span/version/date patterns (as TFX's ExampleGen) and the data fingerprint it records."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from flywheel.components.ingest import ingest
from flywheel.data_sources import DataSourceError, dataset_name, describe_source, resolve_pattern
from flywheel.dsl.artifacts import Examples


def _write(path, rows: int, start: int = 0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pd.DataFrame({"x": range(start, start + rows), "label": ["a", "b"] * (rows // 2)}).to_csv(path, index=False)
    return str(path)


def test_the_newest_span_and_its_newest_version_are_read_and_recorded(tmp_path, new_artifact):
    _write(tmp_path / "span-1" / "ver-1" / "rows.csv", 40)
    _write(tmp_path / "span-2" / "ver-1" / "rows.csv", 50)
    _write(tmp_path / "span-2" / "ver-3" / "rows.csv", 60, start=100)
    _write(tmp_path / "span-10" / "ver-1" / "rows.csv", 70, start=1000)  # 10 > 2: spans are numbers
    pattern = str(tmp_path / "span-{SPAN}" / "ver-{VERSION}")
    examples = new_artifact(Examples, "spans")
    ingest(examples=examples, path=pattern)
    props = examples.properties
    assert (props["span"], props["version"]) == (10, 1)
    assert sum(props["row_counts"].values()) == 70
    assert props["data_source"]["files"][0]["uri"].endswith(os.path.join("span-10", "ver-1", "rows.csv"))
    assert props["data_source"]["size"] == os.path.getsize(props["data_source"]["files"][0]["uri"])

    rolling = new_artifact(Examples, "rolling")
    ingest(examples=rolling, path=pattern, span_count=2)
    assert rolling.properties["data_source"]["spans"] == [2, 10]
    assert sum(rolling.properties["row_counts"].values()) == 60 + 70  # span 2 at its newest version only


def test_date_patterns_resolve_to_the_newest_day(tmp_path, new_artifact):
    for day in ("2026-11-30", "2026-12-01", "2026-02-31"):  # the last is not a date and is ignored
        _write(tmp_path / day / "rows.csv", 20)
    resolved = resolve_pattern(str(tmp_path / "{YYYY}-{MM}-{DD}" / "rows.csv"))
    assert resolved["date"] == "2026-12-01" and resolved["span"] == 20788  # days since 1970-01-01
    examples = new_artifact(Examples, "dated")
    ingest(examples=examples, path=str(tmp_path / "{YYYY}-{MM}-{DD}"))
    assert examples.properties["data_source"]["date"] == "2026-12-01"


def test_bad_patterns_say_what_is_wrong(tmp_path):
    with pytest.raises(DataSourceError, match="No file or directory matches"):
        resolve_pattern(str(tmp_path / "span-{SPAN}"))
    with pytest.raises(DataSourceError, match="mixes"):
        resolve_pattern(str(tmp_path / "{SPAN}-{YYYY}{MM}{DD}"))
    with pytest.raises(DataSourceError, match="needs all of"):
        resolve_pattern(str(tmp_path / "{YYYY}{MM}"))
    with pytest.raises(DataSourceError, match="span count must be an int >= 1"):
        resolve_pattern(str(tmp_path / "span-{SPAN}"), span_count=0)


def test_fingerprints_are_streamed_content_hashes_that_ignore_timestamps(tmp_path):
    path = _write(tmp_path / "data.csv", 10)
    before = describe_source(path)
    os.utime(path, (1, 1))
    after = describe_source(path)
    assert before["sha256"] == after["sha256"] and before["mtime"] != after["mtime"]
    assert describe_source("")["kind"] == "named"


@pytest.mark.parametrize(
    ("path", "name"),
    [("", "penguins"), ("data/own.csv", "own"), ("exports/sales/span-{SPAN}/", "sales"), ("s3://b/churn/*.parquet", "churn")],
)
def test_the_model_name_derived_from_a_data_path(path, name):
    assert dataset_name(path) == name

"""Reading request rows without pandas (what infra_validate does in the serving image)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flywheel.models import features
from flywheel.components import examples_io
from flywheel.dsl.artifacts import Examples
from flywheel.errors import FlywheelError

SPEC = {"numeric_features": ["x", "n"], "categorical_features": ["c"], "label_vocabulary": ["a", "b"]}


@pytest.fixture
def sharded(tmp_path):
    """Split 'eval' of 7 rows in shards of 3, with missing values in every feature kind."""
    frame = pd.DataFrame({
        "x": [0.5, np.nan, 2.5, 3.5, 4.5, 5.5, 6.5],
        "n": pd.array([1, 2, None, 4, 5, 6, 7], dtype="Int64"),
        "c": ["p", None, "q", "r", "s", "t", "u"],
        "label": ["a", "b", "a", "b", "a", "b", "a"],
    })
    examples = Examples(uri=str(tmp_path / "examples"))
    with examples_io.SplitWriter(examples, "eval", shard_rows=3) as writer:
        writer.write(frame)
    with examples_io.SplitWriter(examples, "empty") as writer:
        writer.write(frame.iloc[:0])
    return examples, frame


def test_head_table_reads_the_first_rows_across_shards(sharded):
    examples, frame = sharded
    assert len(examples_io.shard_paths(examples, "eval")) == 3

    head = examples_io.head_table(examples, "eval", 5, columns=["x", "c"])

    assert head.column_names == ["x", "c"]
    assert head.to_pylist() == [
        {"x": 0.5, "c": "p"}, {"x": None, "c": None}, {"x": 2.5, "c": "q"}, {"x": 3.5, "c": "r"}, {"x": 4.5, "c": "s"},
    ]
    assert examples_io.head_table(examples, "eval", 100).num_rows == len(frame)  # fewer rows than asked
    assert examples_io.head_table(examples, "eval", 1).num_rows == 1


def test_head_table_of_an_empty_split_keeps_its_columns_and_refuses_unknown_ones(sharded):
    examples, _ = sharded

    empty = examples_io.head_table(examples, "empty", 3, columns=["x", "label"])

    assert empty.num_rows == 0 and empty.column_names == ["x", "label"]
    with pytest.raises(FlywheelError, match=r"'eval' split of .* has no column\(s\) \['bill'\]"):
        examples_io.head_table(examples, "eval", 3, columns=["x", "bill"])
    with pytest.raises(FlywheelError, match="no split 'test'"):
        examples_io.head_table(examples, "test", 3)


def test_raw_inputs_from_records_feed_the_model_what_raw_inputs_does(sharded):
    examples, frame = sharded
    records = examples_io.head_table(examples, "eval", 7, columns=["x", "n", "c"]).to_pylist()
    records[3]["x"] = float("nan")  # a NaN is missing too, as a null is

    from_records = features.raw_inputs_from_records(records, SPEC)
    frame.loc[3, "x"] = np.nan
    from_frame = features.raw_inputs(frame, SPEC)

    assert set(from_records) == set(from_frame) == {"x", "n", "c"}
    for name in ("x", "n"):
        assert from_records[name].dtype == np.float32
        np.testing.assert_array_equal(from_records[name], from_frame[name])  # NaN where missing, in both
    assert math.isnan(from_records["n"][2]) and math.isnan(from_records["x"][1])
    assert from_records["c"].tolist() == from_frame["c"].tolist() == ["p", "", "q", "r", "s", "t", "u"]


def test_raw_inputs_from_records_names_a_missing_feature():
    with pytest.raises(FlywheelError, match=r"needs the feature\(s\) \['c'\], which row 1 does not have"):
        features.raw_inputs_from_records([{"x": 1.0, "n": 2, "c": "p"}, {"x": 1.0, "n": 2}], SPEC)

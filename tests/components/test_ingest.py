"""Tests of the ingest component: formats, deterministic split, strict file checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import palmerpenguins
import pytest

from flywheel.components.examples_io import read_split
from flywheel.components.ingest import DataReadError, ingest
from flywheel.dsl.artifacts import Examples
from flywheel.errors import ParameterError


def _frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user": [f"u{i % 15}" for i in range(rows)],
            "x": rng.normal(size=rows).round(4),
            "color": rng.choice(["red", "green", "blue"], size=rows),
            "target": rng.integers(0, 2, size=rows),
        }
    )


def _ingest(new_artifact, name: str = "ex", **params) -> Examples:
    examples = new_artifact(Examples, name)
    ingest(examples=examples, **params)
    return examples


def _both(examples: Examples) -> pd.DataFrame:
    return pd.concat([read_split(examples, "train"), read_split(examples, "eval")], ignore_index=True)


def test_penguins_default_split_is_complete_deterministic_and_near_ratio(new_artifact):
    first = _ingest(new_artifact, "a")
    second = _ingest(new_artifact, "b", path="palmerpenguins")
    penguins = palmerpenguins.load_penguins()
    kept = int(penguins["species"].notna().sum())

    counts = first.properties["row_counts"]
    assert first.properties["label"] == "species"
    assert first.properties["split_names"] == ["train", "eval"]
    assert counts["train"] + counts["eval"] == kept == len(penguins) - first.properties["rows_dropped"]
    assert 0.12 < counts["eval"] / kept < 0.28
    assert first.properties["columns"] == list(penguins.columns)
    assert first.properties["source"] == "palmerpenguins"
    assert first.properties["fingerprint"] == second.properties["fingerprint"]
    for split in ("train", "eval"):
        pd.testing.assert_frame_equal(read_split(first, split), read_split(second, split))


def test_a_row_lands_in_the_same_split_whatever_the_file_order(tmp_path, new_artifact):
    frame = _frame(200)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.sample(frac=1.0, random_state=3).to_csv(tmp_path / "b.csv", index=False)
    one = _ingest(new_artifact, "one", path=str(tmp_path / "a.csv"))
    two = _ingest(new_artifact, "two", path=str(tmp_path / "b.csv"))

    def keyed(examples: Examples, split: str) -> set[tuple]:
        return set(read_split(examples, split).itertuples(index=False, name=None))

    assert keyed(one, "eval") == keyed(two, "eval")
    assert keyed(one, "train") == keyed(two, "train")
    assert len(keyed(one, "eval")) > 0


def test_eval_ratio_moves_rows_and_changes_the_fingerprint(tmp_path, new_artifact):
    _frame(400).to_csv(tmp_path / "d.csv", index=False)
    small = _ingest(new_artifact, "small", path=str(tmp_path / "d.csv"), eval_ratio=0.1)
    large = _ingest(new_artifact, "large", path=str(tmp_path / "d.csv"), eval_ratio=0.5)
    assert 20 <= small.properties["row_counts"]["eval"] <= 60
    assert 160 <= large.properties["row_counts"]["eval"] <= 240
    assert small.properties["fingerprint"] != large.properties["fingerprint"]


def test_split_key_keeps_all_rows_of_a_key_together(tmp_path, new_artifact):
    _frame(300).to_csv(tmp_path / "d.csv", index=False)
    examples = _ingest(new_artifact, path=str(tmp_path / "d.csv"), split_key="user", eval_ratio=0.3)
    train_users = set(read_split(examples, "train")["user"])
    eval_users = set(read_split(examples, "eval")["user"])
    assert train_users and eval_users
    assert not train_users & eval_users


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_each_format_reads_the_same_rows(tmp_path, new_artifact, fmt):
    frame = _frame(80)
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    examples = _ingest(new_artifact, path=str(path))
    assert examples.properties["label"] == "target"
    assert examples.properties["columns"] == list(frame.columns)
    got = _both(examples).sort_values(["user", "x"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, frame.sort_values(["user", "x"]).reset_index(drop=True), check_dtype=False)


def test_directory_and_glob_read_every_matching_file(tmp_path, new_artifact):
    data = tmp_path / "data"
    (data / "part").mkdir(parents=True)
    _frame(40, seed=1).to_csv(data / "a.csv", index=False)
    _frame(50, seed=2).to_parquet(data / "part" / "b.parquet", index=False)
    (data / "README.md").write_text("not data")
    (data / "_SUCCESS").write_text("")
    from_dir = _ingest(new_artifact, "dir", path=str(data))
    assert sum(from_dir.properties["row_counts"].values()) == 90
    from_glob = _ingest(new_artifact, "glob", path=str(data / "*.csv"))
    assert sum(from_glob.properties["row_counts"].values()) == 40


def test_mixed_value_types_in_a_json_column_become_strings(tmp_path, new_artifact):
    lines = [{"size": 1 if i % 2 else "big", "label": i % 2} for i in range(30)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    rows = _both(_ingest(new_artifact, path=str(path)))
    assert set(rows["size"]) == {"1", "big"}


def test_label_missing_rows_are_dropped_or_kept(tmp_path, new_artifact):
    frame = _frame(60).astype({"target": "float"})
    frame.loc[:9, "target"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=False)
    dropped = _ingest(new_artifact, "dropped", path=str(tmp_path / "d.csv"))
    kept = _ingest(new_artifact, "kept", path=str(tmp_path / "d.csv"), drop_label_missing=False)
    assert dropped.properties["rows_dropped"] == 10
    assert sum(dropped.properties["row_counts"].values()) == 50
    assert sum(kept.properties["row_counts"].values()) == 60


# --- errors -----------------------------------------------------------------------------------


def _error(new_artifact, **params) -> str:
    with pytest.raises(DataReadError) as info:
        _ingest(new_artifact, **params)
    return str(info.value)


def test_eval_ratio_out_of_range_is_a_parameter_error(new_artifact):
    with pytest.raises(ParameterError) as info:
        _ingest(new_artifact, eval_ratio=1.5)
    assert str(info.value) == "The 'eval_ratio' parameter of ingest must be a float in (0, 1). Got 1.5 instead."


@pytest.mark.parametrize(
    ("bad_line", "expected", "got"),
    [("u1,0.5,red,1,extra", 4, 5), ("u1,0.5", 4, 2)],
)
def test_ragged_csv_row_names_file_line_and_field_counts(tmp_path, new_artifact, bad_line, expected, got):
    path = tmp_path / "ragged.csv"
    path.write_text("user,x,color,target\nu0,0.1,red,0\nu1,0.2,blue,1\n" + bad_line + "\nu2,0.3,red,0\n")
    message = _error(new_artifact, path=str(path))
    assert str(path) in message
    assert "line 4" in message
    assert f"expected {expected} fields" in message and f"got {got}" in message


def test_undecodable_bytes_name_file_offset_and_line(tmp_path, new_artifact):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"user,x,color,target\nu0,0.1,red,0\nu1,0.2,gr\xfcn,1\n")
    message = _error(new_artifact, path=str(path))
    assert str(path) in message
    assert "offset 42" in message and "line 3" in message
    assert "utf-8" in message


def test_latin1_file_reads_with_its_encoding(tmp_path, new_artifact):
    path = tmp_path / "latin.csv"
    rows = "".join(f"u{i},0.{i},gr\xfcn,{i % 2}\n" for i in range(20))
    path.write_bytes(("user,x,color,target\n" + rows).encode("latin-1"))
    examples = _ingest(new_artifact, path=str(path), encoding="latin-1")
    assert set(_both(examples)["color"]) == {"gr\xfcn"}


@pytest.mark.parametrize("content", ["", "  \n\n", "user,x,color,target\n"])
def test_empty_file_is_named(tmp_path, new_artifact, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    message = _error(new_artifact, path=str(path))
    assert str(path) in message
    assert "empty" in message or "no data rows" in message


def test_glob_without_matches_names_the_pattern(tmp_path, new_artifact):
    pattern = str(tmp_path / "nothing" / "*.csv")
    assert pattern in _error(new_artifact, path=pattern)


def test_missing_path_is_named(tmp_path, new_artifact):
    path = str(tmp_path / "nope.csv")
    assert path in _error(new_artifact, path=path)


def test_missing_label_column_names_file_and_columns(tmp_path, new_artifact):
    path = tmp_path / "d.csv"
    _frame(30).to_csv(path, index=False)
    message = _error(new_artifact, path=str(path), label="price")
    assert str(path) in message and "'price'" in message
    assert "user, x, color, target" in message


def test_label_that_cannot_be_inferred_asks_for_label(tmp_path, new_artifact):
    path = tmp_path / "d.csv"
    _frame(30).drop(columns=["target"]).to_csv(path, index=False)
    message = _error(new_artifact, path=str(path))
    assert str(path) in message and "label=" in message and "user, x, color" in message


def test_directory_with_differing_columns_names_file_and_columns(tmp_path, new_artifact):
    data = tmp_path / "data"
    data.mkdir()
    _frame(30).to_csv(data / "a.csv", index=False)
    _frame(30).rename(columns={"color": "colour"}).to_csv(data / "b.csv", index=False)
    message = _error(new_artifact, path=str(data))
    assert str(data / "b.csv") in message
    assert "'color'" in message and "'colour'" in message


def test_invalid_json_line_names_file_line_and_column(tmp_path, new_artifact):
    path = tmp_path / "d.jsonl"
    path.write_text('{"x": 1, "label": 0}\n{"x": 2, "label": 1}\n{"x": 3 "label": 0}\n')
    message = _error(new_artifact, path=str(path))
    assert str(path) in message and "line 3" in message and "column 9" in message


def test_corrupt_parquet_names_the_file(tmp_path, new_artifact):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet at all")
    message = _error(new_artifact, path=str(path))
    assert str(path) in message and "Parquet" in message


def test_duplicate_header_names_the_column(tmp_path, new_artifact):
    path = tmp_path / "d.csv"
    path.write_text("x,label,x\n1,0,2\n")
    message = _error(new_artifact, path=str(path))
    assert str(path) in message and "column 3" in message and "'x'" in message


def test_unknown_extension_asks_for_format(tmp_path, new_artifact):
    path = tmp_path / "d.txt"
    _frame(30).to_csv(path, index=False)
    assert "format=" in _error(new_artifact, path=str(path))
    examples = _ingest(new_artifact, "explicit", path=str(path), format="csv")
    assert sum(examples.properties["row_counts"].values()) == 30
    assert os.path.isfile(os.path.join(examples.uri, "Split-eval", "data-00000-of-00001.parquet"))


def test_categorical_and_datetime_parquet_columns_become_plain_strings(tmp_path, new_artifact):
    frame = _frame(40).assign(
        color=lambda f: f["color"].astype("category"),
        seen=pd.date_range("2024-01-01", periods=40, freq="D"),
    )
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    rows = _both(_ingest(new_artifact, path=str(tmp_path / "d.parquet")))
    assert rows["color"].dtype == object and set(rows["color"]) == set(frame["color"].astype(str))
    assert "2024-01-05T00:00:00" in set(rows["seen"])


def test_nested_parquet_column_names_the_column(tmp_path, new_artifact):
    frame = _frame(30).assign(tags=[[1, 2]] * 30)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    message = _error(new_artifact, path=str(tmp_path / "d.parquet"))
    assert "'tags'" in message and str(tmp_path / "d.parquet") in message and "nested" in message

"""A corpus of bad and awkward CSV / JSON Lines / Parquet inputs run through ingest.

Every file is generated here (no shipped blobs). Each case either fails with a
``FlywheelError`` whose message names the file (or the source) and the problem,
or is handled correctly: ingest writes both splits and every row it should keep
is there, under column names a model can take.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.components.ingest import columns as ingest_columns
from flywheel.components.examples_io import read_split
from flywheel.components.ingest import ingest
from flywheel.dsl.artifacts import Examples
from flywheel.errors import FlywheelError

GOOD_ROWS = 40
HEADER = "x,color,label"


def good_csv_rows(n: int = GOOD_ROWS) -> str:
    return "".join(f"{i * 0.5},{['red', 'blue'][i % 2]},{['a', 'b'][i % 3 % 2]}\n" for i in range(n))


def good_frame(n: int = GOOD_ROWS) -> pd.DataFrame:
    return pd.DataFrame({"x": [i * 0.5 for i in range(n)], "color": ["red", "blue"] * (n // 2), "label": ["a", "b"] * (n // 2)})


def jsonl(records: list[str]) -> str:
    return "\n".join(records) + "\n"


GOOD_JSONL = [f'{{"x": {i}, "color": "c{i % 3}", "label": "{["a", "b"][i % 2]}"}}' for i in range(GOOD_ROWS)]


@dataclasses.dataclass
class Case:
    """One input: files to write (name -> text, bytes or a writer), what to pass, what must happen."""

    files: dict[str, str | bytes | Callable[[str], None]]
    expect: str  # "error" or "ok"
    says: tuple[str, ...] = ()  # substrings of the error message (besides the path)
    params: dict = dataclasses.field(default_factory=dict)
    path: str = "data"  # relative to the case directory: a file name, "" (the directory) or a glob
    rows: int | None = None  # ok: rows expected across both splits
    columns: tuple[str, ...] | None = None  # ok: columns expected (in order)
    names: str = "file"  # what the message must name: "file" (the first file), "dir", "none"


def parquet(table_or_frame) -> Callable[[str], None]:
    def write(path: str) -> None:
        if isinstance(table_or_frame, pd.DataFrame):
            table_or_frame.to_parquet(path, index=False)
        else:
            pq.write_table(table_or_frame, path)

    return write


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def csv_case(text: str | bytes, expect: str, *says: str, **kw) -> Case:
    return Case({"data.csv": text}, expect, says, path="data.csv", **kw)


def jsonl_case(text: str | bytes, expect: str, *says: str, **kw) -> Case:
    return Case({"data.jsonl": text}, expect, says, path="data.jsonl", **kw)


def parquet_case(writer, expect: str, *says: str, **kw) -> Case:
    return Case({"data.parquet": writer}, expect, says, path="data.parquet", **kw)


RANDOM_BYTES = np.random.default_rng(0).integers(0, 256, size=2048, dtype=np.uint8).tobytes()
GOOD_PARQUET = parquet_bytes(good_frame())

CASES: dict[str, Case] = {
    # -- CSV: structure ---------------------------------------------------------------------
    "csv-empty": csv_case("", "error", "is empty"),
    "csv-whitespace-only": csv_case("  \n\n \t\n", "error", "is empty"),
    "csv-header-only": csv_case(HEADER + "\n", "error", "no data rows"),
    "csv-extra-field": csv_case(HEADER + "\n1,red,a\n2,blue,b,extra\n", "error", "line 3", "expected 3 fields"),
    "csv-missing-field": csv_case(HEADER + "\n1,red,a\n2,blue\n", "error", "line 3", "got 2"),
    "csv-empty-header-name": csv_case("x,,label\n1,red,a\n", "error", "empty column name"),
    "csv-trailing-comma": csv_case("x,color,label,\n1,red,a,\n", "error", "empty column name"),
    "csv-duplicate-header": csv_case("x,x,label\n1,2,a\n", "error", "repeats column name 'x'"),
    "csv-unbalanced-quote": csv_case(HEADER + '\n1,"red,a\n2,blue,b\n' + good_csv_rows(), "error", "line"),
    "csv-latin1-bytes": csv_case((HEADER + "\n1,r\xe9d,a\n").encode("latin-1"), "error", "not valid utf-8", "line 2"),
    "csv-random-bytes": csv_case(RANDOM_BYTES, "error", "not valid utf-8"),
    "csv-nul-bytes": csv_case(HEADER + "\n1,re\x00d,a\n" + good_csv_rows(), "ok", rows=GOOD_ROWS + 1),
    "csv-parquet-bytes-as-csv": csv_case(GOOD_PARQUET, "error", "not valid utf-8"),
    "csv-only-newlines": csv_case("\n\n\n", "error", "is empty"),
    # -- CSV: column names that cannot be model inputs (#15 item 9) ------------------------------
    "csv-name-space": csv_case("bill length,color,label\n" + good_csv_rows(), "error", "'bill length'", "rename_columns=true"),
    "csv-name-slash": csv_case("mass/kg,color,label\n" + good_csv_rows(), "error", "'mass/kg' -> 'mass_kg'"),
    "csv-name-dash": csv_case("bill-depth,color,label\n" + good_csv_rows(), "error", "'bill-depth'"),
    "csv-name-dot": csv_case("body.mass,color,label\n" + good_csv_rows(), "error", "'body.mass'"),
    "csv-name-leading-digit": csv_case("2x,color,label\n" + good_csv_rows(), "error", "'2x' -> 'col_2x'"),
    "csv-name-leading-underscore": csv_case("_x,color,label\n" + good_csv_rows(), "error", "'_x'"),
    "csv-name-unicode": csv_case("größe,color,label\n" + good_csv_rows(), "error", "'größe'"),
    "csv-name-colon": csv_case("a:b,color,label\n" + good_csv_rows(), "error", "'a:b'"),
    "csv-name-padded": csv_case(" x,color,label\n" + good_csv_rows(), "error", "' x'"),
    "csv-renamed-on-request": csv_case(
        "bill length,mass/kg,label\n" + good_csv_rows(), "ok", params={"rename_columns": True},
        rows=GOOD_ROWS, columns=("bill_length", "mass_kg", "label"),
    ),
    "csv-rename-collision": csv_case(
        "a b,a_b,label\n" + good_csv_rows(), "ok", params={"rename_columns": True},
        rows=GOOD_ROWS, columns=("a_b_2", "a_b", "label"),
    ),
    "csv-rename-label-too": csv_case(
        "x,color,the label\n" + good_csv_rows(), "ok", params={"rename_columns": True, "label": "the label"},
        rows=GOOD_ROWS, columns=("x", "color", "the_label"),
    ),
    # -- CSV: values ------------------------------------------------------------------------------
    "csv-infinity": csv_case(HEADER + "\ninf,red,a\n" + good_csv_rows(), "error", "column 'x'", "infinite"),
    "csv-minus-infinity": csv_case(HEADER + "\n-inf,red,a\n" + good_csv_rows(), "error", "infinite"),
    "csv-all-labels-missing": csv_case(HEADER + "\n" + "".join(f"{i},red,\n" for i in range(30)), "error", "has no value in the label column 'label'"),
    "csv-one-row": csv_case(HEADER + "\n1,red,a\n", "error", "split empty"),
    "csv-label-not-there": csv_case(HEADER + "\n" + good_csv_rows(), "error", "'nope' is not in", params={"label": "nope"}),
    "csv-no-inferable-label": csv_case("x,color,kind\n" + good_csv_rows(), "error", "Cannot infer the label column"),
    "csv-huge-integer": csv_case(HEADER + "\n" + "".join(f"{10**30 + i},red,a\n" for i in range(30)), "ok", rows=30),
    # -- CSV: awkward but valid -------------------------------------------------------------------
    "csv-bom": csv_case(("\ufeff" + HEADER + "\n" + good_csv_rows()).encode("utf-8"), "ok", rows=GOOD_ROWS, columns=("x", "color", "label")),
    "csv-crlf": csv_case((HEADER + "\n" + good_csv_rows()).replace("\n", "\r\n"), "ok", rows=GOOD_ROWS),
    "csv-blank-lines": csv_case(HEADER + "\n\n" + good_csv_rows().replace("\n", "\n\n"), "ok", rows=GOOD_ROWS),
    "csv-quoted-commas-newlines": csv_case(
        HEADER + "\n" + "".join(f'{i},"re,d\nline",{"ab"[i % 2]}\n' for i in range(GOOD_ROWS)), "ok", rows=GOOD_ROWS
    ),
    "csv-mixed-types": csv_case(HEADER + "\n" + "".join(f"{i if i % 2 else 'n/a'},red,{'ab'[i % 2]}\n" for i in range(GOOD_ROWS)), "ok", rows=GOOD_ROWS),
    "csv-some-labels-missing": csv_case(HEADER + "\n" + good_csv_rows() + "".join(f"{i},red,\n" for i in range(5)), "ok", rows=GOOD_ROWS),
    "csv-empty-column": csv_case("x,color,label\n" + "".join(f"{i},,{'ab'[i % 2]}\n" for i in range(GOOD_ROWS)), "ok", rows=GOOD_ROWS),
    "csv-latin1-declared": csv_case(
        (HEADER + "\n" + good_csv_rows().replace("red", "r\xe9d")).encode("latin-1"), "ok", params={"encoding": "latin-1"}, rows=GOOD_ROWS
    ),
    "csv-unknown-encoding": csv_case(HEADER + "\n" + good_csv_rows(), "error", "'encoding' parameter", params={"encoding": "klingon"}, names="none"),
    "csv-duplicate-rows": csv_case(HEADER + "\n" + "1,red,a\n2,blue,b\n" * 20, "ok", rows=GOOD_ROWS),
    # -- JSON Lines ---------------------------------------------------------------------------------
    "jsonl-empty": jsonl_case("", "error", "is empty"),
    "jsonl-invalid": jsonl_case(jsonl(GOOD_JSONL[:3] + ['{"x": 1, "label": ']), "error", "line 4", "invalid JSON"),
    "jsonl-array-line": jsonl_case(jsonl(GOOD_JSONL[:3] + ["[1, 2, 3]"]), "error", "line 4", "expected a JSON object, got a list"),
    "jsonl-scalar-line": jsonl_case(jsonl(GOOD_JSONL[:3] + ["42"]), "error", "line 4", "got a int"),
    "jsonl-nested-dict": jsonl_case(jsonl(GOOD_JSONL[:3] + ['{"x": {"a": 1}, "label": "a"}']), "error", "line 4", "nested value"),
    "jsonl-nested-list": jsonl_case(jsonl(GOOD_JSONL[:3] + ['{"x": [1, 2], "label": "a"}']), "error", "key 'x'", "nested value"),
    "jsonl-whole-json-array": Case(
        {"data.json": "[" + ", ".join(GOOD_JSONL) + "]\n"}, "error", ("line 1", "got a list"), path="data.json"
    ),
    "jsonl-pretty-printed": jsonl_case('{\n  "x": 1,\n  "label": "a"\n}\n', "error", "line 1", "invalid JSON"),
    "jsonl-infinity": jsonl_case(jsonl(GOOD_JSONL + ['{"x": Infinity, "color": "c", "label": "a"}']), "error", "infinite"),
    "jsonl-huge-integer": jsonl_case(jsonl([f'{{"x": {10**30 + i}, "label": "{"ab"[i % 2]}"}}' for i in range(30)]), "ok", rows=30),
    "jsonl-name-space": jsonl_case(jsonl([f'{{"bill length": {i}, "label": "{"ab"[i % 2]}"}}' for i in range(30)]), "error", "'bill length'"),
    "jsonl-keys-differ": jsonl_case(jsonl(GOOD_JSONL + ['{"x": 3, "label": "a"}', '{"color": "c1", "label": "b"}']), "ok", rows=GOOD_ROWS + 2),
    "jsonl-mixed-value-types": jsonl_case(jsonl([f'{{"x": {i if i % 2 else chr(34) + "n" + chr(34)}, "label": "{"ab"[i % 2]}"}}' for i in range(30)]), "ok", rows=30),
    "jsonl-bool-and-int": jsonl_case(jsonl([f'{{"x": {"true" if i % 2 else i}, "label": "{"ab"[i % 2]}"}}' for i in range(30)]), "ok", rows=30),
    "jsonl-empty-objects": jsonl_case(jsonl(["{}"] * 10), "error", "no data rows (columns: none)"),
    "jsonl-all-labels-null": jsonl_case(jsonl([f'{{"x": {i}, "label": null}}' for i in range(30)]), "error", "has no value in the label column"),
    "jsonl-bom": jsonl_case(("\ufeff" + jsonl(GOOD_JSONL)).encode("utf-8"), "ok", rows=GOOD_ROWS),
    "jsonl-latin1": jsonl_case(jsonl(GOOD_JSONL[:2] + ['{"x": 1, "color": "r\xe9d", "label": "a"}']).encode("latin-1"), "error", "not valid utf-8", "line 3"),
    # -- Parquet --------------------------------------------------------------------------------------
    "parquet-zero-bytes": parquet_case(b"", "error", "is empty"),
    "parquet-truncated": parquet_case(GOOD_PARQUET[: len(GOOD_PARQUET) // 2], "error", "cannot be read as Parquet"),
    "parquet-csv-text": parquet_case((HEADER + "\n" + good_csv_rows()).encode(), "error", "cannot be read as Parquet"),
    "parquet-random-bytes": parquet_case(RANDOM_BYTES, "error", "cannot be read as Parquet"),
    "parquet-no-rows": parquet_case(parquet(good_frame().iloc[:0]), "error", "no data rows"),
    "parquet-list-column": parquet_case(
        parquet(pa.table({"x": [[1, 2]] * GOOD_ROWS, "label": ["a", "b"] * (GOOD_ROWS // 2)})), "error", "Column 'x'", "nested"
    ),
    "parquet-struct-column": parquet_case(
        parquet(pa.table({"x": [{"a": 1}] * GOOD_ROWS, "label": ["a", "b"] * (GOOD_ROWS // 2)})), "error", "Column 'x'", "nested"
    ),
    "parquet-name-space": parquet_case(parquet(good_frame().rename(columns={"x": "bill length"})), "error", "'bill length'"),
    "parquet-int-names": parquet_case(parquet(pa.table({"0": [1.0] * GOOD_ROWS, "label": ["a", "b"] * (GOOD_ROWS // 2)})), "error", "'0' -> 'col_0'"),
    "parquet-duplicate-names": parquet_case(
        parquet(pa.Table.from_arrays([pa.array([1.0] * GOOD_ROWS), pa.array([2.0] * GOOD_ROWS), pa.array(["a", "b"] * (GOOD_ROWS // 2))], names=["x", "x", "label"])),
        "error", "repeats column name(s) 'x'",
    ),
    "parquet-infinity": parquet_case(parquet(good_frame().assign(x=[np.inf] + [1.0] * (GOOD_ROWS - 1))), "error", "column 'x'", "infinite"),
    "parquet-categorical": parquet_case(parquet(good_frame().astype({"color": "category"})), "ok", rows=GOOD_ROWS),
    "parquet-datetimes": parquet_case(parquet(good_frame().assign(when=pd.date_range("2024-01-01", periods=GOOD_ROWS, tz="UTC"))), "ok", rows=GOOD_ROWS),
    "parquet-nullable-ints": parquet_case(parquet(good_frame().assign(n=pd.array([1, None] * (GOOD_ROWS // 2), dtype="Int64"))), "ok", rows=GOOD_ROWS),
    "parquet-decimal": parquet_case(
        parquet(pa.table({"x": pa.array([__import__("decimal").Decimal(f"{i}.5") for i in range(GOOD_ROWS)]), "label": ["a", "b"] * (GOOD_ROWS // 2)})), "ok", rows=GOOD_ROWS
    ),
    "parquet-binary": parquet_case(parquet(pa.table({"x": [bytes([i, 255]) for i in range(GOOD_ROWS)], "label": ["a", "b"] * (GOOD_ROWS // 2)})), "ok", rows=GOOD_ROWS),
    "parquet-named-index": parquet_case(parquet(good_frame().set_index("color")), "ok", rows=GOOD_ROWS),
    "parquet-all-null-label": parquet_case(parquet(good_frame().assign(label=[None] * GOOD_ROWS)), "error", "has no value in the label column"),
    # -- several files, directories, globs --------------------------------------------------------------
    "dir-good-and-bad": Case({"a.csv": HEADER + "\n" + good_csv_rows(), "b.csv": HEADER + "\n1,red\n"}, "error", ("b.csv", "line 2"), path="", names="none"),
    "dir-columns-differ": Case({"a.csv": HEADER + "\n" + good_csv_rows(), "b.csv": "x,label\n1,a\n"}, "error", ("b.csv", "different columns"), path="", names="none"),
    "dir-csv-and-parquet": Case({"a.csv": HEADER + "\n" + good_csv_rows(), "b.parquet": GOOD_PARQUET}, "ok", path="", rows=2 * GOOD_ROWS),
    "dir-column-order-differs": Case({"a.csv": HEADER + "\n" + good_csv_rows(), "b.csv": "label,x,color\na,1,red\nb,2,blue\n"}, "ok", path="", rows=GOOD_ROWS + 2),
    "dir-types-differ": Case({"a.csv": HEADER + "\n" + good_csv_rows(), "b.csv": HEADER + "\nhigh,red,a\nlow,blue,b\n"}, "ok", path="", rows=GOOD_ROWS + 2),
    "dir-only-hidden": Case({".hidden.csv": HEADER + "\n" + good_csv_rows()}, "error", ("holds no data files",), path="", names="dir"),
    "dir-dangling-symlink": Case(
        {"a.csv": HEADER + "\n" + good_csv_rows(), "b.csv": lambda path: os.symlink(path + ".gone", path)}, "error", ("b.csv", "a broken link to"), path="", names="none"
    ),
    "dir-name-like-data": Case({"sub.csv/a.csv": HEADER + "\n" + good_csv_rows()}, "ok", path="", rows=GOOD_ROWS),
    "glob-no-match": Case({"a.csv": HEADER + "\n" + good_csv_rows()}, "error", ("No files match the glob",), path="*.parquet", names="none"),
    "path-missing": Case({}, "error", ("does not exist",), path="nothing.csv", names="none"),
    "unknown-extension": Case({"data.txt": HEADER + "\n" + good_csv_rows()}, "error", ("Cannot tell the format",), path="data.txt"),
    "format-forced-wrong": Case({"data.csv": GOOD_PARQUET}, "error", ("not valid utf-8",), path="data.csv", params={"format": "jsonl"}),
}


def _write(case_dir: str, case: Case) -> None:
    for name, content in case.files.items():
        path = os.path.join(case_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if callable(content):
            content(path)
        else:
            with open(path, "wb") as handle:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_fails_clearly_or_is_handled(case_id, tmp_path):
    case = CASES[case_id]
    case_dir = str(tmp_path / "in")
    os.makedirs(case_dir)
    _write(case_dir, case)
    path = os.path.join(case_dir, case.path) if case.path else case_dir
    examples = Examples(uri=str(tmp_path / "out"))
    os.makedirs(examples.uri)

    if case.expect == "error":
        with pytest.raises(FlywheelError) as caught:
            ingest(examples=examples, path=path, **case.params)
        message = str(caught.value)
        if case.names == "file":
            assert path in message, f"{case_id}: the message does not name the file: {message}"
        elif case.names == "dir":
            assert case_dir in message, f"{case_id}: the message does not name the directory: {message}"
        for part in case.says:
            assert part in message, f"{case_id}: {part!r} not in: {message}"
        assert "Traceback" not in message
        return

    ingest(examples=examples, path=path, **case.params)
    train, evaluate = read_split(examples, "train"), read_split(examples, "eval")
    assert len(train) and len(evaluate)
    assert len(train) + len(evaluate) == case.rows
    assert list(train.columns) == list(evaluate.columns) == examples.properties["columns"]
    if case.columns is not None:
        assert tuple(train.columns) == case.columns
    assert all(ingest_columns.COLUMN_RULE.match(c) for c in train.columns)
    assert examples.properties["label"] in train.columns


def test_the_corpus_is_large_and_covers_every_format():
    kinds = {case_id.split("-")[0] for case_id in CASES}
    assert {"csv", "jsonl", "parquet", "dir"} <= kinds
    assert len(CASES) >= 90

"""Bounded-batch readers of ingest: CSV, JSON Lines and Parquet files as a stream of DataFrames.

A file is read twice, never whole: ``scan`` checks it strictly (a malformed
line stops the run naming the file and line) and records each column's value
kinds; ``batches`` reads it again as DataFrames whose columns all have the
types that ``column_types`` settled on over every file, so every batch (and
every shard ingest writes) shares one schema. Memory is bounded by one batch:
``CSV_BLOCK_BYTES`` of CSV, ``JSONL_BATCH_LINES`` lines, ``PARQUET_BATCH_ROWS``
rows.

Every file is opened by ``open_source`` (the one place, so other storage
can be plugged in there).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from typing import TYPE_CHECKING, Any, BinaryIO

from flywheel.errors import FlywheelError, ParameterError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

CSV_BLOCK_BYTES = 4 << 20
JSONL_BATCH_LINES = 20_000
PARQUET_BATCH_ROWS = 65_536
READ_CHUNK_BYTES = 1 << 20
BOOL_STRINGS = ("True", "False", "TRUE", "FALSE", "true", "false")
# Kinds a column's values can have; see column_types for how they combine.
NUMERIC_KINDS = {"int", "float"}


def open_source(path: str) -> BinaryIO:
    """Opens one input file as a binary stream (every read of ingest goes through here).

    An object-store URI (``s3://``, ``gs://``, ``minio://``) opens through ``flywheel.storage``
    (a seekable pyarrow file, read in ranges: Parquet footers need seeking).
    """
    from flywheel import storage

    if storage.is_object_uri(path):
        return storage.open_input_file(path)
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def _object_size(path: str, error: type[FlywheelError]) -> int:
    """The size of an object-store file; ``error`` when nothing is there."""
    from flywheel import storage

    found = storage.info(path)
    if found is None:
        raise error(f"{storage.redact(path)} does not exist or is not an object; point the path at a data file.")
    return found.size


class Utf8Stream(io.RawIOBase):
    """A binary stream decoded from ``encoding`` and re-encoded as UTF-8, chunk by chunk.

    A byte that cannot be decoded raises ``error`` naming the file, the byte,
    its offset, line and column. A UTF-8 byte-order mark is dropped.
    """

    def __init__(self, raw: BinaryIO, path: str, encoding: str, error: type[FlywheelError]) -> None:
        super().__init__()
        try:
            self._decoder = codecs.getincrementaldecoder(encoding)()
        except LookupError as exc:
            raise ParameterError(
                f"The 'encoding' parameter of ingest must be a Python codec name. Got {encoding!r} instead."
            ) from exc
        self._raw, self._path, self._encoding, self._error = raw, path, encoding, error
        self._strip_bom = encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")
        self._pending = b""
        self._consumed = 0
        self._lines = 0
        self._line_start = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._eof:
            self._fill()
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()

    def _fill(self) -> None:
        chunk = self._raw.read(READ_CHUNK_BYTES)
        if self._consumed == 0 and self._strip_bom and chunk.startswith(codecs.BOM_UTF8):
            chunk, self._consumed = chunk[3:], 3
        held = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(chunk, not chunk)
        except UnicodeDecodeError as exc:
            self._raise_undecodable(chunk, max(exc.start - held, 0), exc.reason)
        self._lines += chunk.count(b"\n")
        last_newline = chunk.rfind(b"\n")
        if last_newline >= 0:
            self._line_start = self._consumed + last_newline + 1
        self._consumed += len(chunk)
        self._pending = text.encode("utf-8")
        self._eof = not chunk

    def _raise_undecodable(self, chunk: bytes, position: int, reason: str) -> None:
        offset = self._consumed + position
        line = self._lines + chunk.count(b"\n", 0, position) + 1
        newline = chunk.rfind(b"\n", 0, position)
        line_start = self._consumed + newline + 1 if newline >= 0 else self._line_start
        raise self._error(
            f"{self._path} is not valid {self._encoding} text: byte {chunk[position:position + 1]!r} at offset "
            f"{offset} (line {line}, column {offset - line_start + 1}) cannot be decoded ({reason}). Re-save the "
            "file as UTF-8 or pass encoding=... (e.g. 'latin-1')."
        )


def _text(path: str, encoding: str, error: type[FlywheelError]) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        io.BufferedReader(Utf8Stream(open_source(path), path, encoding, error)), encoding="utf-8", newline=""
    )


def check_not_blank(path: str, error: type[FlywheelError]) -> None:
    """Raises unless the file holds a byte other than whitespace (reads only until it finds one)."""
    size = 0
    with open_source(path) as raw:
        while chunk := raw.read(READ_CHUNK_BYTES):
            size += len(chunk)
            if chunk.strip():
                return
    raise error(f"{path} is empty ({size} bytes); expected a header and data rows.")


# -- CSV ---------------------------------------------------------------------------------------------


def csv_header(path: str, encoding: str, error: type[FlywheelError]) -> list[str]:
    """The header record of a CSV file (the first non-blank one), checked."""
    with _text(path, encoding, error) as handle:
        for record in csv.reader(handle):
            if record:
                _check_header(path, record, error)
                return record
    raise error(f"{path} is empty; expected a header and data rows.")


def _check_header(path: str, header: list[str], error: type[FlywheelError]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name.strip():
            raise error(f"{path}, line 1, column {i}: the header has an empty column name; name every column.")
        if name in seen:
            raise error(f"{path}, line 1, column {i}: the header repeats column name {name!r}; names must be unique.")
        seen.add(name)


def _csv_tables(path: str, header: list[str], encoding: str, error: type[FlywheelError]) -> Iterator[Any]:
    """Record batches of a CSV file, every column read as nullable strings."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    stream = Utf8Stream(open_source(path), path, encoding, error)
    try:
        reader = arrow_csv.open_csv(
            stream,
            read_options=arrow_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            parse_options=arrow_csv.ParseOptions(newlines_in_values=True),
            convert_options=arrow_csv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=True
            ),
        )
        yield from reader
    except pa.ArrowInvalid as exc:
        _raise_csv_problem(path, header, encoding, error, exc)
    finally:
        stream.close()


def _raise_csv_problem(path: str, header: list[str], encoding: str, error: type[FlywheelError], exc: Exception) -> None:
    """Finds the first record whose field count differs from the header's (Python's csv module, streamed)."""
    with _text(path, encoding, error) as handle:
        reader = csv.reader(handle)
        records = (record for record in reader if record)
        next(records, None)
        for record in records:
            if len(record) != len(header):
                raise error(
                    f"{path}, line {reader.line_num}: expected {len(header)} fields (as in the header), "
                    f"got {len(record)}. Fix the row (a missing or extra comma, or an unquoted comma "
                    "inside a value)."
                ) from exc
    raise error(f"{path} cannot be parsed as CSV (no line found at fault; check quoting): {exc}") from exc


def _string_kind(array: Any, known: set[str]) -> str:
    """The kind of a column of CSV strings: int, bigint, float, bool or str.

    ``known`` (kinds earlier batches had) skips tests that cannot change the
    settled type: once a column holds text it stays text, once float never int.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if "str" in known or len(known - {"null"}) > 1:
        return "str"
    attempts = (("float", pa.float64()),) if known & {"float", "bigint"} else (("int", pa.int64()), ("float", pa.float64()))
    for kind, target in attempts:
        try:
            pc.cast(array, target)
        except pa.ArrowInvalid:
            if kind == "int" and pc.all(pc.match_substring_regex(array, r"^[+-]?\d+$")).as_py():
                return "bigint"
            continue
        return kind
    return "bool" if pc.all(pc.is_in(array, value_set=pa.array(BOOL_STRINGS))).as_py() else "str"


def _csv_kinds(table: Any, known: dict[str, set[str]]) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for name, column in zip(table.schema.names, table.columns):
        present = column.drop_null()
        found = {_string_kind(present, known.get(name, set()))} if len(present) else set()
        kinds[name] = found | ({"null"} if column.null_count else set())
    return kinds


# -- JSON Lines -----------------------------------------------------------------------------------------


def _jsonl_records(path: str, encoding: str, error: type[FlywheelError]) -> Iterator[list[dict[str, Any]]]:
    """Lists of at most JSONL_BATCH_LINES checked records."""
    batch: list[dict[str, Any]] = []
    with _text(path, encoding, error) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}, line {number}, column {exc.colno}: invalid JSON ({exc.msg}).") from exc
            if not isinstance(record, dict):
                raise error(
                    f"{path}, line {number}: expected a JSON object, got a {type(record).__name__}; "
                    "ingest reads JSON Lines (one object per line)."
                )
            for key, value in record.items():
                if isinstance(value, (dict, list)):
                    raise error(
                        f"{path}, line {number}, key {key!r}: nested value ({type(value).__name__}); "
                        "ingest reads flat rows of scalar values."
                    )
            batch.append(record)
            if len(batch) >= JSONL_BATCH_LINES:
                yield batch
                batch = []
    if batch:
        yield batch


def _value_kind(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "bigint" if abs(value) >= 2**63 else "int"
    if isinstance(value, float):
        return "float"
    return "str" if isinstance(value, str) else type(value).__name__


# -- Parquet ----------------------------------------------------------------------------------------------


def _parquet_frames(path: str, error: type[FlywheelError]) -> Iterator[pd.DataFrame]:
    import pyarrow
    import pyarrow.parquet as pq

    from flywheel import storage

    size = _object_size(path, error) if storage.is_object_uri(path) else os.path.getsize(path)
    if size == 0:
        raise error(f"{path} is empty (0 bytes); expected a Parquet file.")
    try:
        with open_source(path) as raw, pq.ParquetFile(raw) as parquet:
            names = parquet.schema_arrow.names
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise error(
                    f"{path} repeats column name(s) {', '.join(map(repr, repeated))}; names must be unique. "
                    "Rename the columns where the file is written."
                )
            if parquet.metadata.num_rows == 0:
                raise error(f"{path} has no data rows (columns: {', '.join(names) or 'none'}).")
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                # a pandas index stored as columns comes back as the index, then is dropped (as before)
                yield pyarrow.Table.from_batches([batch]).to_pandas().reset_index(drop=True)
    except (OSError, pyarrow.ArrowException) as exc:
        raise error(f"{path} cannot be read as Parquet: {exc}") from exc


# -- frames of any format -------------------------------------------------------------------------------


def raw_batches(path: str, fmt: str, encoding: str, error: type[FlywheelError]) -> Iterator[Any]:
    """One file in batches of bounded size, strictly checked, with the types each batch has on its own.

    CSV: Arrow record batches of nullable strings; JSON Lines: DataFrames of
    Python values; Parquet: DataFrames as pandas reads them.

    Raises:
        FlywheelError: (``error``) the file is empty, malformed or not decodable (file and line named).
    """
    import pandas as pd

    from flywheel import storage

    if storage.is_object_uri(path):
        _object_size(path, error)
    elif not os.path.isfile(path):
        target = f" (a broken link to {os.readlink(path)!r})" if os.path.islink(path) else ""
        raise error(f"{path} does not exist or is not a file{target}; remove it or point it at a data file.")
    if fmt == "parquet":
        yield from _parquet_frames(path, error)
        return
    check_not_blank(path, error)
    rows = 0
    if fmt == "csv":
        header = csv_header(path, encoding, error)
        for batch in _csv_tables(path, header, encoding, error):
            rows += batch.num_rows
            if batch.num_rows:
                yield batch
        if not rows:
            raise error(f"{path} has no data rows (columns: {', '.join(header)}).")
        return
    columns: list[str] = []
    for records in _jsonl_records(path, encoding, error):
        columns += [key for record in records for key in record if key not in columns]
        rows += len(records)
        yield pd.DataFrame.from_records(records)
    if not columns:
        raise error(f"{path} has no data rows (columns: none).")


def batch_kinds(frame: Any, fmt: str, known: dict[str, set[str]]) -> dict[str, set[str]]:
    """The kinds of values in each column of one raw batch (see ``column_types``).

    ``known``: the kinds of the file's earlier batches (lets CSV skip settled columns).
    """
    import pandas as pd

    if fmt == "csv":
        return _csv_kinds(frame, known)
    kinds: dict[str, set[str]] = {}
    for name in frame.columns:
        values = frame[name]
        dtype = values.dtype
        nulls = {"null"} if values.isna().any() else set()
        if pd.api.types.is_bool_dtype(dtype):
            kinds[str(name)] = {"bool"} | nulls
        elif pd.api.types.is_integer_dtype(dtype):
            kinds[str(name)] = {"int"} | nulls
        elif pd.api.types.is_float_dtype(dtype):
            kinds[str(name)] = ({"float"} if values.notna().any() else set()) | nulls
        else:
            kinds[str(name)] = {_value_kind(v) for v in values.dropna()} | nulls
    return kinds


def merge_kinds(into: dict[str, set[str]], kinds: dict[str, set[str]]) -> None:
    for name, found in kinds.items():
        into.setdefault(name, set()).update(found)


def column_types(kinds: dict[str, set[str]]) -> dict[str, str]:
    """One type per column from the kinds seen over every batch of every file.

    int (no missing value anywhere) -> "int"; int, float and missing -> "float"
    (as pandas reads CSV); bool -> "bool"; one other kind (str, Decimal,
    bytes) -> that kind; integers beyond 64 bits or a mix of kinds -> "str"
    (every value as its string); nothing but missing values -> "float".
    """
    types: dict[str, str] = {}
    for name, found in kinds.items():
        present = found - {"null"}
        if not present or present <= NUMERIC_KINDS:
            types[name] = "int" if present == {"int"} and "null" not in found else "float"
        elif len(present) == 1 and "bigint" not in present:
            types[name] = present.pop()
        else:
            types[name] = "str"
    return types


def coerce(frame: Any, types: dict[str, str], fmt: str) -> pd.DataFrame:
    """Gives every column of a raw batch its settled type (the same for every batch and file)."""
    import pandas as pd

    if fmt == "csv":
        frame = _csv_numbers(frame, types)
    out = {}
    for name, kind in types.items():
        values = frame[name] if name in frame.columns else pd.Series([None] * len(frame), dtype=object)
        values = values.reset_index(drop=True)
        if kind in ("int", "float"):
            numbers = pd.to_numeric(values, errors="raise") if values.dtype == object else values
            out[name] = numbers.astype("int64" if kind == "int" else "float64")
        elif kind == "bool":
            if fmt == "csv":
                values = values.map(lambda v: None if v is None else v in ("True", "TRUE", "true"))
            out[name] = values.astype("boolean")
        elif kind == "str":
            out[name] = values if fmt == "csv" else values.map(_as_string).astype(object)  # CSV cells are text
        else:
            out[name] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(out)


def _csv_numbers(batch: Any, types: dict[str, str]) -> pd.DataFrame:
    """A CSV batch (strings) as a DataFrame, its numeric columns parsed by Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    targets = {"int": pa.int64(), "float": pa.float64()}
    arrays = [
        pc.cast(column, targets[types[name]]) if types.get(name) in targets else column
        for name, column in zip(batch.schema.names, batch.columns)
    ]
    return pa.Table.from_arrays(arrays, names=batch.schema.names).to_pandas()


def _as_string(value: Any) -> Any:
    import pandas as pd

    if not isinstance(value, (str, bytes)) and pd.isna(value):
        return None
    return value if isinstance(value, str) else str(value)

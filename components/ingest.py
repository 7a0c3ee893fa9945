"""The ``ingest`` component: tabular files or images in, a train/eval split Examples artifact out.

Reads CSV, Parquet or JSON Lines from a file, a directory or a glob (or the
Palmer penguins data shipped by ``palmerpenguins`` when no path is given),
checks the files strictly (a malformed file stops the run with a message that
names the file, the line or column and the problem), infers the label column
when none is given, and splits rows into train and eval by a hash of their
content, so a row lands in the same split on every run. Plain pandas/pyarrow,
no Beam: this step must take well under a second on small data.

Images (a class-folder tree of PNG/JPEG, or an ``.npz`` of arrays; see
``_ingest_images``) become image Examples (``examples_io``'s contract): pixels
in ``images.npy`` per split, a frame with the ``label`` column beside them.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
from typing import TYPE_CHECKING, Any

from flywheel import data_sources
from flywheel.dsl.artifacts import Examples
from flywheel.dsl.component import Output, component
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components import _ingest_columns
from flywheel.components.examples_io import write_split

if TYPE_CHECKING:
    import pandas as pd

PENGUINS = "palmerpenguins"
DIGITS = "sklearn-digits"
FORMATS = ("auto", "csv", "parquet", "jsonl", "images", "npz")
IMAGE_FORMATS = ("images", "npz")
EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
# Column names taken as the label when label="" (first match wins, case-insensitive).
LABEL_CANDIDATES = ("label", "target", "class", "y", "species")
# Files listed one by one in the data_source property (all of them are in its sha256).
MAX_RECORDED_FILES = 100
# Hash buckets for the split; eval_ratio is resolved to 1/BUCKETS.
BUCKETS = 1_000_000


class DataReadError(FlywheelError):
    """Input data cannot be found, read or parsed, or does not fit the rules of ingest."""


def read_sources(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """What ingest will read with these parameters, fingerprinted (the runner's cache key)."""
    return [data_sources.describe_source(str(parameters.get("path", "")), span_count=parameters.get("span_count", 1))]


@component(version="1", reads=read_sources, retries=2, retry_backoff_s=10,
           resources={"cpu": "1", "memory": "2Gi", "memory_limit": "4Gi"})
def ingest(
    examples: Output[Examples],
    path: str = "",
    label: str = "",
    format: str = "auto",  # noqa: A002 - the user-facing name of the option
    eval_ratio: float = 0.2,
    split_key: str = "",
    drop_label_missing: bool = True,
    encoding: str = "utf-8",
    image_size: list = [],  # noqa: B006 - component defaults are recorded, never mutated
    rename_columns: bool = False,
    span_count: int = 1,
) -> None:
    """Reads tabular data or images and writes them as a deterministic train/eval split.

    Args:
        examples: Output; ``Split-train`` and ``Split-eval`` Parquet files plus the
            properties ``label``, ``split_names``, ``row_counts``, ``columns``,
            ``fingerprint`` (sha256 of content, split and label), ``source``,
            ``rows_dropped``, ``span``, ``version``, ``dataset_name`` and
            ``data_source`` (what was read: files with size, mtime, sha256).
        path: A file, a directory (every data file below it, hidden files and
            ``_*`` files skipped) or a glob. It may hold ``{SPAN}``, ``{VERSION}``
            or ``{YYYY}{MM}{DD}`` (as TFX's ExampleGen): the newest span (and its
            newest version) when the node runs. "" or "palmerpenguins" reads the
            Palmer penguins CSV shipped with the ``palmerpenguins`` package.
            A directory of class folders of images, or an ``.npz`` file, is
            read as images; "sklearn-digits" reads scikit-learn's bundled 8x8
            digits (as ``flywheel.datasets.export_digits`` writes them).
        label: Label column; "" infers it (the first column named label, target,
            class, y or species, case-insensitive).
        format: "auto" (by file extension; images detected by content),
            "csv", "parquet", "jsonl", "images" (class folders) or "npz".
        eval_ratio: Fraction of rows that go to eval, in (0, 1).
        split_key: Column whose value decides the split (all rows with one key
            land together, e.g. a user id); "" hashes the whole row.
        drop_label_missing: Drop rows whose label is missing (else keep them).
        encoding: Text encoding of CSV and JSON Lines files.
        image_size: ``[height, width]`` to resize every image to; [] requires
            all images to share one size (images only).
        rename_columns: Rename columns whose names cannot be model inputs
            (see ``_ingest_columns``) instead of refusing them; the mapping is
            the ``renamed_columns`` property.
        span_count: With a span pattern, how many of the newest spans to read
            together (a rolling range); 1 reads the newest only.

    Raises:
        ParameterError: a parameter is out of its range.
        DataReadError: no file matches, a file is empty, malformed, not decodable,
            files disagree on their columns, the label column is missing, or
            a column name cannot be a model input (and ``rename_columns`` is false).
        DataSourceError: a span pattern is malformed or matches nothing.
    """
    import pandas as pd

    _check_parameters(format, eval_ratio, image_size)
    if _is_image_input(path, format):
        _ingest_images(examples, path, eval_ratio=eval_ratio, image_size=list(image_size), npz=format == "npz")
        return
    read = data_sources.describe_source(path, span_count=span_count)
    files, source = [], path
    for part in read.get("resolved", [path]):
        part_files, source = resolve_files(part, format)
        files += part_files
    if "resolved" in read:
        source = path
    frames = [read_file(f, fmt, encoding) for f, fmt in files]
    _check_same_columns(frames, [f for f, _ in files])
    frame = frames[0] if len(frames) == 1 else pd.concat(
        [frames[0]] + [fr[list(frames[0].columns)] for fr in frames[1:]], ignore_index=True
    )
    frame = _normalize_columns(frame, files[0][0] if len(files) == 1 else source)
    where = files[0][0] if len(files) == 1 else f"{source} ({len(files)} files)"
    frame, label, renamed = _ingest_columns.model_ready_columns(
        frame, label, where, rename=rename_columns, error=DataReadError
    )
    frame = _ingest_columns.model_ready_values(frame, where, error=DataReadError)
    label_column = resolve_label(frame, label, where)
    rows_read = len(frame)
    if drop_label_missing:
        frame = frame[frame[label_column].notna()].reset_index(drop=True)
        if frame.empty:
            raise DataReadError(
                f"Every one of the {rows_read} rows of {where} has no value in the label column "
                f"{label_column!r}, so nothing is left to train on. Fill in the labels, or pick the "
                "right column with label=..."
            )
    if split_key and split_key not in frame.columns:
        raise DataReadError(
            f"split_key '{split_key}' is not a column of {where}; columns present: "
            f"{', '.join(map(str, frame.columns))}. Pass one of them or split_key=\"\"."
        )

    row_hashes = _row_hashes(frame)
    split_hashes = row_hashes if not split_key else _row_hashes(frame[[split_key]])
    is_eval = (split_hashes % BUCKETS) < round(eval_ratio * BUCKETS)
    splits = {"train": frame[~is_eval], "eval": frame[is_eval]}
    for name, part in splits.items():
        if part.empty:
            raise DataReadError(
                f"The split of {where} ({len(frame)} rows, eval_ratio={eval_ratio}) left the "
                f"'{name}' split empty; provide more rows or change eval_ratio."
            )
        write_split(examples, name, part.reset_index(drop=True))

    examples.properties.update(
        {
            "label": label_column,
            "split_names": list(splits),
            "row_counts": {name: int(len(part)) for name, part in splits.items()},
            "columns": [str(c) for c in frame.columns],
            "fingerprint": _fingerprint(frame, row_hashes, is_eval, label_column),
            "source": source,
            "rows_dropped": int(rows_read - len(frame)),
            "renamed_columns": renamed,
            "span": read.get("span"),
            "version": read.get("version"),
            "dataset_name": data_sources.dataset_name(path),
            "data_source": {**read, "files": read.get("files", [])[:MAX_RECORDED_FILES]},
        }
    )


def _is_image_input(path: str, format: str) -> bool:  # noqa: A002
    from flywheel.components import _ingest_images

    if format in IMAGE_FORMATS or path == DIGITS:
        return True
    return format == "auto" and bool(path) and _ingest_images.is_image_source(os.path.expanduser(path))


def _ingest_images(examples: Examples, path: str, *, eval_ratio: float, image_size: list[int], npz: bool) -> None:
    """The image branch of ingest: arrays in, image Examples (``examples_io`` contract) out."""
    import pandas as pd

    from flywheel.components import _ingest_images as images_io
    from flywheel.components import examples_io

    if path == DIGITS:
        from flywheel.datasets import digits_arrays

        pixels, targets = digits_arrays()
        labels = [str(int(v)) for v in targets]
        source = {"images": pixels, "labels": labels, "class_names": images_io.sort_class_names(labels), "files": None}
        if image_size and list(pixels.shape[1:3]) != image_size:
            raise ParameterError(
                f"The 'image_size' parameter of ingest must be [] or [8, 8] for {DIGITS}. Got {image_size!r} instead."
            )
    else:
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise DataReadError(f"Input path {path!r} does not exist; pass an existing image directory or .npz file.")
        source = images_io.read_image_source(path, image_size or None, npz=npz)
    pixels, labels = source["images"], source["labels"]
    is_eval = images_io.split_images(pixels, labels, eval_ratio)
    frame = pd.DataFrame({images_io.LABEL_COLUMN: labels})
    if source["files"] is not None:
        frame["file"] = source["files"]
    counts = {}
    for name, mask in (("train", ~is_eval), ("eval", is_eval)):
        if not mask.any():
            raise DataReadError(
                f"The split of {path} ({len(labels)} images, eval_ratio={eval_ratio}) left the '{name}' split "
                "empty; provide more images or change eval_ratio."
            )
        examples_io.write_images(examples, name, pixels[mask], frame[mask].reset_index(drop=True))
        counts[name] = int(mask.sum())
    examples.properties.update(
        {
            "modality": "image",
            "label": images_io.LABEL_COLUMN,
            "split_names": ["train", "eval"],
            "row_counts": counts,
            "columns": [str(c) for c in frame.columns],
            "image_shape": [int(v) for v in pixels.shape[1:]],
            "image_dtype": str(pixels.dtype),
            "class_names": source["class_names"],
            "fingerprint": images_io.fingerprint(pixels, labels, is_eval),
            "source": path,
            "rows_dropped": 0,
        }
    )


def _check_parameters(format: str, eval_ratio: float, image_size: list = ()) -> None:  # noqa: A002
    if format not in FORMATS:
        raise ParameterError(
            f"The 'format' parameter of ingest must be one of {', '.join(map(repr, FORMATS))}. "
            f"Got {format!r} instead."
        )
    if isinstance(eval_ratio, bool) or not isinstance(eval_ratio, (int, float)) or not 0 < eval_ratio < 1:
        raise ParameterError(
            f"The 'eval_ratio' parameter of ingest must be a float in (0, 1). Got {eval_ratio!r} instead."
        )
    if list(image_size) and not (
        len(image_size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise ParameterError(
            f"The 'image_size' parameter of ingest must be [] or [height, width] of positive ints. "
            f"Got {image_size!r} instead."
        )


def penguins_csv() -> str:
    """Path of the Palmer penguins CSV that the ``palmerpenguins`` package ships."""
    import importlib.resources

    resource = importlib.resources.files("palmerpenguins").joinpath("data", "penguins.csv")
    return str(resource)


def resolve_files(path: str, format: str = "auto") -> tuple[list[tuple[str, str]], str]:  # noqa: A002
    """The files a path names, each with its format, plus a description of the source.

    Raises:
        DataReadError: nothing matches, or a file's format cannot be told.
    """
    if path in ("", PENGUINS):
        return [(penguins_csv(), "csv")], PENGUINS
    path = os.path.expanduser(path)
    if any(ch in path for ch in "*?["):
        names = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not names:
            raise DataReadError(f"No files match the glob {path!r}; check the pattern and the directory.")
        return [(n, _format_of(n, format, strict=True)) for n in names], path
    if os.path.isdir(path):
        found = data_sources.data_files(path)
        data = [(f, fmt) for f in found if (fmt := _format_of(f, format, strict=False))]
        if not data:
            raise DataReadError(
                f"Directory {path} holds no data files (looked for "
                f"{', '.join(sorted(EXTENSIONS))}); found: {', '.join(os.path.basename(f) for f in found[:10]) or 'nothing'}."
            )
        return data, path
    if os.path.isfile(path):
        return [(path, _format_of(path, format, strict=True))], path
    raise DataReadError(f"Input path {path!r} does not exist; pass an existing file, directory or glob.")


def _format_of(path: str, format: str, *, strict: bool) -> str:  # noqa: A002
    if format != "auto":
        return format
    fmt = EXTENSIONS.get(os.path.splitext(path)[1].lower(), "")
    if not fmt and strict:
        raise DataReadError(
            f"Cannot tell the format of {path} from its extension; use one of "
            f"{', '.join(sorted(EXTENSIONS))} or pass format='csv'|'parquet'|'jsonl'."
        )
    return fmt


def read_file(path: str, fmt: str, encoding: str = "utf-8") -> pd.DataFrame:
    """Reads one data file strictly.

    Raises:
        DataReadError: the file is empty, malformed or not decodable; the message
            names the file and the line (or column) at fault.
    """
    if not os.path.isfile(path):
        target = f" (a broken link to {os.readlink(path)!r})" if os.path.islink(path) else ""
        raise DataReadError(f"{path} does not exist or is not a file{target}; remove it or point it at a data file.")
    if fmt == "parquet":
        return _read_parquet(path)
    text = _read_text(path, encoding)
    frame = _read_csv(path, text) if fmt == "csv" else _read_jsonl(path, text)
    if frame.empty:
        raise DataReadError(f"{path} has no data rows (columns: {', '.join(map(str, frame.columns)) or 'none'}).")
    return frame


def _read_text(path: str, encoding: str) -> str:
    with open(path, "rb") as fh:
        raw = fh.read()
    if not raw.strip():
        raise DataReadError(f"{path} is empty ({len(raw)} bytes); expected a header and data rows.")
    if raw.startswith(b"\xef\xbb\xbf") and encoding.lower().replace("-", "") in ("utf8", "utf8sig"):
        raw = raw[3:]
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataReadError(
            f"{path} is not valid {encoding} text: byte {raw[exc.start:exc.start + 1]!r} at offset "
            f"{exc.start} (line {line}, column {column}) cannot be decoded ({exc.reason}). Re-save the "
            "file as UTF-8 or pass encoding=... (e.g. 'latin-1')."
        ) from exc
    except LookupError as exc:
        raise ParameterError(
            f"The 'encoding' parameter of ingest must be a Python codec name. Got {encoding!r} instead."
        ) from exc


def _read_csv(path: str, text: str) -> pd.DataFrame:
    import pandas as pd

    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for record in reader:
        if not record:
            continue  # blank line; pandas skips it too
        if header is None:
            header = record
            _check_header(path, header)
            continue
        if len(record) != len(header):
            raise DataReadError(
                f"{path}, line {reader.line_num}: expected {len(header)} fields (as in the header), "
                f"got {len(record)}. Fix the row (a missing or extra comma, or an unquoted comma "
                "inside a value)."
            )
    try:
        return pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataReadError(f"{path} cannot be parsed as CSV: {exc}") from exc


def _check_header(path: str, header: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name.strip():
            raise DataReadError(f"{path}, line 1, column {i}: the header has an empty column name; name every column.")
        if name in seen:
            raise DataReadError(f"{path}, line 1, column {i}: the header repeats column name {name!r}; names must be unique.")
        seen.add(name)


def _read_jsonl(path: str, text: str) -> pd.DataFrame:
    import pandas as pd

    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataReadError(f"{path}, line {number}, column {exc.colno}: invalid JSON ({exc.msg}).") from exc
        if not isinstance(record, dict):
            raise DataReadError(
                f"{path}, line {number}: expected a JSON object, got a {type(record).__name__}; "
                "ingest reads JSON Lines (one object per line)."
            )
        for key, value in record.items():
            if isinstance(value, (dict, list)):
                raise DataReadError(
                    f"{path}, line {number}, key {key!r}: nested value ({type(value).__name__}); "
                    "ingest reads flat rows of scalar values."
                )
        records.append(record)
    return pd.DataFrame.from_records(records)


def _read_parquet(path: str) -> pd.DataFrame:
    import pandas as pd
    import pyarrow

    if os.path.getsize(path) == 0:
        raise DataReadError(f"{path} is empty (0 bytes); expected a Parquet file.")
    try:
        frame = pd.read_parquet(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise DataReadError(f"{path} cannot be read as Parquet: {exc}") from exc
    if frame.empty:
        raise DataReadError(f"{path} has no data rows (columns: {', '.join(map(str, frame.columns)) or 'none'}).")
    return frame.reset_index(drop=True)


def _check_same_columns(frames: list[pd.DataFrame], paths: list[str]) -> None:
    expected = list(frames[0].columns)
    for frame, path in zip(frames[1:], paths[1:]):
        got = list(frame.columns)
        if set(got) != set(expected):
            missing = [c for c in expected if c not in got]
            extra = [c for c in got if c not in expected]
            raise DataReadError(
                f"{path} has different columns than {paths[0]}: missing {missing or 'none'}, "
                f"extra {extra or 'none'}. All files of one input must share their columns."
            )


def _normalize_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Keeps every column a plain int/float/bool/string column that TFDV and Parquet handle.

    Categorical columns become their values, datetimes ISO-8601 strings, object
    columns of mixed scalar types strings; nested values are an error.
    """
    import pandas as pd

    for column in frame.columns:
        dtype = frame[column].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            frame[column] = frame[column].map(lambda v: v.isoformat() if pd.notna(v) else None)
            continue
        if frame[column].dtype != object:
            continue
        kinds = {type(v) for v in frame[column].dropna()}
        nested = [k for k in kinds if k in (dict, list, tuple) or hasattr(k, "__array__")]
        if nested:
            raise DataReadError(
                f"Column {column!r} of {where} holds nested values ({nested[0].__name__}); "
                "ingest reads flat rows of scalar values."
            )
        if len(kinds) > 1:
            frame[column] = frame[column].map(lambda v: v if v is None or v != v else str(v))
    return frame


def resolve_label(frame: pd.DataFrame, label: str, where: str) -> str:
    """The label column: the given one (checked) or an inferred one.

    Raises:
        DataReadError: the given column is missing, or none can be inferred.
    """
    columns = [str(c) for c in frame.columns]
    if label:
        if label not in columns:
            raise DataReadError(
                f"Label column {label!r} is not in {where}; columns present: {', '.join(columns)}. "
                "Pass one of them as label=..."
            )
        return label
    lowered = {c.lower(): c for c in reversed(columns)}
    for candidate in LABEL_CANDIDATES:
        if candidate in lowered:
            return lowered[candidate]
    raise DataReadError(
        f"Cannot infer the label column of {where}: no column is named "
        f"{'/'.join(LABEL_CANDIDATES)}; columns present: {', '.join(columns)}. Pass label=..."
    )


def _row_hashes(frame: pd.DataFrame) -> Any:
    """A stable 64-bit hash per row (independent of column order and of the process)."""
    import pandas as pd

    ordered = frame[sorted(frame.columns, key=str)]
    return pd.util.hash_pandas_object(ordered, index=False).to_numpy()


def _fingerprint(frame: pd.DataFrame, row_hashes: Any, is_eval: Any, label: str) -> str:
    digest = hashlib.sha256()
    schema = [[str(c), str(t)] for c, t in zip(frame.columns, frame.dtypes)]
    digest.update(json.dumps({"columns": schema, "label": label}).encode())
    digest.update(row_hashes[~is_eval].tobytes())
    digest.update(b"|eval|")
    digest.update(row_hashes[is_eval].tobytes())
    return digest.hexdigest()

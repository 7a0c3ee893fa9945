"""The ``ingest`` component: tabular files or images in, a train/eval split Examples artifact out.

Reads CSV, Parquet or JSON Lines from a file, a directory or a glob (or the
Palmer penguins data shipped by ``palmerpenguins`` when no path is given),
checks the files strictly (a malformed file stops the run with a message that
names the file, the line or column and the problem), infers the label column
when none is given, and splits rows into train and eval by a hash of their
content (pandas' stable 64-bit row hash, bucket < eval_ratio), so a row lands
in the same split on every run, whatever the batch size or file order.

Files are streamed, never held whole (``ingest/stream.py``): a first pass checks
them and settles one type per column, a second splits each bounded batch and
writes Parquet shards per split (``examples_io.SplitWriter``), published only
once both splits are complete. Peak memory is independent of the file size.
Plain pandas/pyarrow, no Beam: this step must take well under a second on small data.

Images (a class-folder tree of PNG/JPEG, or an ``.npz`` of arrays; see
``ingest/images.py``) become image Examples (``examples_io``'s contract): pixels
in ``images.npy`` per split, a frame with the ``label`` column beside them.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

from flywheel import data_sources, storage
from flywheel.dsl.artifacts import Examples
from flywheel.dsl.component import Output, component
from flywheel.dsl.constraints import Interval, Options, rule
from flywheel.errors import FlywheelError, ParameterError

from . import columns as column_rules
from . import stream

if TYPE_CHECKING:
    import pandas as pd

PENGUINS = "palmerpenguins"
DIGITS = "sklearn-digits"
FORMATS = ("auto", "csv", "parquet", "jsonl", "images", "npz")


@rule
def image_size_rule(value: Any) -> bool:
    """[] or [height, width] of positive ints"""
    return isinstance(value, list) and (
        not value or len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
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
    format: Annotated[str, Options(FORMATS)] = "auto",  # noqa: A002 - the user-facing name of the option
    eval_ratio: Annotated[float, Interval(float, 0, 1, closed="neither")] = 0.2,
    split_key: str = "",
    drop_label_missing: bool = True,
    encoding: str = "utf-8",
    image_size: Annotated[list, image_size_rule] = [],  # noqa: B006 - component defaults are recorded, never mutated
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
            (see ``ingest/columns.py``) instead of refusing them; the mapping is
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
    where = files[0][0] if len(files) == 1 else f"{source} ({len(files)} files)"
    columns, types = _scan(files, encoding, files[0][0] if len(files) == 1 else source)
    header, label, renamed = column_rules.model_ready_columns(
        _empty_frame(columns), label, where, rename=rename_columns, error=DataReadError
    )
    label_column = resolve_label(header, label, where)
    if split_key and split_key not in header.columns:
        raise DataReadError(
            f"split_key '{split_key}' is not a column of {where}; columns present: "
            f"{', '.join(map(str, header.columns))}. Pass one of them or split_key=\"\"."
        )
    plan = _SplitPlan(
        types=types, names=[str(c) for c in header.columns], label=label_column, split_key=split_key,
        eval_ratio=eval_ratio, drop_label_missing=drop_label_missing, where=where,
    )
    written = _write_splits(examples, files, encoding, plan)
    examples.properties.update(
        {
            "label": label_column,
            "split_names": list(written["row_counts"]),
            "row_counts": written["row_counts"],
            "columns": plan.names,
            "fingerprint": written["fingerprint"],
            "source": source,
            "rows_dropped": written["rows_dropped"],
            "renamed_columns": renamed,
            "span": read.get("span"),
            "version": read.get("version"),
            "dataset_name": data_sources.dataset_name(path),
            "data_source": {**read, "files": read.get("files", [])[:MAX_RECORDED_FILES]},
        }
    )


@dataclasses.dataclass(frozen=True)
class _SplitPlan:
    """What the second pass over the files does with each batch."""

    types: dict[str, str]  # original column -> settled kind (stream.column_types), in column order
    names: list[str]  # model-ready column names, in the same order
    label: str
    split_key: str
    eval_ratio: float
    drop_label_missing: bool
    where: str


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=columns)


def _scan(files: list[tuple[str, str]], encoding: str, where: str) -> tuple[list[str], dict[str, str]]:
    """First pass: checks every file strictly; returns the columns and one type per column.

    Raises:
        DataReadError: a file is empty, malformed, not decodable, holds nested
            values, or its columns differ from the first file's.
    """
    columns: list[str] = []
    kinds: dict[str, set[str]] = {}
    for number, (path, fmt) in enumerate(files):
        file_columns: list[str] = []
        file_kinds: dict[str, set[str]] = {}
        rows, rows_with = 0, Counter()
        for batch in stream.raw_batches(path, fmt, encoding, DataReadError):
            if fmt != "csv":
                batch = _normalize_columns(batch, where)
            found = stream.batch_kinds(batch, fmt, file_kinds)
            file_columns += [name for name in found if name not in file_columns]
            stream.merge_kinds(file_kinds, found)
            rows += len(batch)
            rows_with.update({name: len(batch) for name in found})
        for name in file_columns:
            if rows_with[name] < rows:  # a JSON key absent from some records
                file_kinds[name].add("null")
        if number == 0:
            columns = file_columns
        elif set(file_columns) != set(columns):
            missing = [c for c in columns if c not in file_columns]
            extra = [c for c in file_columns if c not in columns]
            raise DataReadError(
                f"{path} has different columns than {files[0][0]}: missing {missing or 'none'}, "
                f"extra {extra or 'none'}. All files of one input must share their columns."
            )
        stream.merge_kinds(kinds, file_kinds)
    types = stream.column_types(kinds)
    return columns, {name: types[name] for name in columns}


def _write_splits(
    examples: Examples, files: list[tuple[str, str]], encoding: str, plan: _SplitPlan
) -> dict[str, Any]:
    """Second pass: reads the files again batch by batch, splits each row by its hash, writes shards.

    A row's split depends only on its content (or its ``split_key`` value), so
    the split is the same whatever the batch size or file order. The shards
    are published only when both splits are complete.

    Raises:
        DataReadError: a value is infinite, every label is missing, or a split is empty.
    """
    from flywheel.components.examples_io import SplitWriter

    arrow_types = _arrow_types(plan)
    writers = {name: SplitWriter(examples, name, types=arrow_types) for name in ("train", "eval")}
    digests = {name: hashlib.sha256() for name in writers}
    rows_read, dtypes = 0, None
    try:
        for path, fmt in files:
            for batch in stream.raw_batches(path, fmt, encoding, DataReadError):
                if fmt != "csv":
                    batch = _normalize_columns(batch, plan.where)
                frame = stream.coerce(batch, plan.types, fmt)
                frame.columns = plan.names
                frame = column_rules.model_ready_values(frame, plan.where, error=DataReadError, first_row=rows_read)
                rows_read += len(frame)
                if plan.drop_label_missing:
                    frame = frame[frame[plan.label].notna()].reset_index(drop=True)
                dtypes = frame.dtypes
                row_hashes = _row_hashes(frame)
                split_hashes = _row_hashes(frame[[plan.split_key]]) if plan.split_key else row_hashes
                is_eval = (split_hashes % BUCKETS) < round(plan.eval_ratio * BUCKETS)
                for name, mask in (("train", ~is_eval), ("eval", is_eval)):
                    if mask.any():
                        writers[name].write(frame[mask])
                        digests[name].update(row_hashes[mask].tobytes())
        kept = sum(writer.rows for writer in writers.values())
        _check_split_sizes(plan, writers, rows_read, kept)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    fingerprint = hashlib.sha256()
    schema = [[str(c), str(t)] for c, t in zip(plan.names, dtypes)]
    fingerprint.update(json.dumps({"columns": schema, "label": plan.label}).encode())
    fingerprint.update(digests["train"].digest() + b"|eval|" + digests["eval"].digest())
    return {
        "row_counts": {name: writer.rows for name, writer in writers.items()},
        "rows_dropped": rows_read - kept,
        "fingerprint": fingerprint.hexdigest(),
    }


def _check_split_sizes(plan: _SplitPlan, writers: dict[str, Any], rows_read: int, kept: int) -> None:
    if plan.drop_label_missing and kept == 0:
        raise DataReadError(
            f"Every one of the {rows_read} rows of {plan.where} has no value in the label column "
            f"{plan.label!r}, so nothing is left to train on. Fill in the labels, or pick the "
            "right column with label=..."
        )
    for name, writer in writers.items():
        if not writer.rows:
            raise DataReadError(
                f"The split of {plan.where} ({kept} rows, eval_ratio={plan.eval_ratio}) left the "
                f"'{name}' split empty; provide more rows or change eval_ratio."
            )


def _arrow_types(plan: _SplitPlan) -> dict[str, Any]:
    """Arrow types of the columns whose kind fixes them (the rest follow the first batch)."""
    import pyarrow as pa

    known = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
    return {new: known[kind] for new, kind in zip(plan.names, plan.types.values()) if kind in known}


def _is_image_input(path: str, format: str) -> bool:  # noqa: A002
    from . import images as images_io

    if format in IMAGE_FORMATS or path == DIGITS:
        return True
    return format == "auto" and bool(path) and images_io.is_image_source(os.path.expanduser(path))


def _ingest_images(examples: Examples, path: str, *, eval_ratio: float, image_size: list[int], npz: bool) -> None:
    """The image branch of ingest: arrays in, image Examples (``examples_io`` contract) out."""
    import pandas as pd

    from . import images as images_io
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
    if storage.is_object_uri(path):
        return _resolve_objects(path, format), path
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


def _resolve_objects(uri: str, format: str) -> list[tuple[str, str]]:  # noqa: A002
    """The objects behind an object-store URI (one object, a prefix or a glob), each with its format."""
    found = [entry.uri for entry in data_sources.object_files(uri)]  # never empty: describe_source checked first
    if len(found) == 1 and found[0].rstrip("/") == uri.rstrip("/"):
        return [(found[0], _format_of(found[0], format, strict=True))]
    data = [(f, fmt) for f in sorted(found) if (fmt := _format_of(f, format, strict=False))]
    if not data:
        raise DataReadError(
            f"{storage.redact(uri)} holds no data files (looked for {', '.join(sorted(EXTENSIONS))}); "
            f"found: {', '.join(f.rsplit('/', 1)[-1] for f in found[:10])}."
        )
    return data


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


def _normalize_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Turns categorical columns into their values and datetimes into ISO-8601 strings; refuses nested values.

    (Columns of mixed scalar types become strings later, in ``stream.coerce``,
    once every batch of every file has been seen.)
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

"""bulk_infer: score a dataset with a model as a pipeline step (TFX's BulkInferrer).

The data is an Examples split or a file/directory (CSV, Parquet, JSON Lines);
the model is a registry version (by number, ``serving`` for the serving alias
or ``latest``) or the run's model given as an input, which, when a blessing is
wired in too, is scored only if blessed (as TFX's BulkInferrer skips an
unblessed model). Either model is loaded the way serving loads it (Keras
``safe_mode``; ``serving.models.compile_predict``, one traced function).

The input is read ``batch_size`` rows at a time (pyarrow record batches,
pandas chunks), scored, and appended to Parquet shards of at most
``rows_per_shard`` rows, so memory stays bounded by the batch whatever the
size of the data. Each output row holds the kept input columns, the predicted
class, one ``probability_<class>`` column per class, and the model's name and
version.
"""

from __future__ import annotations

import glob
import os
from typing import Annotated, Any, Iterator

from flywheel.dsl.artifacts import Examples, InferenceResult, Model, ModelBlessing
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components import examples_io
from flywheel.models import features

READERS = (".csv", ".parquet", ".jsonl", ".json")
SHARD_PATTERN = "predictions-{:05d}.parquet"
PROBABILITY_PREFIX = "probability_"


@component(reads=("data_path",))
def bulk_infer(
    predictions: Output[InferenceResult],
    examples: Input[Examples] = None,
    model: Input[Model] = None,
    blessing: Input[ModelBlessing] = None,
    data_path: str = "",
    split: str = "eval",
    registry: str = "",
    model_name: str = "",
    version: str = "",
    keep_columns: list = ["*"],  # noqa: B006 - component defaults are recorded, never mutated
    batch_size: Annotated[int, Interval(int, 1, None)] = 4096,
    rows_per_shard: Annotated[int, Interval(int, 1, None)] = 1_000_000,
) -> None:
    """Scores every row of the data with one model and writes the predictions as Parquet shards.

    Args:
        predictions: Receives ``predictions-NNNNN.parquet``; properties ``rows``,
            ``shards``, ``model_name``, ``model_version``, ``class_names``, ``inferred``.
        examples: Examples whose ``split`` is scored (or give ``data_path``).
        model: A train output to score with (or give ``model_name`` and ``version``).
        blessing: evaluate's blessing of ``model``; an unblessed model scores nothing.
        data_path: A CSV, Parquet or JSON Lines file, or a directory of them.
        split: The split of ``examples`` to score.
        registry: Registry directory; "" means the flywheel home's registry.
        model_name: Registry model to score with; with ``model`` given it only names the output.
        version: Registry version: a number, ``serving`` (the alias) or ``latest``;
            "" means the ``model`` input.
        keep_columns: Input columns copied next to the predictions; ``["*"]`` all, ``[]`` none.
        batch_size: Rows read and scored at a time.
        rows_per_shard: Most rows per output file.

    Raises:
        ParameterError: not exactly one data source or model source, or a bad option.
        FlywheelError: the registry has no such model or version, or the data lacks a feature.
    """
    _check_options(examples, data_path, model, version, model_name, batch_size, rows_per_shard, keep_columns)
    if blessing is not None and not bool(blessing.properties.get("blessed")):
        why = "; ".join(blessing.properties.get("reasons") or []) or "the blessing records no reason"
        predictions.properties.update({"inferred": False, "rows": 0, "shards": 0, "reason": f"model not blessed: {why}"})
        return
    if model is not None and not model_name and blessing is not None:
        model_name = str(blessing.properties.get("model_name") or "")  # the name evaluate judged the model under
    scorer = _scorer(model, registry, model_name, version)
    source = examples_io.split_dir(examples, split) if examples is not None else data_path
    chunks = _split_chunks(examples, split, batch_size) if examples is not None else _path_chunks(data_path, batch_size)
    rows, shards = _write_predictions(chunks, scorer, keep_columns, predictions, rows_per_shard)
    predictions.properties.update(
        {
            "inferred": True,
            "rows": rows,
            "shards": shards,
            "source": source,
            "model_name": scorer["name"],
            "model_version": scorer["version"],
            "model_uri": scorer["uri"],
            "class_names": list(scorer["class_names"]),
        }
    )


def _check_options(
    examples: Any, data_path: str, model: Any, version: str, model_name: str, batch_size: int, rows_per_shard: int,
    keep_columns: list,
) -> None:
    if (examples is None) == (not data_path):
        raise ParameterError(
            "bulk_infer needs exactly one data source: an 'examples' input or the 'data_path' parameter. "
            f"Got {'both' if examples is not None else 'neither'}; wire one of them."
        )
    if (model is None) == (not version):
        raise ParameterError(
            "bulk_infer needs exactly one model: a 'model' input, or 'model_name' with 'version' "
            f"(a number, 'serving' or 'latest') from the registry. Got {'both' if model is not None else 'neither'}."
        )
    if version and not (version in ("serving", "latest") or version.isdigit()):
        raise ParameterError(
            f"The 'version' parameter of bulk_infer must be a version number, 'serving' or 'latest'. Got {version!r} instead."
        )
    if version and not model_name:
        raise ParameterError(
            f"The 'model_name' parameter of bulk_infer must name the registry model for version {version!r}. "
            "Got '' instead."
        )
    if not all(isinstance(c, str) for c in keep_columns):
        raise ParameterError(f"The 'keep_columns' parameter of bulk_infer must list column names. Got {keep_columns!r} instead.")


def _scorer(model: Any, registry: str, model_name: str, version: str) -> dict[str, Any]:
    """The model to score with: name, version, uri, class names and serving's traced predict function.

    Raises:
        FlywheelError: the registry has no such model, version or serving alias, or the model is an image model.
    """
    from flywheel.models import layers as model_layers
    from flywheel.serving.models import compile_predict

    if model is not None:
        spec = features.read_json(model.path(features.MODEL_JSON))
        net = model_layers.load_model(model.path(features.MODEL_FILE))
        name, number, uri = model_name or str(model.properties.get("model_name") or ""), None, model.uri
    else:
        from flywheel.home import Home
        from flywheel.registry import ModelRegistry

        store = ModelRegistry(registry or Home.resolve().registry)
        number = _registry_version(store, model_name, version)
        uri = store.version_dir(model_name, number)
        spec = store.read_version_json(model_name, number, features.MODEL_JSON)  # a directory or an object store
        net, name = store.load_keras(model_name, number), model_name
    if spec.get("modality") == "image":
        raise FlywheelError(
            f"bulk_infer scores table models; the model at {uri} takes images. Score image Examples with evaluate's "
            "predict_proba or serve the model."
        )
    return {"name": name, "version": number, "uri": uri, "spec": spec, "class_names": spec["label_vocabulary"],
            "predict": compile_predict(net, spec)}


def _registry_version(store: Any, name: str, version: str) -> int:
    versions = store.versions(name)
    if not versions:
        raise FlywheelError(
            f"The registry {store.root} has no model '{name}'; models there: {store.models() or 'none'}. "
            "Push a model first or fix 'model_name'."
        )
    if version == "latest":
        return versions[-1]
    if version == "serving":
        serving = store.serving_version(name)
        if serving is None:
            raise FlywheelError(
                f"No version of model '{name}' serves in {store.root} (no serving alias); pass a version "
                f"number (one of {versions}) or 'latest'."
            )
        return serving
    if int(version) not in versions:
        raise FlywheelError(f"Model '{name}' has no version {version} in {store.root}; versions there: {versions}.")
    return int(version)


def _split_chunks(examples: Any, split: str, batch_size: int) -> Iterator[Any]:
    """The split's rows in chunks of at most ``batch_size``, shard after shard (FlywheelError: no such split)."""
    yield from examples_io.iter_split_batches(examples, split, batch_size)


def _path_chunks(data_path: str, batch_size: int) -> Iterator[Any]:
    """Chunks of at most ``batch_size`` rows of every data file under ``data_path``, in name order.

    Raises:
        FlywheelError: no readable data file is there.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(data_path, "*"))) if os.path.isdir(data_path) else [data_path]
    files = [p for p in files if os.path.isfile(p) and p.endswith(READERS)]
    if not files:
        raise FlywheelError(
            f"bulk_infer found no data at 'data_path' {data_path!r}: give a {', '.join(READERS)} file or a "
            "directory holding such files."
        )
    for path in files:
        if path.endswith(".parquet"):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                yield batch.to_pandas()
        elif path.endswith(".csv"):
            yield from pd.read_csv(path, chunksize=batch_size)
        else:
            yield from pd.read_json(path, lines=True, chunksize=batch_size)


def _write_predictions(
    chunks: Iterator[Any], scorer: dict[str, Any], keep_columns: list, predictions: Any, rows_per_shard: int
) -> tuple[int, int]:
    """Scores each chunk and appends it to the current shard; returns (rows, shards)."""
    import pyarrow.parquet as pq

    rows = shards = in_shard = 0
    writer = None
    try:
        for chunk in chunks:
            table = _scored(chunk, scorer, keep_columns)
            start = 0
            while start < table.num_rows:
                if writer is None or in_shard >= rows_per_shard:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(predictions.path(SHARD_PATTERN.format(shards)), table.schema)
                    shards, in_shard = shards + 1, 0
                piece = table.slice(start, rows_per_shard - in_shard)
                if piece.schema != writer.schema:
                    changed = [f.name for f in piece.schema if f.type != writer.schema.field(f.name).type]
                    raise FlywheelError(
                        f"Column(s) {changed} change type after row {rows} (first read as "
                        f"{[str(writer.schema.field(n).type) for n in changed]}); leave them out with "
                        "keep_columns, or give a file whose first rows show their type."
                    )
                writer.write_table(piece)
                start, in_shard, rows = start + piece.num_rows, in_shard + piece.num_rows, rows + piece.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows, shards


def _scored(chunk: Any, scorer: dict[str, Any], keep_columns: list) -> Any:
    """One chunk's output as an Arrow table with one schema for every chunk.

    Kept columns become float64 when numeric (bools too) and strings otherwise; a model
    feature takes its type from the model, so a chunk of only missing categories keeps the schema.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    probabilities = np.asarray(scorer["predict"](features.raw_inputs(chunk, scorer["spec"])), dtype=np.float32)
    names = list(chunk.columns) if keep_columns == ["*"] else list(keep_columns)
    missing = [n for n in names if n not in chunk.columns]
    if missing:
        raise FlywheelError(
            f"The 'keep_columns' of bulk_infer name {missing}, which the data lacks (columns: {list(chunk.columns)})."
        )
    columns: dict[str, Any] = {}
    spec = scorer["spec"]
    for name in names:
        column = chunk[name]
        # A feature's type comes from the model (a chunk of only missing categories reads as float);
        # another column's from its values, checked against the first chunk's when written.
        numeric = name in spec["numeric_features"] or (
            name not in spec["categorical_features"] and pd.api.types.is_numeric_dtype(column)
        )
        if numeric:
            columns[name] = pa.array(pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan),
                                     type=pa.float64())
        else:
            columns[name] = _strings(column)
    class_names = scorer["class_names"]
    rows = len(chunk)
    columns["predicted_class"] = pa.array(np.asarray(class_names, dtype=object)[probabilities.argmax(axis=1)], type=pa.string())
    for index, class_name in enumerate(class_names):
        columns[f"{PROBABILITY_PREFIX}{class_name}"] = pa.array(probabilities[:, index], type=pa.float32())
    columns["model_name"] = pa.array([scorer["name"]] * rows, type=pa.string())
    columns["model_version"] = pa.array([scorer["version"]] * rows, type=pa.int64())
    return pa.table(columns)


def _strings(column: Any) -> Any:
    """A column as an Arrow string array (missing -> null); values that are not strings are written with ``str``."""
    import pyarrow as pa

    try:
        return pa.array(column.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects (a JSON Lines column of numbers and text)
        values = column.astype(object).where(column.notna(), None)
        return pa.array([v if v is None or isinstance(v, str) else str(v) for v in values], type=pa.string())

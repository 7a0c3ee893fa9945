"""transform's full-pass analyzers on Apache Beam with tf.Transform (TFX's Transform).

``fit_spec_on_beam`` computes the same ``transform.json`` document as the
in-memory ``fit_spec`` (same keys, same vocabulary order), so
``build_preprocess_model`` stays the one place the Keras preprocessing model is
built and the transform stays inside the served model. The analyzers are
tf.Transform's, run by ``tft_beam.AnalyzeDataset`` on the runner the user's
``beam_args`` name (``components/data/beam.py``; [] is the DirectRunner):

* numeric features: ``tft.mean`` and ``tft.var`` (``reduce_instance_dims=False``) of one
  sparse [rows, numeric features] float64 tensor whose missing (null/NaN) cells are absent,
  so each column's constants are over its present values;
* missing counts: ``tft.sum`` of one dense [rows, features + 1] tensor of 0/1 indicators
  (null or NaN; for strings null only, as ``fit_spec``), the last column counting rows;
* string features and the label: one ``tft.vocabulary`` with ``store_frequency`` over
  ``"<feature index>:<value>"`` keys (non-missing, non-"" values; every label), so every
  value comes back with its exact count (``tfrecord_gzip`` format, which, unlike ``text``,
  keeps values holding newlines). The counts are split by feature and re-sorted here as
  ``fit_spec`` sorts them (most frequent first, ties by value), then cut to ``max_vocabulary``.

Four analyzers for any number of features (one per feature and statistic took twice as long
to build and run: Beam's graph grows with the analyzers). tf.Transform ignores infinite
numbers in means and variances, where pandas gives inf; ``fit_spec`` is unchanged.

The Parquet shards are read by Beam's ``ReadFromParquetBatched`` (one Arrow
table per row group, cut into ``BATCH_ROWS``-row batches); each batch is coerced as ``fit_spec`` coerces the
whole frame (``pd.to_numeric`` for numbers, ``str`` for strings) and handed to
tf.Transform as Arrow record batches through a ``TensorAdapterConfig`` (the
tensors above), so no worker holds the split.
The counts combined by Beam are exact; means and variances are summed in
another order than pandas', so they agree with ``fit_spec`` to 1e-9 relative
(tests/components/test_transform_beam.py).
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from flywheel.components.data.beam import pipeline_options, shard_pattern
from flywheel.models import features

from .spec import spec_document

if TYPE_CHECKING:
    from flywheel.dsl.artifacts import Artifact

# Columns of the record batches the analyzers read (one row of the split each):
NUMERIC_VALUES, NUMERIC_INDEX = "numeric_values", "numeric_index"  # present numbers, and whose they are
MISSING = "missing"  # one 0/1 per feature (1: null/NaN), and a last 1 that counts the rows
KEYS = "vocabulary_keys"  # "<feature index>:<value>" per present string, "label:<value>" for the label
VOCABULARY = "vocabulary"
VOCAB_FORMAT = "tfrecord_gzip"  # keeps "" and values with newlines, which the text format drops
# Rows per record batch handed to the analyzers: a Parquet row group (up to a shard's 500k rows) is
# cut into batches of this many, so a worker's memory is bounded by it, not by how shards were written.
BATCH_ROWS = 16_384


def _rows_of(mask: Any, values: Any, value_type: Any) -> Any:
    """A list array whose row i holds ``values`` of the True cells of ``mask[i]`` (row-major)."""
    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(mask.shape[0] + 1, dtype=np.int32)
    np.cumsum(mask.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def _record_batches(table: Any, kinds: dict[str, str], label: str) -> Any:
    """A row group as record batches of at most ``BATCH_ROWS`` rows, made one at a time."""
    for first in range(0, table.num_rows, BATCH_ROWS):
        yield _record_batch(table.slice(first, BATCH_ROWS), kinds, label)


def _record_batch(table: Any, kinds: dict[str, str], label: str) -> Any:
    """One row group as the record batch the analyzers read, coerced as ``fit_spec`` coerces the frame."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    frame = table.to_pandas()
    rows = len(frame)
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    missing = np.ones((rows, len(kinds) + 1), dtype=np.int64)
    values = np.full((rows, len(numeric)), np.nan)
    keys = np.empty((rows, len(kinds) + 1 - len(numeric)), dtype=object)
    kept = np.zeros(keys.shape, dtype=bool)
    column_of = 0
    for index, (name, kind) in enumerate(kinds.items()):
        column = frame[name]
        if kind == "numeric":
            position = numeric.index(name)
            values[:, position] = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            missing[:, index] = np.isnan(values[:, position])
        else:
            absent = column.isna().to_numpy()
            missing[:, index] = absent
            text = column[~absent].astype(str)
            present = (text != features.MISSING_STRING).to_numpy()
            rows_kept = np.flatnonzero(~absent)[present]
            keys[rows_kept, column_of] = (f"{index}:" + text[present]).to_numpy(dtype=object)
            kept[rows_kept, column_of] = True
            column_of += 1
    labels = frame[label]
    present = labels.notna().to_numpy()
    keys[present, column_of] = ("label:" + labels[present].astype(str)).to_numpy(dtype=object)
    kept[present, column_of] = True
    finite = ~np.isnan(values)
    arrays = {
        NUMERIC_VALUES: _rows_of(finite, values[finite], pa.float64()),
        NUMERIC_INDEX: _rows_of(finite, np.nonzero(finite)[1].astype(np.int64), pa.int64()),
        MISSING: _rows_of(np.ones(missing.shape, dtype=bool), missing.ravel(), pa.int64()),
        KEYS: _rows_of(kept, keys[kept].tolist(), pa.string()),
    }
    return pa.RecordBatch.from_arrays(list(arrays.values()), names=list(arrays))


def _tensor_adapter_config(kinds: dict[str, str]) -> Any:
    """How the columns become tensors: numbers a sparse [rows, numeric features] tensor (missing cells
    absent), the indicators a dense [rows, features + 1] one, the vocabulary keys a var-len one."""
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio import tensor_adapter

    numeric = sum(kind == "numeric" for kind in kinds.values())
    schema = pa.schema([
        pa.field(NUMERIC_VALUES, pa.list_(pa.float64())), pa.field(NUMERIC_INDEX, pa.list_(pa.int64())),
        pa.field(MISSING, pa.list_(pa.int64())), pa.field(KEYS, pa.list_(pa.string())),
    ])
    sparse = schema_pb2.TensorRepresentation.SparseTensor(index_column_names=[NUMERIC_INDEX], value_column_name=NUMERIC_VALUES)
    sparse.dense_shape.dim.add().size = max(numeric, 1)
    dense = schema_pb2.TensorRepresentation.DenseTensor(column_name=MISSING)
    dense.shape.dim.add().size = len(kinds) + 1
    representations = {
        NUMERIC_VALUES: schema_pb2.TensorRepresentation(sparse_tensor=sparse),
        MISSING: schema_pb2.TensorRepresentation(dense_tensor=dense),
        KEYS: schema_pb2.TensorRepresentation(
            varlen_sparse_tensor=schema_pb2.TensorRepresentation.VarLenSparseTensor(column_name=KEYS)
        ),
    }
    return tensor_adapter.TensorAdapterConfig(schema, representations)


def _preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
    """Four analyzers for all features at once (tf.Transform combines each in one pass):
    per-column mean and variance of the present numbers, per-column sums of the missing
    indicators (the last column: rows), and one vocabulary with counts of every feature's
    "<index>:<value>" keys. Each output repeats its analyzer's result for every row."""
    import tensorflow as tf
    import tensorflow_transform as tft

    rows = tf.shape(inputs[MISSING])[0]

    def per_row(value: Any) -> Any:
        return tf.tile(tf.reshape(value, [1, -1]), [rows, 1])

    tft.vocabulary(inputs[KEYS], vocab_filename=VOCABULARY, store_frequency=True, file_format=VOCAB_FORMAT)
    return {
        "missing": per_row(tft.sum(inputs[MISSING], reduce_instance_dims=False)),
        # float64 is no output dtype of tf.Transform: the bits travel as int64
        "mean": per_row(tf.bitcast(tft.mean(inputs[NUMERIC_VALUES], reduce_instance_dims=False), tf.int64)),
        "variance": per_row(tf.bitcast(tft.var(inputs[NUMERIC_VALUES], reduce_instance_dims=False), tf.int64)),
    }


def _read_counts(path: str) -> list[tuple[str, int]]:
    """(value, count) pairs of a ``store_frequency`` vocabulary file (records ``b"<count> <value>"``)."""
    import tensorflow as tf

    pairs = []
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
        count, _, value = record.partition(b" ")
        pairs.append((value.decode("utf-8"), int(count)))
    return pairs


def _analyzer_values(output: Any, kinds: dict[str, str]) -> dict[str, Any]:
    """Runs the analyzed transform graph on one empty row: its outputs are the analyzers' results.

    The graph is applied as tf.Transform's own layer applies it, without the layer's cast of the inputs
    to the tf.Example types (float32), so the float64 inputs the analyzers were traced with are taken.
    """
    import tensorflow as tf
    from tensorflow_transform.saved import saved_transform_io_v2

    numeric = max(sum(kind == "numeric" for kind in kinds.values()), 1)
    raw = {
        NUMERIC_VALUES: tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.constant([], tf.float64), [1, numeric]),
        MISSING: tf.zeros([1, len(kinds) + 1], tf.int64),
        KEYS: tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.constant([], tf.string), [1, 1]),
    }
    loader = saved_transform_io_v2.SavedModelLoader(output.transform_savedmodel_dir)
    values = {key: value.numpy()[0] for key, value in loader.apply_transform_model(raw).items()}
    for key in ("mean", "variance"):
        values[key] = values[key].view("float64")
    return values


def fit_spec_on_beam(
    examples: Artifact,
    split: str,
    kinds: dict[str, str],
    label: str,
    *,
    max_vocabulary: int,
    beam_args: list[str],
    work_dir: str,
) -> dict[str, Any]:
    """``fit_spec`` of ``split`` computed by tf.Transform's analyzers on a Beam pipeline.

    Args:
        examples: The Examples artifact.
        split: The split the constants are fitted on ("train").
        kinds: Feature name -> "numeric" | "categorical" (the label not among them).
        label: The label column.
        max_vocabulary: Most frequent string values kept per feature.
        beam_args: Beam command-line options (``data.beam.check_beam_args``).
        work_dir: A directory every Beam worker can write and this process can read
            (tf.Transform's temporary files and ``transform_fn``); removed afterwards.

    Returns:
        The ``transform.json`` document, as ``fit_spec`` returns it.
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam

    kinds = dict(kinds)
    transform_fn_dir = os.path.join(work_dir, "transform_fn")
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            with tft_beam.Context(temp_dir=os.path.join(work_dir, "tmp"), force_tf_compat_v1=False):
                batches = (
                    pipeline
                    | "ReadShards" >> beam.io.ReadFromParquetBatched(shard_pattern(examples, split), columns=[*kinds, label])
                    | "ToRecordBatches" >> beam.FlatMap(_record_batches, kinds, label)
                )
                transform_fn = (batches, _tensor_adapter_config(kinds)) | "Analyze" >> tft_beam.AnalyzeDataset(
                    _preprocessing_fn
                )
                _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_fn_dir)
        output = tft.TFTransformOutput(transform_fn_dir)
        values = _analyzer_values(output, kinds)
        keyed = _read_counts(output.vocabulary_file_by_name(VOCABULARY))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    # "<index>:<value>" keys back to each feature's (value, count) pairs; an entry without such a
    # key is tf.Transform's placeholder for an empty vocabulary, not data.
    counts: dict[str, list[tuple[str, int]]] = {}
    for key, count in keyed:
        owner, colon, value = key.partition(":")
        if colon and (owner == "label" or owner.isdigit()):
            counts.setdefault(owner, []).append((value, count))
    rows = int(values["missing"][-1])
    index_of = {name: index for index, name in enumerate(kinds)}
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    return spec_document(  # fit_spec's order: numbers, then strings
        label=label,
        split=split,
        rows=rows,
        numeric={
            name: (
                rows - int(values["missing"][index_of[name]]),
                values["mean"][column],
                values["variance"][column],
                int(values["missing"][index_of[name]]),
            )
            for column, name in enumerate(numeric)
        },
        categorical={
            name: (counts.get(str(index_of[name]), []), int(values["missing"][index_of[name]]))
            for name, kind in kinds.items() if kind == "categorical"
        },
        labels=[value for value, _ in counts.get("label", [])],
        max_vocabulary=max_vocabulary,
    )

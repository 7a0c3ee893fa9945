"""transform's full-pass analyzers on Apache Beam with tf.Transform (TFX's Transform).

``fit_spec_on_beam`` computes the same ``transform.json`` document as the
in-memory ``fit_spec`` (same keys, same vocabulary order), so
``build_preprocess_model`` stays the one place the Keras preprocessing model is
built and the transform stays inside the served model. The analyzers are
tf.Transform's, run by ``tft_beam.AnalyzeDataset`` on the runner the user's
``beam_args`` name (``components/data/beam.py``; [] is the DirectRunner):

* numeric feature: ``tft.mean`` and ``tft.var`` over the present values (float64),
  missing (null/NaN) rows counted by ``tft.sum`` of a 0/1 indicator;
* string feature: ``tft.vocabulary`` with ``store_frequency`` over the non-missing,
  non-"" values (every value with its count, in ``tfrecord_gzip`` format, which,
  unlike ``text``, keeps values holding newlines), re-sorted here as ``fit_spec``
  does (most frequent first, ties by value) and cut to ``max_vocabulary``; nulls
  counted by ``tft.sum``;
* label: ``tft.vocabulary`` of the non-null labels, sorted.

The Parquet shards are read by Beam's ``ReadFromParquetBatched`` (one Arrow
table per row group); each row group is coerced as ``fit_spec`` coerces the
whole frame (``pd.to_numeric`` for numbers, ``str`` for strings) and handed to
tf.Transform as Arrow record batches through a ``TensorAdapterConfig`` (values
as var-len sparse tensors, missing rows empty), so no worker holds the split.
The counts combined by Beam are exact; means and variances are summed in
another order than pandas', so they agree with ``fit_spec`` to 1e-9 relative
(tests/components/test_transform_beam.py).
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from flywheel.components import examples_io
from flywheel.components.data.beam import pipeline_options, shard_pattern
from flywheel.models import features

if TYPE_CHECKING:
    from flywheel.dsl.artifacts import Artifact

MISSING = "__missing__"  # suffix of a feature's 0/1 missing indicator column
VOCAB_FORMAT = "tfrecord_gzip"  # keeps "" and values with newlines, which the text format drops


def schema_frame(examples: Artifact, split: str) -> Any:
    """A zero-row DataFrame with the split's columns and pandas dtypes (from the first shard's schema)."""
    import pyarrow.parquet as pq

    frame = pq.read_schema(examples_io.shard_paths(examples, split)[0]).empty_table().to_pandas()
    return frame[[name for name in frame.columns if not str(name).startswith("__index_level_")]]


def _list_array(values: Any, present: Any, value_type: Any) -> Any:
    """A list array with one value in each present row and none in the others."""
    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(len(present) + 1, dtype=np.int32)
    np.cumsum(present, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def _one_per_row(values: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(np.arange(len(values) + 1, dtype=np.int32)), pa.array(values, type=pa.int64()))


def _record_batch(table: Any, kinds: dict[str, str], label: str) -> Any:
    """One row group as the record batch the analyzers read, coerced as ``fit_spec`` coerces the frame."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    frame = table.to_pandas()
    arrays, names = [], []
    for name, kind in kinds.items():
        column = frame[name]
        if kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            missing = np.isnan(values)
            arrays.append(_list_array(values[~missing], ~missing, pa.float64()))
        else:
            missing = column.isna().to_numpy()
            text = column[~missing].astype(str)
            kept = text[text != features.MISSING_STRING]
            keep = np.zeros(len(column), dtype=bool)
            keep[np.flatnonzero(~missing)[(text != features.MISSING_STRING).to_numpy()]] = True
            arrays.append(_list_array(kept.tolist(), keep, pa.string()))
        names.append(name)
        arrays.append(_one_per_row(missing.astype(np.int64)))
        names.append(name + MISSING)
    labels = frame[label]
    present = labels.notna().to_numpy()
    arrays.append(_list_array(labels[present].astype(str).tolist(), present, pa.string()))
    names.append(label)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _tensor_adapter_config(kinds: dict[str, str], label: str) -> Any:
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio import tensor_adapter

    fields, representations = [], {}
    for name, kind in [*kinds.items(), (label, "categorical")]:
        fields.append(pa.field(name, pa.list_(pa.float64() if kind == "numeric" else pa.string())))
        representations[name] = schema_pb2.TensorRepresentation(
            varlen_sparse_tensor=schema_pb2.TensorRepresentation.VarLenSparseTensor(column_name=name)
        )
        if name == label:
            continue
        fields.append(pa.field(name + MISSING, pa.list_(pa.int64())))
        dense = schema_pb2.TensorRepresentation.DenseTensor(column_name=name + MISSING)
        dense.shape.dim.add().size = 1
        representations[name + MISSING] = schema_pb2.TensorRepresentation(dense_tensor=dense)
    return tensor_adapter.TensorAdapterConfig(pa.schema(fields), representations)


def _vocabulary_name(index: int) -> str:
    return f"vocabulary_{index}"


def _preprocessing_fn(kinds: dict[str, str], label: str) -> Any:
    """The analyzers: every output is one analyzer's result, repeated for each row of the batch."""

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
        import tensorflow as tf
        import tensorflow_transform as tft

        first = inputs[next(iter(kinds)) + MISSING]
        rows = tf.shape(first)[0]

        def per_row(value: Any) -> Any:
            return tf.fill([rows], value)

        outputs = {"rows": per_row(tft.size(first))}
        for index, (name, kind) in enumerate(kinds.items()):
            values = inputs[name]
            outputs[f"{index}/missing"] = per_row(tft.sum(inputs[name + MISSING]))
            outputs[f"{index}/present"] = per_row(tft.size(values))
            if kind == "numeric":
                # float64 is no output dtype of tf.Transform: its bits travel as an int64
                outputs[f"{index}/mean"] = per_row(tf.bitcast(tft.mean(values), tf.int64))
                outputs[f"{index}/variance"] = per_row(tf.bitcast(tft.var(values), tf.int64))
            else:
                tft.vocabulary(
                    values, vocab_filename=_vocabulary_name(index), store_frequency=True, file_format=VOCAB_FORMAT
                )
        outputs["label/present"] = per_row(tft.size(inputs[label]))
        tft.vocabulary(inputs[label], vocab_filename="label_vocabulary", store_frequency=True, file_format=VOCAB_FORMAT)
        return outputs

    return preprocessing_fn


def _read_counts(path: str) -> list[tuple[str, int]]:
    """(value, count) pairs of a ``store_frequency`` vocabulary file (records ``b"<count> <value>"``)."""
    import tensorflow as tf

    pairs = []
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
        count, _, value = record.partition(b" ")
        pairs.append((value.decode("utf-8"), int(count)))
    return pairs


def _analyzer_values(output: Any, kinds: dict[str, str], label: str) -> dict[str, Any]:
    """Runs the analyzed transform graph on one empty row: its outputs are the analyzers' results.

    The graph is applied as tf.Transform's own layer applies it, without the layer's cast of the inputs
    to the tf.Example types (float32), so the float64 inputs the analyzers were traced with are taken.
    """
    import tensorflow as tf
    from tensorflow_transform.saved import saved_transform_io_v2

    raw = {}
    for name, kind in [*kinds.items(), (label, "categorical")]:
        raw[name] = tf.SparseTensor(
            indices=tf.zeros([0, 2], tf.int64),
            values=tf.constant([], tf.float64 if kind == "numeric" else tf.string),
            dense_shape=[1, 1],
        )
        if name != label:
            raw[name + MISSING] = tf.zeros([1, 1], tf.int64)
    loader = saved_transform_io_v2.SavedModelLoader(output.transform_savedmodel_dir)
    values = {key: value.numpy()[0] for key, value in loader.apply_transform_model(raw).items()}
    return {key: value.view("float64") if key.endswith(("/mean", "/variance")) else value for key, value in values.items()}


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
    columns = [*kinds, label]
    transform_fn_dir = os.path.join(work_dir, "transform_fn")
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            with tft_beam.Context(temp_dir=os.path.join(work_dir, "tmp"), force_tf_compat_v1=False):
                batches = (
                    pipeline
                    | "ReadShards" >> beam.io.ReadFromParquetBatched(shard_pattern(examples, split), columns=columns)
                    | "ToRecordBatches" >> beam.Map(_record_batch, kinds, label)
                )
                transform_fn = (batches, _tensor_adapter_config(kinds, label)) | "Analyze" >> tft_beam.AnalyzeDataset(
                    _preprocessing_fn(kinds, label)
                )
                _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_fn_dir)
        output = tft.TFTransformOutput(transform_fn_dir)
        values = _analyzer_values(output, kinds, label)
        vocabularies = {
            index: _read_counts(output.vocabulary_file_by_name(_vocabulary_name(index)))
            for index, kind in enumerate(kinds.values())
            if kind == "categorical"
        }
        labels = _read_counts(output.vocabulary_file_by_name("label_vocabulary"))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    rows = int(values["rows"])
    spec: dict[str, Any] = {
        "label": label,
        "numeric_features": [n for n, k in kinds.items() if k == "numeric"],
        "categorical_features": [n for n, k in kinds.items() if k == "categorical"],
        "features": {},
        "missing": {"numeric": "NaN (JSON null)", "categorical": '"" (JSON null)'},
        "fitted_on": {"split": split, "rows": rows},
    }
    index_of = {name: index for index, name in enumerate(kinds)}
    for name in spec["numeric_features"] + spec["categorical_features"]:  # fit_spec's order
        index, kind = index_of[name], kinds[name]
        present = int(values[f"{index}/present"])
        missing = int(values[f"{index}/missing"])
        if kind == "numeric":
            # An all-missing column normalizes to 0: mean 0, variance 1 (as fit_spec).
            spec["features"][name] = {
                "kind": "numeric",
                "dtype": "float32",
                "mean": float(values[f"{index}/mean"]) if present else 0.0,
                "variance": float(values[f"{index}/variance"]) if present else 1.0,
                "missing_in_train": missing,
            }
        else:
            # No value: tf.Transform writes a placeholder entry, which is not data.
            counts = vocabularies[index] if present else []
            ordered = sorted(counts, key=lambda item: (-item[1], item[0]))[:max_vocabulary]
            spec["features"][name] = {
                "kind": "categorical",
                "dtype": "string",
                "vocabulary": [value for value, _ in ordered],
                "missing_in_train": missing,
            }
    spec["label_vocabulary"] = sorted(value for value, _ in labels) if int(values["label/present"]) else []
    return spec

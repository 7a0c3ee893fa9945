"""transform: fit Keras preprocessing layers on the train split.

The fitted preprocessing is a small Keras model, ``preprocess.keras``, that maps
a dict of raw feature tensors (one 1-D tensor per feature) to one float feature
vector. ``train`` embeds it inside the trained model, so serving takes raw
features and there is no training/serving skew: the same layers, with the same
fitted constants, run in training, evaluation and serving.

* numeric feature: missing (NaN) -> train mean (``ImputeMissing``), then
  ``keras.layers.Normalization`` with the train mean and variance, plus a
  "was missing" indicator (``MissingIndicator``);
* string feature: ``keras.layers.StringLookup`` one-hot over the train
  vocabulary; missing ("") and unseen values go to the out-of-vocabulary slot.

Only the train split is read: statistics of eval must never leak into the model.
A small train split is read into memory (``fit_spec``, pandas); a large one
(over ``STREAM_MIN_ROWS``) is analyzed by the same ``fit_spec`` in one streamed
pass over its batches, exact and with bounded memory; with ``beam_args`` the
analyzers are tf.Transform's on Apache Beam, on the runner those name
(``transform/beam.py``; TFX's Transform), for data beyond one machine. All three
give the same ``transform.json``, so the same Keras model is built either way.

Image Examples (``examples_io.is_image``) get a pixel preprocessing instead
(``flywheel.models.images``): rescaling by the pixel range and, with ``normalize``,
per-channel standardisation, both fitted on the train split.

``resample="smote"|"undersample"`` also writes a class-rebalanced copy of the
train split into the transform graph for ``train`` (``data/resampling.py``: the
validation hold-out is taken first and never resampled; eval never is).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from flywheel.dsl.artifacts import Examples, Schema, TransformGraph
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval, Options
from flywheel.errors import FlywheelError, ParameterError

from flywheel.models import features
from flywheel.components import examples_io
from flywheel.components.data import beam as beam_options
from flywheel.components.data import resampling

from . import beam as transform_beam
from .spec import spec_document

# Where tf.Transform writes its temporary files and transform_fn, inside the output artifact
# (so a distributed runner's workers write where this process reads); removed once read.
BEAM_WORK_DIR = "tft-work"
# A train split with more rows than this is analyzed in one streamed pass over its batches (exact, memory
# bounded) when no beam_args are given: on one machine that is 12x faster than tf.Transform on the
# DirectRunner at 1M rows (benchmarks/RESULTS.md, "Transform analyzers"); the same threshold as validate's.
STREAM_MIN_ROWS = beam_options.BEAM_MIN_ROWS
STREAM_BATCH_ROWS = 65_536
# Distinct values per string feature counted exactly in a streamed pass; beyond, a bounded summary (fit_spec).
STREAM_DISTINCT = 200_000


@component(resources={"cpu": "1", "memory": "2Gi", "memory_limit": "4Gi"})
def transform(
    examples: Input[Examples],
    transform_graph: Output[TransformGraph],
    schema: Input[Schema] = None,
    label: str = "",
    exclude_features: list = [],  # noqa: B006 - component defaults are recorded, never mutated
    max_vocabulary: Annotated[int, Interval(int, 1, None)] = 1000,
    normalize: bool = False,
    resample: Annotated[str, Options(resampling.METHODS)] = "none",
    resample_params: dict = {},  # noqa: B006
    validation_fraction: Annotated[float, Interval(float, 0, 1, closed="neither")] = 0.2,
    seed: int = 0,
    beam_args: list = [],  # noqa: B006
) -> None:
    """Fits numeric normalization and string vocabularies (or pixel scaling) on the train split.

    Args:
        examples: Examples with a ``train`` split.
        transform_graph: Receives ``preprocess.keras`` and ``transform.json``.
        schema: Optional TFDV schema (``schema.pbtxt``); when given, it decides
            which columns are numeric (INT/FLOAT) and which are strings (BYTES).
            Without it the DataFrame's dtypes decide.
        label: Label column; defaults to the Examples' ``label`` property.
        exclude_features: Columns that are not features (ids, timestamps).
        max_vocabulary: Most frequent string values kept per feature.
        normalize: Images only: standardise each channel with the train mean
            and variance after rescaling to [0, 1].
        resample: "none", "smote" (SMOTE over-sampling; SMOTE-NC when there are
            string features) or "undersample" (random under-sampling) of the
            train split's fit part (see ``data/resampling.py``).
        resample_params: Extra arguments of the resampler
            (``SMOTEOversampler``: ``k_neighbors``, ``sampling_strategy``;
            ``RandomUndersampler``: ``sampling_strategy``).
        validation_fraction: With resampling, the share of train held out
            (stratified, not resampled) as ``train``'s validation split.
        seed: With resampling, seeds the hold-out and the resampler.
        beam_args: Apache Beam options for the analyzers, passed to ``PipelineOptions``
            unchanged (as TFX's ``beam_pipeline_args``), e.g. ``["--runner=FlinkRunner",
            "--flink_master=host:8081"]``. Given, the constants are fitted by
            tf.Transform's analyzers on Beam over the Parquet shards
            (``transform/beam.py``; ``["--runner=DirectRunner"]`` runs them in this
            process). [] fits them in this process: in one streamed pass over the
            batches for a train split above ``STREAM_MIN_ROWS`` rows, in memory
            (pandas) for a smaller one. All give the same ``transform.json``.
            Tabular data only: image pixel statistics are fitted in memory.

    Raises:
        ParameterError: a parameter is out of range, an excluded feature is unknown,
            or ``beam_args`` is not a list of ``--`` options.
        FlywheelError: no label is known, or no feature is left.
    """
    _check_resample(resample, resample_params, validation_fraction)
    beam_args = beam_options.check_beam_args(beam_args, "transform")
    if examples_io.is_image(examples):
        _transform_images(
            examples, transform_graph, label, normalize, resample, dict(resample_params), validation_fraction, seed
        )
        return
    label_name = examples_io.label_of(examples, label)
    on_beam = bool(beam_args)
    streamed = not on_beam and examples_io.split_rows(examples, "train") > STREAM_MIN_ROWS
    # On Beam or streamed, only the columns' types are read here; the rows stay in the shards.
    train = (
        examples_io.empty_split_frame(examples, "train") if on_beam or streamed
        else examples_io.read_split(examples, "train")
    )
    if label_name not in train.columns:
        raise FlywheelError(
            f"The label column '{label_name}' is not in the train split (columns: {list(train.columns)}); "
            "pass label=... naming one of them."
        )
    unknown = [name for name in exclude_features if name not in train.columns]
    if unknown:
        raise ParameterError(
            f"The 'exclude_features' parameter of transform must name columns of the data. Got {unknown} "
            f"instead; columns are {list(train.columns)}."
        )
    kinds = _feature_kinds(train, schema, exclude={label_name, *exclude_features})
    if not kinds:
        raise FlywheelError(
            f"No feature columns left in {examples.uri} after removing the label '{label_name}' and "
            f"{list(exclude_features)}; the data needs at least one feature column."
        )
    if on_beam:
        spec = transform_beam.fit_spec_on_beam(
            examples, "train", kinds, label_name, max_vocabulary=max_vocabulary, beam_args=beam_args,
            work_dir=transform_graph.path(BEAM_WORK_DIR),
        )
    elif streamed:
        columns = list(dict.fromkeys([*kinds, label_name]))
        batches = examples_io.iter_split_batches(examples, "train", batch_rows=STREAM_BATCH_ROWS, columns=columns)
        spec = fit_spec(batches, kinds, label_name, max_vocabulary=max_vocabulary)
    else:
        spec = fit_spec(train, kinds, label_name, max_vocabulary=max_vocabulary)
    model = build_preprocess_model(spec)
    model.save(transform_graph.path(features.PREPROCESS_FILE))
    features.write_json(transform_graph.path(features.TRANSFORM_JSON), spec)
    transform_graph.properties.update(
        {
            "numeric_features": spec["numeric_features"],
            "categorical_features": spec["categorical_features"],
            "label": label_name,
            "label_vocabulary": spec["label_vocabulary"],
            "output_dim": int(model.output.shape[-1]),
            "train_rows": int(spec["fitted_on"]["rows"]),
            "analyzers": "tf.Transform on Beam" if on_beam else "streamed in batches" if streamed else "in memory",
        }
    )
    if resample != "none":
        if on_beam or streamed:  # the resamplers (SMOTE's neighbours) need the rows in memory
            train = examples_io.read_split(examples, "train")
        transform_graph.properties.update(
            resampling.resample_table(
                train, spec, resample, dict(resample_params), fraction=validation_fraction, seed=seed,
                out=transform_graph.path(resampling.RESAMPLED_DIR),
            )
        )


def _check_resample(resample: str, resample_params: dict, validation_fraction: float) -> None:
    allowed = {"smote": {"k_neighbors", "sampling_strategy"}, "undersample": {"sampling_strategy"}}.get(resample, set())
    unknown = sorted(set(resample_params) - allowed)
    if unknown:
        raise ParameterError(
            f"The 'resample_params' parameter of transform must only hold {sorted(allowed) or 'nothing'} for "
            f"resample={resample!r}. Got {unknown} instead."
        )


def _transform_images(
    examples: Examples,
    transform_graph: TransformGraph,
    label: str,
    normalize: bool,
    resample: str,
    resample_params: dict,
    validation_fraction: float,
    seed: int,
) -> None:
    """The image branch: pixel scaling fitted on train, written as ``preprocess.keras``."""
    from flywheel.models import images as image_models

    label_name = examples_io.label_of(examples, label)
    images, frame = examples_io.read_images(examples, "train")
    if label_name not in frame.columns:
        raise FlywheelError(
            f"The label column '{label_name}' is not in the train split of {examples.uri} "
            f"(columns: {list(frame.columns)}); pass label=... naming one of them."
        )
    class_names = list(examples.properties.get("class_names") or sorted(frame[label_name].astype(str).unique()))
    spec = image_models.fit_image_spec(images, class_names, label_name, normalize=normalize)
    model = image_models.build_image_preprocess(spec)
    model.save(transform_graph.path(features.PREPROCESS_FILE))
    features.write_json(transform_graph.path(features.TRANSFORM_JSON), spec)
    transform_graph.properties.update(
        {
            "modality": "image",
            "label": label_name,
            "label_vocabulary": class_names,
            "image_shape": spec["image_shape"],
            "pixel_max": spec["pixel_max"],
            "normalize": spec["normalize"],
            "train_rows": int(len(images)),
        }
    )
    if resample != "none":
        transform_graph.properties.update(
            resampling.resample_images(
                images, frame, spec, resample, resample_params, fraction=validation_fraction, seed=seed,
                out=transform_graph.path(resampling.RESAMPLED_DIR),
            )
        )


def _feature_kinds(train: Any, schema: Schema | None, *, exclude: set[str]) -> dict[str, str]:
    """Feature name -> "numeric" | "categorical", from the schema if given, else from dtypes."""
    import pandas as pd

    schema_kinds = _schema_kinds(schema) if schema is not None else {}
    kinds: dict[str, str] = {}
    for name in train.columns:
        if name in exclude:
            continue
        if name in schema_kinds:
            kinds[name] = schema_kinds[name]
        elif schema_kinds:
            continue  # a schema lists the features; columns outside it are not features
        elif pd.api.types.is_numeric_dtype(train[name]) or pd.api.types.is_bool_dtype(train[name]):
            kinds[name] = "numeric"
        else:
            kinds[name] = "categorical"
    return kinds


def _schema_kinds(schema: Schema) -> dict[str, str]:
    """Reads ``schema.pbtxt`` (a tensorflow_metadata Schema) into feature kinds; {} if absent."""
    path = schema.path("schema.pbtxt")
    if not os.path.isfile(path):
        return {}
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    proto = schema_pb2.Schema()
    with open(path, encoding="utf-8") as f:
        text_format.Parse(f.read(), proto)
    kinds = {}
    for feature in proto.feature:
        if feature.type in (schema_pb2.INT, schema_pb2.FLOAT):
            kinds[feature.name] = "numeric"
        elif feature.type == schema_pb2.BYTES:
            kinds[feature.name] = "categorical"
    return kinds


def fit_spec(train: Any, kinds: dict[str, str], label: str, *, max_vocabulary: int = 1000) -> dict[str, Any]:
    """Computes the preprocessing constants from the train split only.

    Args:
        train: The train split as one DataFrame, or as an iterable of DataFrames (its batches,
            e.g. ``examples_io.iter_split_batches``): one pass, memory bounded by a batch and
            the distinct strings. Counts and vocabularies are exact either way; means and
            variances are merged batch by batch (Chan et al.'s pairwise update), equal to the
            one-frame result to ~1e-12 relative. In batches, a string feature
            with more than ``STREAM_DISTINCT`` distinct values (an id, a timestamp)
            is counted with a Misra-Gries summary of that many values, so memory
            stays bounded; its vocabulary is then the most frequent values up to
            the summary's stated error (``vocabulary_count_error``).
        kinds: Feature name -> "numeric" | "categorical".
        label: The label column.
        max_vocabulary: Most frequent strings kept per feature.

    Returns:
        The ``transform.json`` document (see ``features``).
    """
    import numpy as np
    import pandas as pd

    numeric = [n for n, k in kinds.items() if k == "numeric"]
    categorical = [n for n, k in kinds.items() if k == "categorical"]
    moments = {name: [0, 0.0, 0.0, 0] for name in numeric}  # present rows, mean, M2, missing rows
    counts: dict[str, Any] = {name: pd.Series(dtype="int64") for name in categorical}
    missing_strings = dict.fromkeys(categorical, 0)
    labels: set[str] = set()
    rows = 0
    streamed = not isinstance(train, pd.DataFrame)
    undercount = dict.fromkeys(categorical, 0.0)
    for frame in train if streamed else [train]:
        rows += len(frame)
        for name in numeric:
            values = pd.to_numeric(frame[name], errors="coerce")
            present = values.dropna().to_numpy(dtype="float64")
            moment = moments[name]
            moment[3] += int(len(values) - len(present))
            if len(present):
                n, mean = len(present), float(present.mean())
                m2 = float(np.square(present - mean).sum())
                total = moment[0] + n
                delta = mean - moment[1]
                moment[1] += delta * n / total
                moment[2] += m2 + delta * delta * moment[0] * n / total
                moment[0] = total
        for name in categorical:
            column = frame[name]
            missing_strings[name] += int(column.isna().sum())
            values = column[column.notna()].astype(str)
            batch_counts = values[values != features.MISSING_STRING].value_counts()
            merged = counts[name].add(batch_counts, fill_value=0) if len(counts[name]) else batch_counts
            if streamed and len(merged) > STREAM_DISTINCT:
                # Misra-Gries (mergeable summaries): subtract the (k+1)-th largest count, keep what stays positive.
                # Every kept count is then low by at most the sum of what was subtracted, <= rows / (k + 1).
                cut = float(merged.nlargest(STREAM_DISTINCT + 1).iloc[-1])
                merged = merged[merged > cut] - cut
                undercount[name] += cut
            counts[name] = merged
        labels.update(frame[label].dropna().astype(str).unique().tolist())
    return spec_document(
        label=label,
        split="train",
        rows=rows,
        numeric={name: (n, mean, m2 / n if n else 0.0, missing) for name, (n, mean, m2, missing) in moments.items()},
        categorical={name: (counts[name].items(), missing_strings[name]) for name in categorical},
        labels=labels,
        max_vocabulary=max_vocabulary,
        count_errors={name: int(error) for name, error in undercount.items() if error},
    )


def build_preprocess_model(spec: dict[str, Any]) -> Any:
    """The Keras model from raw feature dict to feature vector, with fitted constants."""
    import keras

    from flywheel.models import layers as model_layers

    inputs = {}
    parts = []
    for name in spec["numeric_features"]:
        info = spec["features"][name]
        tensor = keras.Input(shape=(), dtype="float32", name=name)
        inputs[name] = tensor
        imputed = model_layers.layer("ImputeMissing", fill_value=info["mean"], name=f"{name}_impute")(tensor)
        normalized = keras.layers.Normalization(
            mean=[info["mean"]], variance=[info["variance"]], name=f"{name}_normalize"
        )(imputed)
        parts.append(normalized)
        parts.append(model_layers.layer("MissingIndicator", name=f"{name}_missing")(tensor))
    for name in spec["categorical_features"]:
        info = spec["features"][name]
        tensor = keras.Input(shape=(), dtype="string", name=name)
        inputs[name] = tensor
        lookup = keras.layers.StringLookup(
            vocabulary=info["vocabulary"] or [features.MISSING_STRING],
            num_oov_indices=1,
            output_mode="one_hot",
            name=f"{name}_lookup",
        )
        parts.append(lookup(tensor))
    output = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    return keras.Model(inputs=inputs, outputs=output, name="preprocess")

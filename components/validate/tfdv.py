"""TFDV plumbing of the ``validate`` component: statistics, schema files, anomalies.

TFDV (and the protos it brings) is imported inside the functions, so importing
this module stays cheap. Statistics of small splits are computed in memory
(``tfdv.generate_statistics_from_dataframe``), not with a Beam pipeline: on
data of pipeline-demo size that is milliseconds instead of seconds. Large
splits, or any when ``beam_args`` are given, go through ``beam.py``.

TFDV imports Apache Beam, whose ``apache_beam.io`` imports the BigQuery,
Pub/Sub and GCS clients whenever they are installed (``apache-beam[gcp]`` is a
TFDV requirement), inside a ``try/except ImportError``. Nothing here reads from
Google Cloud, so ``tfdv_module`` makes that optional import fail for the
duration of the first import: about 28 MB and half a second less per worker
(measured with ``benchmarks/pipeline_e2e.py``). Later imports of those modules
(by anyone) work as usual.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flywheel.dsl.artifacts import Artifact
from flywheel.errors import FlywheelError

from flywheel.components.examples_io import split_dir

# Beam's optional Google Cloud IO, skipped while TFDV is first imported (see the module docstring).
_SKIPPED_ON_IMPORT = ("apache_beam.io.gcp.bigquery", "apache_beam.io.gcp.pubsub")

if TYPE_CHECKING:
    import pandas as pd

STATS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
TRAINING, SERVING = "TRAINING", "SERVING"


def tfdv_module() -> Any:
    """``tensorflow_data_validation``, imported without Beam's Google Cloud IO clients."""
    import sys

    if "tensorflow_data_validation" not in sys.modules and "apache_beam.io" not in sys.modules:
        blocked = [name for name in _SKIPPED_ON_IMPORT if name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]  # makes "import name" raise ImportError
        try:
            import tensorflow_data_validation  # noqa: F401 - the first import, with the skips in place
        finally:
            for name in blocked:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]
    import tensorflow_data_validation as tfdv

    return tfdv


def compute_statistics(frame: pd.DataFrame, split: str) -> Any:
    """Statistics of one split as a ``DatasetFeatureStatisticsList`` named after the split."""
    tfdv = tfdv_module()

    stats = tfdv.generate_statistics_from_dataframe(frame.reset_index(drop=True), tfdv.StatsOptions())
    for dataset in stats.datasets:
        dataset.name = split
    return stats


def write_statistics(statistics: Artifact, split: str, stats: Any) -> str:
    """Writes ``Split-<split>/FeatureStats.pb`` (binary proto, as TFX does); returns the path."""
    directory = split_dir(statistics, split)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, STATS_FILE)
    with open(path, "wb") as fh:
        fh.write(stats.SerializeToString())
    return path


def load_statistics(statistics: Artifact, split: str = "train") -> Any:
    """Reads one split's statistics; falls back to the first split present.

    Raises:
        FlywheelError: the artifact holds no statistics.
    """
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from flywheel.components.examples_io import split_names

    names = split_names(statistics)
    chosen = split if split in names else (names[0] if names else "")
    path = os.path.join(split_dir(statistics, chosen), STATS_FILE) if chosen else ""
    if not path or not os.path.isfile(path):
        raise FlywheelError(
            f"ExampleStatistics at {statistics.uri} hold no {STATS_FILE} (splits present: "
            f"{', '.join(names) or 'none'}); pass statistics written by validate."
        )
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as fh:
        stats.ParseFromString(fh.read())
    return stats


def load_schema(path: str) -> Any:
    """Reads a Schema proto in text format.

    Raises:
        FlywheelError: the file is missing or not a valid schema.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    if not os.path.isfile(path):
        raise FlywheelError(f"Schema file {path} does not exist; pass a schema.pbtxt written by validate.")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as exc:
        raise FlywheelError(f"Schema file {path} is not a valid tensorflow_metadata Schema in text format: {exc}") from exc


def write_schema(schema_artifact: Artifact, schema: Any) -> str:
    """Writes ``schema.pbtxt`` (text format) into the artifact; returns the path."""
    from google.protobuf import text_format

    path = schema_artifact.path(SCHEMA_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text_format.MessageToString(schema))
    return path


def infer_schema(train_stats: Any, label: str) -> Any:
    """Schema inferred from train statistics; the label is left out of the SERVING environment."""
    tfdv = tfdv_module()

    schema = tfdv.infer_schema(train_stats)
    if label and any(f.name == label for f in schema.feature):
        schema.default_environment.extend([TRAINING, SERVING])
        tfdv.get_feature(schema, label).not_in_environment.append(SERVING)
    return schema


def with_comparators(schema: Any, skew_threshold: float, drift_threshold: float) -> Any:
    """A copy of the schema with skew/drift comparators on every feature that has none.

    Categorical features (strings, categorical ints) use the L-infinity distance,
    numeric ones the approximate Jensen-Shannon divergence, as TFDV 1.16 supports.
    A threshold of 0 leaves that check off; comparators already in the schema win.

    Jensen-Shannon is computed on the quantile histogram, not TFDV's default
    (the standard histogram: 10 equal-width buckets from min to max). On a
    heavy-tailed column nearly every value falls in the first equal-width
    bucket, whose width depends on the largest value of each sample; TFDV
    re-buckets the two histograms onto common boundaries assuming values are
    spread evenly inside a bucket, so two halves of one random split, whose
    maxima differ, differ by JS ~0.4-0.7. Quantile buckets hold equal counts
    wherever the mass is, and the same halves measure ~0.05.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    result = schema_pb2.Schema()
    result.CopyFrom(schema)
    for feature in result.feature:
        categorical = feature.type == schema_pb2.BYTES or feature.int_domain.is_categorical
        for threshold, field in ((skew_threshold, "skew_comparator"), (drift_threshold, "drift_comparator")):
            if threshold <= 0 or feature.HasField(field):
                continue
            comparator = getattr(feature, field)
            if categorical:
                comparator.infinity_norm.threshold = threshold
            else:
                comparator.jensen_shannon_divergence.threshold = threshold
                comparator.jensen_shannon_divergence.source.type = schema_pb2.HistogramSelection.QUANTILES
    return result


def _descriptions(anomalies: Any, comparator: bool | None) -> dict[str, str]:
    """Feature -> description from an Anomalies proto, keeping only (non-)comparator reasons."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found: dict[str, str] = {}
    infos = list(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append(("(dataset)", anomalies.dataset_anomaly_info))
    for feature, info in infos:
        reasons = []
        for reason in info.reason:
            is_comparator = anomalies_pb2.AnomalyInfo.Type.Name(reason.type).startswith("COMPARATOR_")
            if comparator is None or is_comparator == comparator:
                reasons.append(f"{reason.short_description}: {reason.description}")
        if not info.reason and comparator is not True:
            reasons.append(f"{info.short_description}: {info.description}")
        if reasons:
            found[feature] = "; ".join(reasons)
    return found


def _kinds(anomalies: Any, comparator: bool) -> dict[str, list[str]]:
    """Feature -> the anomaly kinds (TFDV ``AnomalyInfo.Type`` names) found for it."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    kinds: dict[str, list[str]] = {}
    for feature, info in anomalies.anomaly_info.items():
        names = [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason]
        names = [n for n in names if n.startswith("COMPARATOR_") == comparator]
        if names:
            kinds[feature] = names
    return kinds


def _measurements(anomalies: Any, kind: str) -> dict[str, dict[str, Any]]:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found: dict[str, dict[str, Any]] = {}
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for m in getattr(info, f"{kind}_measurements"):
            found[feature] = {
                "type": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                "value": float(m.value),
                "threshold": float(m.threshold),
            }
    return found


def find_anomalies(
    split_stats: dict[str, Any],
    schema: Any,
    previous_train: Any | None,
    kinds: dict[str, dict[str, list[str]]] | None = None,
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, dict[str, Any]]]]:
    """Anomalies of each split against the schema, train/eval skew and drift vs previous.

    Args:
        split_stats: Statistics by split name (train first).
        schema: Schema with skew/drift comparators set.
        previous_train: Statistics of earlier data to measure drift against, or None.
        kinds: If given, filled with ``{scope: {feature: [anomaly kind, ...]}}``.

    Returns:
        ``({split: {feature: description}, "skew": {...}, "drift": {...}},
        {"skew": {feature: measurement}, "drift": {...}})``.
    """
    tfdv = tfdv_module()

    found: dict[str, dict[str, str]] = {}
    kinds = {} if kinds is None else kinds
    mistyped: set[str] = set()
    for split, stats in split_stats.items():
        result = tfdv.validate_statistics(stats, schema)
        found[split] = _descriptions(result, comparator=False)
        kinds[split] = _kinds(result, comparator=False)
        mistyped |= _features_with_reason(result, "UNEXPECTED_DATA_TYPE")
    measurements: dict[str, dict[str, dict[str, Any]]] = {"skew": {}, "drift": {}}
    train = split_stats.get("train")
    found["skew"], found["drift"] = {}, {}
    if train is not None and "eval" in split_stats:
        skew = tfdv.validate_statistics(train, schema, serving_statistics=split_stats["eval"])
        found["skew"] = _descriptions(skew, comparator=True)
        kinds["skew"] = _kinds(skew, comparator=True)
        measurements["skew"] = _measurements(skew, "skew")
    if train is not None and previous_train is not None:
        drift = tfdv.validate_statistics(train, schema, previous_statistics=previous_train)
        found["drift"] = _descriptions(drift, comparator=True)
        kinds["drift"] = _kinds(drift, comparator=True)
        measurements["drift"] = _measurements(drift, "drift")
    # A distance between values of the wrong type says nothing new; the type anomaly is reported.
    for kind in ("skew", "drift"):
        found[kind] = {f: text for f, text in found[kind].items() if f not in mistyped}
        measurements[kind] = {f: m for f, m in measurements[kind].items() if f not in mistyped}
    return found, measurements


def _features_with_reason(anomalies: Any, reason_type: str) -> set[str]:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    wanted = anomalies_pb2.AnomalyInfo.Type.Value(reason_type)
    return {f for f, info in anomalies.anomaly_info.items() if any(r.type == wanted for r in info.reason)}

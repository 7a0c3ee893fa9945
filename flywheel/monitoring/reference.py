"""The training reference of a registry version: what live traffic is compared with.

Found through lineage: ``version.json``'s ``source_uri`` is the train step's
Model artifact; ML Metadata leads from it upstream to the run's ``validate``
execution (output ``statistics``: TFDV ``Split-train/FeatureStats.pb``) and
its ``ingest`` execution (output ``examples``: ``Split-train/data.parquet``).

Which reference each test uses, and why:

* **Categorical features and the label** - the TFDV statistics. Their rank
  histogram holds the exact count of every category in the train split, which
  is all a chi-squared test needs, so the check is against "the validate
  step's" statistics exactly as the issue asks.
* **Numeric features** - the raw train split. The two-sample K-S test needs the
  reference's empirical CDF; TFDV keeps only 10 equal-width and 10 quantile
  buckets, which would cap the test's resolution (a shift that moves mass
  inside one decile is invisible). Only when the train split is gone does the
  numeric check fall back to a chi-squared test on TFDV's quantile buckets
  (test ``chi2``, ``details.binned_on = "tfdv_quantiles"``).
* Feature names and kinds come from the version's ``model.json`` (what the
  model really consumes).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.home import Home
from flywheel.monitoring import drift

STATISTICS_FILE = os.path.join("Split-train", "FeatureStats.pb")
TRAIN_SPLIT_FILE = os.path.join("Split-train", "data.parquet")


class ReferenceNotFoundError(FlywheelError):
    """The training data or statistics of a model version cannot be found."""


@dataclasses.dataclass
class TrainingReference:
    """Reference distributions of one model version's training data."""

    model: str
    version: int
    features: dict[str, str]  # name -> "numeric" | "categorical"
    label: str
    label_vocabulary: list[str]
    numeric_sorted: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    quantile_buckets: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    categorical_counts: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    label_counts: dict[str, float] = dataclasses.field(default_factory=dict)
    statistics_uri: str | None = None
    examples_uri: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"statistics": self.statistics_uri, "examples": self.examples_uri}


def read_tfdv_statistics(path: str) -> tuple[dict[str, dict[str, float]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Category counts and numeric quantile buckets from a TFDV ``FeatureStats.pb``.

    Returns:
        ({categorical feature: {value: count}}, {numeric feature: (edges, counts)}).
    """
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as handle:
        stats.ParseFromString(handle.read())
    counts: dict[str, dict[str, float]] = {}
    buckets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for dataset in stats.datasets[:1]:
        for feature in dataset.features:
            name = feature.path.step[0] if feature.path.step else feature.name
            if feature.HasField("string_stats"):
                ranks = feature.string_stats.rank_histogram.buckets or feature.string_stats.top_values
                counts[name] = {
                    str(getattr(b, "label", "") or getattr(b, "value", "")): float(
                        getattr(b, "sample_count", 0) or getattr(b, "frequency", 0)
                    )
                    for b in ranks
                }
            elif feature.HasField("num_stats"):
                for histogram in feature.num_stats.histograms:
                    if histogram.type == histogram.QUANTILES and histogram.buckets:
                        edges = np.array([histogram.buckets[0].low_value] + [b.high_value for b in histogram.buckets])
                        buckets[name] = (edges, np.array([b.sample_count for b in histogram.buckets]))
    return counts, buckets


def _lineage_outputs(home: Home, source_uri: str) -> dict[str, str]:
    """{"statistics": uri, "examples": uri} found upstream of a Model artifact in MLMD."""
    if not os.path.exists(home.metadata_db):
        raise ReferenceNotFoundError(
            f"No ML Metadata store at {home.metadata_db} to trace {source_uri} to its training data."
        )
    from flywheel.metadata import MetadataStore

    store = MetadataStore(home)
    try:
        artifact = store.get_artifact(source_uri)
    except FlywheelError as exc:
        raise ReferenceNotFoundError(f"The model {source_uri} is not in the ML Metadata of {home.root}: {exc}") from exc
    found: dict[str, str] = {}
    for execution in store.lineage(artifact.id):
        for output in execution.outputs.values():
            if output.type == "ExampleStatistics" and "statistics" not in found:
                found["statistics"] = output.uri
            elif output.type == "Examples" and "examples" not in found:
                found["examples"] = output.uri
    return found


def load_reference(registry: Any, home: Home, model: str, version: int) -> TrainingReference:
    """The training reference of ``model`` version ``version``.

    Raises:
        ReferenceNotFoundError: no model.json, no lineage, or neither the TFDV
            statistics nor the train split exist any more.
    """
    version_dir = registry.version_dir(model, version)
    contract_path = os.path.join(version_dir, "model.json")
    if not os.path.isfile(contract_path):
        raise ReferenceNotFoundError(
            f"Version {version} of '{model}' has no model.json ({contract_path}); its features are unknown."
        )
    with open(contract_path, encoding="utf-8") as handle:
        contract = json.load(handle)
    features = {name: spec.get("kind", drift.NUMERIC) for name, spec in contract.get("features", {}).items()}
    reference = TrainingReference(
        model=model,
        version=version,
        features=features,
        label=contract.get("label", ""),
        label_vocabulary=[str(v) for v in contract.get("label_vocabulary", [])],
    )
    source_uri = registry.version_info(model, version).get("source_uri", "")
    found = _lineage_outputs(home, source_uri)
    stats_path = os.path.join(found.get("statistics", ""), STATISTICS_FILE)
    if found.get("statistics") and os.path.isfile(stats_path):
        counts, buckets = read_tfdv_statistics(stats_path)
        reference.statistics_uri = found["statistics"]
        reference.categorical_counts = {
            f: counts[f] for f, k in features.items() if k == drift.CATEGORICAL and f in counts
        }
        reference.quantile_buckets = {f: buckets[f] for f, k in features.items() if k == drift.NUMERIC and f in buckets}
        reference.label_counts = counts.get(reference.label, {})
    split_path = os.path.join(found.get("examples", ""), TRAIN_SPLIT_FILE)
    if found.get("examples") and os.path.isfile(split_path):
        import pandas as pd

        frame = pd.read_parquet(split_path)
        reference.examples_uri = found["examples"]
        for feature, kind in features.items():
            if feature not in frame.columns:
                continue
            if kind == drift.NUMERIC:
                reference.numeric_sorted[feature] = np.sort(
                    drift.clean_numeric(pd.to_numeric(frame[feature], errors="coerce"))
                )
            elif feature not in reference.categorical_counts:
                reference.categorical_counts[feature] = {
                    str(k): float(v) for k, v in drift.value_counts(frame[feature]).items()
                }
        if not reference.label_counts and reference.label in frame.columns:
            reference.label_counts = {str(k): float(v) for k, v in drift.value_counts(frame[reference.label]).items()}
    if reference.statistics_uri is None and reference.examples_uri is None:
        raise ReferenceNotFoundError(
            f"Neither the TFDV statistics nor the train split of '{model}' v{version} exist (lineage found {found or 'nothing'})."
        )
    return reference

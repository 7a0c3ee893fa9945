"""The training reference of a registry version: what live traffic is compared with.

Read from the registry: ``push`` stores the reference inside the version
(``write_bundle``), so the monitor, rollback and the dashboard need only the
registry (local directory or object store), never a metadata store::

    <version>/reference/reference.json        features, label, category and label counts,
                                              TFDV quantile buckets, where they came from
    <version>/reference/numeric.npz           sorted train values of each numeric feature
                                              (all of them up to NUMERIC_POINTS, else a reservoir sample)
    <version>/reference/statistics/FeatureStats.pb   the validate step's TFDV statistics (train split)
    <version>/reference/schema/schema.pbtxt          the schema the data was validated against

Versions pushed before the bundle existed fall back to lineage: ``version.json``'s
``source_uri`` is the train step's Model artifact; local ML Metadata leads from
it upstream to ``validate`` (``statistics``) and ``ingest`` (``examples``).

Which reference each test uses, and why:

* **Categorical features and the label** - the TFDV statistics. Their rank
  histogram holds the exact count of every category in the train split, which
  is all a chi-squared test needs, so the check is against "the validate
  step's" statistics exactly as the issue asks.
* **Numeric features** - the raw train split, streamed in batches into a bounded
  reference: every value when the split has at most ``NUMERIC_POINTS``, else a
  uniform reservoir sample of ``NUMERIC_POINTS`` values (Algorithm R, seeded per
  feature, so the same split gives the same sample). The sample's ECDF is within
  ``reservoir_cdf_error()`` (0.0051 for 100,000 points; DKW inequality, 99%
  confidence) of the split's, far below the K-S distances a live window of
  hundreds of rows can resolve; the drift report states it (``reference`` in
  each check's details). Memory: NUMERIC_POINTS floats per numeric feature,
  whatever the split's size. The two-sample K-S test needs the reference's
  empirical CDF; TFDV keeps only 10 equal-width and 10 quantile
  buckets, which would cap the test's resolution (a shift that moves mass
  inside one decile is invisible). Only when the train split is gone does the
  numeric check fall back to a chi-squared test on TFDV's quantile buckets
  (test ``chi2``, ``details.binned_on = "tfdv_quantiles"``).
* Feature names and kinds come from the version's ``model.json`` (what the
  model really consumes).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from typing import Any

import numpy as np

from flywheel import storage
from flywheel.errors import FlywheelError
from flywheel.home import Home
from flywheel.models.features import MODEL_JSON
from flywheel.monitoring import drift

STATISTICS_FILE = os.path.join("Split-train", "FeatureStats.pb")
BUNDLE_DIR = "reference"
BUNDLE_FILE = "reference.json"
NUMERIC_FILE = "numeric.npz"
# K-S needs the reference ECDF: all values up to this many, else a reservoir sample of this size.
NUMERIC_POINTS = 100_000
RESERVOIR_CONFIDENCE = 0.99
BATCH_ROWS = 65_536  # rows per batch the train split is streamed in


def reservoir_cdf_error(points: int, confidence: float = RESERVOIR_CONFIDENCE) -> float:
    """The DKW bound: a uniform sample of ``points`` values has its ECDF within this of the population's."""
    import math

    return math.sqrt(math.log(2 / (1 - confidence)) / (2 * points))


class Reservoir:
    """A uniform sample of at most ``size`` values of a stream (Algorithm R, vectorised per batch)."""

    def __init__(self, size: int, seed: Any) -> None:
        self.size = size
        self.seen = 0
        self._values = np.empty(size, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        fill = min(max(self.size - self.seen, 0), values.shape[0])
        self._values[self.seen:self.seen + fill] = values[:fill]
        rest = values[fill:]
        if rest.shape[0]:
            # item t (1-based over the stream) replaces slot j ~ U[0, t) when j < size; the last write wins, as in order
            slots = self._rng.integers(0, np.arange(self.seen + fill + 1, self.seen + values.shape[0] + 1))
            keep = slots < self.size
            self._values[slots[keep]] = rest[keep]
        self.seen += values.shape[0]

    def sorted(self) -> np.ndarray:
        return np.sort(self._values[: min(self.seen, self.size)])


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
    numeric_rows: dict[str, int] = dataclasses.field(default_factory=dict)  # train values behind numeric_sorted

    def describe(self) -> dict[str, Any]:
        return {"statistics": self.statistics_uri, "examples": self.examples_uri, "numeric": self.numeric_reference()}

    def numeric_reference(self) -> dict[str, Any]:
        """How the numeric references were built: all values, or a sample (reservoir) with its ECDF error bound."""
        sampled = {f: n for f, n in self.numeric_rows.items() if n > self.numeric_sorted.get(f, np.empty(0)).shape[0]}
        if not sampled:
            return {"method": "all train values", "max_points": NUMERIC_POINTS}
        return {
            "method": "uniform sample",
            "points": NUMERIC_POINTS,
            "train_values": max(sampled.values()),
            "cdf_error": round(reservoir_cdf_error(NUMERIC_POINTS), 6),
            "confidence": RESERVOIR_CONFIDENCE,
        }


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


def lineage_outputs(home: Home, source_uri: str) -> dict[str, str]:
    """{"statistics": uri, "examples": uri, "schema": uri} found upstream of a Model artifact in MLMD."""
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
            elif output.type == "Schema" and "schema" not in found:
                found["schema"] = output.uri
    return found


def _contract(registry: Any, model: str, version: int) -> dict[str, Any]:
    path = registry.version_file(model, version, MODEL_JSON)
    try:
        return storage.read_json(path)
    except storage.StorageError as exc:
        raise ReferenceNotFoundError(
            f"Version {version} of '{model}' has no readable model.json ({path}); its features are unknown."
        ) from exc


def reference_from_files(
    model: str, version: int, contract: dict[str, Any], statistics_dir: str | None, examples_dir: str | None
) -> TrainingReference:
    """A reference built from a validate ``statistics`` and an ingest ``examples`` directory (local).

    Raises:
        ReferenceNotFoundError: neither the TFDV statistics nor the train split exist.
    """
    features = {name: spec.get("kind", drift.NUMERIC) for name, spec in contract.get("features", {}).items()}
    reference = TrainingReference(
        model=model,
        version=version,
        features=features,
        label=contract.get("label", ""),
        label_vocabulary=[str(v) for v in contract.get("label_vocabulary", [])],
    )
    stats_path = os.path.join(statistics_dir or "", STATISTICS_FILE)
    if statistics_dir and os.path.isfile(stats_path):
        counts, buckets = read_tfdv_statistics(stats_path)
        reference.statistics_uri = statistics_dir
        reference.categorical_counts = {
            f: counts[f] for f, k in features.items() if k == drift.CATEGORICAL and f in counts
        }
        reference.quantile_buckets = {f: buckets[f] for f, k in features.items() if k == drift.NUMERIC and f in buckets}
        reference.label_counts = counts.get(reference.label, {})
    if examples_dir and _stream_train_split(reference, examples_dir):
        reference.examples_uri = examples_dir
    if reference.statistics_uri is None and reference.examples_uri is None:
        raise ReferenceNotFoundError(
            f"Neither the TFDV statistics ({statistics_dir or 'none'}) nor the train split ({examples_dir or 'none'}) "
            f"of '{model}' v{version} exist."
        )
    return reference


def _thin(values: np.ndarray) -> np.ndarray:
    """At most NUMERIC_POINTS evenly spaced order statistics of sorted ``values``."""
    if values.shape[0] <= NUMERIC_POINTS:
        return values
    return values[np.linspace(0, values.shape[0] - 1, NUMERIC_POINTS).round().astype(int)]


def _stream_train_split(reference: TrainingReference, examples_dir: str) -> bool:
    """Fills the numeric samples and missing counts from the train split, batch by batch; False when it is absent."""
    import zlib
    from collections import Counter

    import pandas as pd

    from flywheel.components import examples_io
    from flywheel.dsl.artifacts import Examples

    examples = Examples(uri=examples_dir)
    try:
        present = examples_io.split_columns(examples, "train")
    except FlywheelError:
        return False
    numeric = [f for f, kind in reference.features.items() if kind == drift.NUMERIC and f in present]
    counted = [f for f, kind in reference.features.items()
               if kind != drift.NUMERIC and f in present and f not in reference.categorical_counts]
    label = reference.label if not reference.label_counts and reference.label in present else None
    reservoirs = {f: Reservoir(NUMERIC_POINTS, [0, zlib.crc32(f.encode())]) for f in numeric}
    counts: dict[str, Counter] = {f: Counter() for f in [*counted, *([label] if label else [])]}
    wanted = list(dict.fromkeys([*numeric, *counts]))
    batches = examples_io.iter_split_batches(examples, "train", batch_rows=BATCH_ROWS, columns=wanted) if wanted else []
    for batch in batches:
        for feature in numeric:
            reservoirs[feature].add(drift.clean_numeric(pd.to_numeric(batch[feature], errors="coerce")))
        for feature, counter in counts.items():
            counter.update({str(k): v for k, v in drift.value_counts(batch[feature]).items()})
    for feature, reservoir in reservoirs.items():
        reference.numeric_sorted[feature] = reservoir.sorted()
        reference.numeric_rows[feature] = reservoir.seen
    for feature in counted:
        reference.categorical_counts[feature] = {k: float(v) for k, v in counts[feature].most_common()}
    if label:
        reference.label_counts = {k: float(v) for k, v in counts[label].most_common()}
    return True


def write_bundle(
    out_dir: str,
    contract: dict[str, Any],
    *,
    statistics_dir: str | None,
    examples_dir: str | None,
    schema_dir: str | None = None,
) -> dict[str, Any]:
    """Writes the reference bundle ``push`` stores in a version (layout: the module docstring).

    Returns:
        What ``reference.json`` holds.

    Raises:
        ReferenceNotFoundError: neither the statistics nor the train split exist.
    """
    reference = reference_from_files("", 0, contract, statistics_dir, examples_dir)
    os.makedirs(out_dir, exist_ok=True)
    document = {
        "features": reference.features,
        "label": reference.label,
        "label_vocabulary": reference.label_vocabulary,
        "categorical_counts": reference.categorical_counts,
        "label_counts": reference.label_counts,
        "quantile_buckets": {f: [e.tolist(), c.tolist()] for f, (e, c) in reference.quantile_buckets.items()},
        "statistics_uri": reference.statistics_uri,
        "examples_uri": reference.examples_uri,
        "numeric_points": {f: int(v.shape[0]) for f, v in reference.numeric_sorted.items()},
        "numeric_rows": reference.numeric_rows,
        "numeric_reference": reference.numeric_reference(),
    }
    np.savez_compressed(os.path.join(out_dir, NUMERIC_FILE), **{f: _thin(v) for f, v in reference.numeric_sorted.items()})
    if reference.statistics_uri:
        os.makedirs(os.path.join(out_dir, "statistics"))
        shutil.copy2(os.path.join(reference.statistics_uri, STATISTICS_FILE), os.path.join(out_dir, "statistics"))
    if schema_dir and os.path.isdir(schema_dir):
        shutil.copytree(schema_dir, os.path.join(out_dir, "schema"))
    with open(os.path.join(out_dir, BUNDLE_FILE), "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
    return document


def _from_bundle(registry: Any, model: str, version: int, document: dict[str, Any]) -> TrainingReference:
    numeric = np.load(io.BytesIO(storage.read_bytes(registry.version_file(model, version, f"{BUNDLE_DIR}/{NUMERIC_FILE}"))))
    where = registry.version_file(model, version, BUNDLE_DIR)
    return TrainingReference(
        model=model,
        version=version,
        features=dict(document["features"]),
        label=document.get("label", ""),
        label_vocabulary=[str(v) for v in document.get("label_vocabulary", [])],
        numeric_sorted={f: numeric[f] for f in numeric.files},
        # bundles written before streaming: numeric_points counted the train values (thinned to order statistics)
        numeric_rows={f: int(n) for f, n in document.get("numeric_rows", document.get("numeric_points", {})).items()},
        quantile_buckets={f: (np.array(e), np.array(c)) for f, (e, c) in document.get("quantile_buckets", {}).items()},
        categorical_counts=document.get("categorical_counts", {}),
        label_counts=document.get("label_counts", {}),
        statistics_uri=storage.join(where, "statistics") if document.get("statistics_uri") else None,
        examples_uri=storage.join(where, NUMERIC_FILE) if document.get("numeric_points") else None,
    )


def load_reference(registry: Any, home: Home | None, model: str, version: int) -> TrainingReference:
    """The training reference of ``model`` version ``version``: from the registry, else lineage.

    Raises:
        ReferenceNotFoundError: no model.json, no bundle and no lineage, or
            neither the TFDV statistics nor the train split exist any more.
    """
    bundle = registry.version_file(model, version, f"{BUNDLE_DIR}/{BUNDLE_FILE}")
    if storage.info(bundle) is not None:
        try:
            return _from_bundle(registry, model, version, storage.read_json(bundle))
        except (KeyError, TypeError, ValueError, OSError, storage.StorageError) as exc:  # damaged by hand or cut off
            raise ReferenceNotFoundError(
                f"The reference of '{model}' v{version} ({bundle}) cannot be read ({exc!r}); push that model again."
            ) from exc
    contract = _contract(registry, model, version)
    if home is None:
        raise ReferenceNotFoundError(
            f"Version {version} of '{model}' carries no reference ({bundle}) and no metadata store was given; "
            "push it again with this flywheel (push stores the reference in the version)."
        )
    source_uri = registry.version_info(model, version).get("source_uri", "")
    found = lineage_outputs(home, source_uri)
    try:
        return reference_from_files(model, version, contract, found.get("statistics"), found.get("examples"))
    except ReferenceNotFoundError as exc:
        raise ReferenceNotFoundError(f"{exc} (lineage found {found or 'nothing'})") from exc

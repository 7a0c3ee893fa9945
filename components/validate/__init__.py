"""The ``validate`` component: statistics, schema, anomalies, skew and drift (TFDV).

Per split of an Examples artifact it computes TFDV statistics (in memory for
small splits, on Apache Beam for large ones or when ``beam_args`` are given), infers
a schema from the train statistics (or takes a curated one), validates every
split against the schema, measures train/eval skew and drift against earlier
statistics, writes an offline HTML report, and fails the node when anomalies
are found (unless told not to), so a bad batch of data never reaches training.

Outputs:
    statistics: ``Split-<split>/FeatureStats.pb`` (DatasetFeatureStatisticsList).
    schema: ``schema.pbtxt`` (tensorflow_metadata Schema, text format).
    anomalies: ``anomalies.json`` (``{split|"skew"|"drift": {feature: description}}``)
        and ``drift_skew.json`` (``{"skew"|"drift": {feature: {type, value, threshold}}}``).
    report: ``index.html``.
"""

from __future__ import annotations

import json

from flywheel.dsl.artifacts import HTML, ExampleAnomalies, Examples, ExampleStatistics, Schema
from flywheel.dsl.component import Input, Output, component
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components.examples_io import read_split, split_names
from flywheel.components.examples_io import split_columns as split_columns_of

ANOMALIES_FILE = "anomalies.json"
MEASUREMENTS_FILE = "drift_skew.json"
REPORT_FILE = "index.html"


class DataValidationError(FlywheelError):
    """Examples do not pass validation against their schema (or drift/skew limits)."""


# isolated: TFDV brings Beam, tfx-bsl and their clients (~80 MB); no later node needs them, so the
# worker that ran validate exits and the rest of the run starts in a fresh one (benchmarks/pipeline_e2e.py),
# forked from the run's warm parent with TensorFlow already imported (flywheel/runner/warm.py).
@component(version="1", isolated=True, reads=("schema_path",), retries=2, retry_backoff_s=10,
           resources={"cpu": "1", "memory": "2Gi", "memory_limit": "4Gi"})
def validate(
    examples: Input[Examples],
    statistics: Output[ExampleStatistics],
    schema: Output[Schema],
    anomalies: Output[ExampleAnomalies],
    report: Output[HTML],
    curated_schema: Input[Schema] = None,
    previous_statistics: Input[ExampleStatistics] = None,
    schema_path: str = "",
    fail_on_anomalies: bool = True,
    skew_threshold: float = 0.2,
    drift_threshold: float = 0.1,
    severity: dict = {},  # noqa: B006 - component defaults are recorded, never mutated
    beam_args: list = [],  # noqa: B006
) -> None:
    """Computes statistics, checks examples against a schema, and fails on blocking anomalies.

    Args:
        examples: Examples written by ingest (``Split-<name>/`` Parquet shards).
        statistics: Output; per-split statistics, property ``split_names``.
        schema: Output; the schema used, property ``source`` ("inferred"/"curated").
        anomalies: Output; properties ``anomaly_count``, ``anomalous_features``,
            ``blocking_count``, ``warning_count``, ``severity`` ({scope: {feature:
            {severity, kinds}}}).
        report: Output; ``index.html`` to browse statistics and anomalies.
        curated_schema: A Schema artifact that replaces the inferred schema (for
            example ``latest(Schema, task="validate", output="schema")``).
        previous_statistics: Statistics of earlier data; drift of the train split
            is measured against its train split.
        schema_path: A ``schema.pbtxt`` file that replaces the inferred schema.
        fail_on_anomalies: Raise ``DataValidationError`` when a blocking anomaly
            is found (outputs are written first, for debugging); False records all.
        skew_threshold: Train/eval skew limit (L-infinity distance for categorical
            features, Jensen-Shannon divergence for numeric ones); 0 turns it off.
            The default leaves room for the sampling noise of small eval splits.
        drift_threshold: Drift limit against ``previous_statistics``, same
            measures; 0 turns it off. Comparators set in a curated schema win.
        severity: Anomaly kind -> "error" (blocks) or "warning" (recorded), over
            the defaults of ``validate/severity.py``: a missing or retyped column,
            and values outside a ``schema_path`` domain, block; unseen rare
            categories, a column empty in one split, skew and drift are recorded.
            Kinds are TFDV ``AnomalyInfo.Type`` names, or "skew" / "drift".
        beam_args: Apache Beam options for the statistics pipeline, passed to
            ``PipelineOptions`` unchanged (as TFX's ``beam_pipeline_args``), e.g.
            ``["--runner=FlinkRunner", "--flink_master=host:8081"]``. Given, every
            split's statistics run on Beam (TFDV's ``GenerateStatistics`` over the
            Parquet shards); [] runs splits above ``data.beam.BEAM_MIN_ROWS``
            rows on the DirectRunner in this process and smaller ones in memory.
            A parameter of the training pipeline, shared with transform.

    Raises:
        ParameterError: a threshold is negative, both a curated schema and
            ``schema_path`` are given, or ``beam_args`` is not a list of ``--`` options.
        DataValidationError: blocking anomalies were found and ``fail_on_anomalies`` is set.
    """
    from flywheel.components.data import beam as beam_options

    from . import beam
    from . import report as html_report
    from . import severity as severities
    from . import tfdv as tfdv_io

    overrides = severities.check_overrides(dict(severity))
    beam_args = beam_options.check_beam_args(beam_args, "validate")
    for name, value in (("skew_threshold", skew_threshold), ("drift_threshold", drift_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ParameterError(
                f"The '{name}' parameter of validate must be a float >= 0 (0 turns the check off). "
                f"Got {value!r} instead."
            )
    if curated_schema is not None and schema_path:
        raise ParameterError(
            "validate takes a curated schema either as the 'curated_schema' input or as the "
            f"'schema_path' parameter, not both. Got curated_schema={curated_schema.uri!r} and "
            f"schema_path={schema_path!r}."
        )
    splits = split_names(examples)
    if not splits:
        raise FlywheelError(f"Examples at {examples.uri} hold no Split-<name> directories; run ingest first.")

    split_stats = {}
    split_columns: dict[str, set[str]] = {}
    for split in splits:
        split_columns[split] = set(split_columns_of(examples, split))
        if beam_options.use_beam(examples, split, beam_args):
            split_stats[split] = beam.compute_statistics(examples, split, beam_args)
        else:
            split_stats[split] = tfdv_io.compute_statistics(read_split(examples, split), split)
        tfdv_io.write_statistics(statistics, split, split_stats[split])
    statistics.properties["split_names"] = list(splits)

    if schema_path or curated_schema is not None:
        source = "curated"
        the_schema = tfdv_io.load_schema(schema_path or curated_schema.path(tfdv_io.SCHEMA_FILE))
    else:
        source = "inferred"
        base = split_stats.get("train", split_stats[splits[0]])
        the_schema = tfdv_io.infer_schema(base, str(examples.properties.get("label") or ""))
    tfdv_io.write_schema(schema, the_schema)
    schema.properties.update({"source": source, "features": [f.name for f in the_schema.feature]})

    previous = tfdv_io.load_statistics(previous_statistics) if previous_statistics is not None else None
    checked = tfdv_io.with_comparators(the_schema, skew_threshold, drift_threshold)
    kinds: dict[str, dict[str, list[str]]] = {}
    found, measurements = tfdv_io.find_anomalies(split_stats, checked, previous, kinds)
    graded = severities.classify(
        kinds, overrides=overrides, curated_domain=bool(schema_path), split_columns=split_columns
    )

    with open(anomalies.path(ANOMALIES_FILE), "w", encoding="utf-8") as fh:
        json.dump(found, fh, indent=2, sort_keys=True)
    with open(anomalies.path(MEASUREMENTS_FILE), "w", encoding="utf-8") as fh:
        json.dump(measurements, fh, indent=2, sort_keys=True)
    listed = [(feature, scope, text) for scope, by_feature in found.items() for feature, text in by_feature.items()]
    blocking = [
        (feature, scope, text)
        for feature, scope, text in listed
        if graded.get(scope, {}).get(feature, {}).get("severity", severities.ERROR) == severities.ERROR
    ]
    anomalies.properties.update(
        {
            "anomaly_count": len(listed),
            "anomalous_features": sorted({feature for feature, _, _ in listed}),
            "schema_source": source,
            "blocking_count": len(blocking),
            "warning_count": len(listed) - len(blocking),
            "severity": graded,
        }
    )
    with open(report.path(REPORT_FILE), "w", encoding="utf-8") as fh:
        fh.write(
            html_report.render_report(
                split_stats=split_stats,
                anomalies=found,
                measurements=measurements,
                schema_source=source,
                examples_uri=examples.uri,
                severity=graded,
            )
        )

    if blocking and fail_on_anomalies:
        details = "; ".join(f"'{feature}' ({scope}): {text.rstrip('.')}" for feature, scope, text in blocking)
        raise DataValidationError(
            f"Data validation found {len(blocking)} blocking {'anomaly' if len(blocking) == 1 else 'anomalies'}"
            f"{f' (and {len(listed) - len(blocking)} recorded as warnings)' if len(listed) > len(blocking) else ''}: "
            f"{details}. Fix the data, update the schema (passed as curated_schema or schema_path), record "
            "this kind as a warning (severity={KIND: 'warning'}), or set fail_on_anomalies=False. "
            f"Details: {anomalies.path(ANOMALIES_FILE)}, report: {report.path(REPORT_FILE)}."
        )

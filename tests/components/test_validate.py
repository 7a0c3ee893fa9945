"""Tests of the validate component (TFDV): statistics, schema, anomalies, skew/drift, report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import palmerpenguins
import pytest

from flywheel.components.examples_io import read_split, write_split
from flywheel.components.ingest import ingest
from flywheel.components.validate import DataValidationError, validate
from flywheel.dsl.artifacts import HTML, ExampleAnomalies, Examples, ExampleStatistics, Schema
from flywheel.errors import ParameterError


def _examples(new_artifact, name: str, frame: pd.DataFrame | None = None, tmp_path=None) -> Examples:
    examples = new_artifact(Examples, name)
    if frame is None:
        ingest(examples=examples)
    else:
        path = tmp_path / f"{name}.csv"
        frame.to_csv(path, index=False)
        ingest(examples=examples, path=str(path), label="species")
    return examples


def _validate(new_artifact, name: str, examples: Examples, **params) -> dict:
    outputs = {
        "statistics": new_artifact(ExampleStatistics, f"{name}-statistics"),
        "schema": new_artifact(Schema, f"{name}-schema"),
        "anomalies": new_artifact(ExampleAnomalies, f"{name}-anomalies"),
        "report": new_artifact(HTML, f"{name}-report"),
    }
    outputs["error"] = None
    try:
        validate(examples=examples, **{k: v for k, v in outputs.items() if k != "error"}, **params)
    except DataValidationError as exc:
        outputs["error"] = str(exc)
    outputs["found"] = json.loads(Path(outputs["anomalies"].path("anomalies.json")).read_text())
    outputs["measured"] = json.loads(Path(outputs["anomalies"].path("drift_skew.json")).read_text())
    return outputs


def _read_stats(statistics: ExampleStatistics, split: str):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb"), "rb") as fh:
        stats.ParseFromString(fh.read())
    return stats


def test_penguins_get_statistics_schema_and_report_and_the_same_data_twice_passes(new_artifact):
    examples = _examples(new_artifact, "penguins")
    first = _validate(new_artifact, "first", examples)

    assert first["error"] is None
    assert first["statistics"].properties["split_names"] == ["train", "eval"]
    counts = examples.properties["row_counts"]
    for split in ("train", "eval"):
        dataset = _read_stats(first["statistics"], split).datasets[0]
        assert dataset.num_examples == counts[split]
        assert {f.path.step[0] for f in dataset.features} == set(examples.properties["columns"])
    schema_text = Path(first["schema"].path("schema.pbtxt")).read_text()
    assert first["schema"].properties["source"] == "inferred"
    assert 'name: "body_mass_g"' in schema_text and 'not_in_environment: "SERVING"' in schema_text
    assert first["anomalies"].properties["anomaly_count"] == 0
    assert first["found"] == {"train": {}, "eval": {}, "skew": {}, "drift": {}}
    assert set(first["measured"]["skew"]) == set(examples.properties["columns"])

    report = Path(first["report"].path("index.html")).read_text()
    train = read_split(examples, "train")
    assert "Split train" in report and "Split eval" in report and "No anomalies." in report
    assert f"{train['body_mass_g'].mean():.4g}" in report
    assert "Adelie" in report and "http" not in report

    second = _validate(
        new_artifact, "second", examples, curated_schema=first["schema"], previous_statistics=first["statistics"]
    )
    assert second["error"] is None
    assert second["schema"].properties["source"] == "curated"
    assert second["anomalies"].properties["anomaly_count"] == 0
    assert all(m["value"] == 0 for m in second["measured"]["drift"].values())


def test_missing_column_and_wrong_type_fail_the_node_naming_each_feature(tmp_path, new_artifact):
    good = _validate(new_artifact, "good", _examples(new_artifact, "good"))
    broken = palmerpenguins.load_penguins().drop(columns=["island"])
    broken["body_mass_g"] = broken["body_mass_g"].astype(str).str.replace(".0", " g", regex=False)
    broken_examples = _examples(new_artifact, "bad", broken, tmp_path)
    bad = _validate(new_artifact, "bad", broken_examples, curated_schema=good["schema"])

    assert bad["error"] is not None
    assert bad["error"].startswith("Data validation found 4 blocking anomalies: ")
    assert "'island' (train): Column dropped" in bad["error"]
    assert "'body_mass_g' (eval): Unexpected data type" in bad["error"]
    for split in ("train", "eval"):
        assert set(bad["found"][split]) == {"island", "body_mass_g"}
    assert bad["anomalies"].properties["anomaly_count"] == 4
    assert bad["anomalies"].properties["anomalous_features"] == ["body_mass_g", "island"]
    # The outputs stay useful for debugging although the node fails.
    assert "Column dropped" in Path(bad["report"].path("index.html")).read_text()
    assert os.path.isfile(os.path.join(bad["statistics"].uri, "Split-eval", "FeatureStats.pb"))

    relaxed = _validate(
        new_artifact, "relaxed", broken_examples, curated_schema=good["schema"], fail_on_anomalies=False
    )
    assert relaxed["error"] is None and relaxed["anomalies"].properties["anomaly_count"] == 4


def _sample(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "weight": rng.normal(50.0 + shift, 5.0, size=rows).round(2),
            "kind": rng.choice(["a", "b", "c"], p=[0.5, 0.3, 0.2], size=rows),
            "species": rng.choice(["x", "y"], size=rows),
        }
    )


def test_shifted_numeric_feature_drifts_while_a_same_distribution_sample_does_not(tmp_path, new_artifact):
    base = _validate(new_artifact, "base", _examples(new_artifact, "base", _sample(1500, seed=1), tmp_path))
    against_base = {"curated_schema": base["schema"], "previous_statistics": base["statistics"]}

    same = _validate(new_artifact, "same", _examples(new_artifact, "same", _sample(1500, seed=2), tmp_path), **against_base)
    drift = same["measured"]["drift"]["weight"]
    assert drift["type"] == "JENSEN_SHANNON_DIVERGENCE" and 0 < drift["value"] < drift["threshold"] == 0.1
    assert same["measured"]["drift"]["kind"]["type"] == "L_INFTY"
    assert same["found"]["drift"] == {} and same["error"] is None

    shifted_data = _sample(1500, seed=2, shift=8.0)
    shifted_examples = _examples(new_artifact, "shifted", shifted_data, tmp_path)
    recorded = _validate(new_artifact, "recorded", shifted_examples, **against_base)
    assert recorded["measured"]["drift"]["weight"]["value"] > 0.1
    assert set(recorded["found"]["drift"]) == {"weight"}
    assert "Jensen-Shannon divergence between current and previous" in recorded["found"]["drift"]["weight"]
    assert recorded["error"] is None  # drift is recorded, not blocking, by default
    assert recorded["anomalies"].properties["severity"] == {
        "drift": {"weight": {"severity": "warning", "kinds": ["COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"]}}
    }
    assert recorded["anomalies"].properties["warning_count"] == 1
    shifted = _validate(new_artifact, "shifted", shifted_examples, severity={"drift": "error"}, **against_base)
    assert "'weight' (drift)" in shifted["error"]
    assert shifted["anomalies"].properties["anomalous_features"] == ["weight"]
    assert shifted["anomalies"].properties["blocking_count"] == 1


def test_curated_schema_file_wins_over_inference(tmp_path, new_artifact):
    examples = _examples(new_artifact, "penguins")
    inferred = _validate(new_artifact, "inferred", examples)
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(Path(inferred["schema"].path("schema.pbtxt")).read_text(), schema_pb2.Schema())
    # Curate: 'sex' must always be present (11 penguins lack it).
    next(f for f in schema.feature if f.name == "sex").presence.min_fraction = 1.0
    path = tmp_path / "curated.pbtxt"
    path.write_text(text_format.MessageToString(schema))

    result = _validate(new_artifact, "curated", examples, schema_path=str(path), fail_on_anomalies=False)
    assert inferred["anomalies"].properties["anomaly_count"] == 0
    assert result["schema"].properties["source"] == "curated"
    assert "sex" in result["anomalies"].properties["anomalous_features"]
    assert "min_fraction: 1.0" in Path(result["schema"].path("schema.pbtxt")).read_text().split('name: "sex"')[1]


def test_report_escapes_feature_names_and_values(tmp_path, new_artifact):
    frame = pd.DataFrame(
        {"<b>odd</b>": [f"<i>{i % 3}</i>" for i in range(40)], "x": range(40), "species": ["a", "b"] * 20}
    )
    # ingest refuses such a column name now; Examples written by a user's own component may still hold one
    examples = new_artifact(Examples, "escape")
    write_split(examples, "train", frame.iloc[:30])
    write_split(examples, "eval", frame.iloc[30:])
    examples.properties["label"] = "species"
    result = _validate(new_artifact, "escape", examples)
    report = Path(result["report"].path("index.html")).read_text()
    assert "&lt;b&gt;odd&lt;/b&gt;" in report and "&lt;i&gt;1&lt;/i&gt;" in report
    assert "<b>odd" not in report and "<i>" not in report


def test_bad_parameters_are_rejected(new_artifact):
    examples = _examples(new_artifact, "penguins")
    with pytest.raises(ParameterError, match="'drift_threshold' parameter of validate must be a float >= 0"):
        _validate(new_artifact, "negative", examples, drift_threshold=-0.5)
    with pytest.raises(ParameterError, match="not both"):
        _validate(new_artifact, "both", examples, schema_path="x.pbtxt", curated_schema=Schema(uri="/nowhere"))


def test_tfdv_is_imported_without_beams_cloud_clients_which_stay_importable():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from flywheel.components.validate.tfdv import tfdv_module\n"
        "tfdv = tfdv_module()\n"
        "assert tfdv.generate_statistics_from_dataframe is not None\n"
        "assert 'apache_beam.io.gcp.bigquery' not in sys.modules, 'BigQuery IO was imported'\n"
        "assert 'google.cloud.bigquery' not in sys.modules\n"
        "import apache_beam.io.gcp.bigquery\n"  # nothing stays blocked
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_a_random_split_of_heavy_tailed_data_shows_no_skew(tmp_path, new_artifact):
    # Two halves of one hash split: TFDV's default (equal-width) histogram measured JS ~0.5 here.
    rng = np.random.default_rng(7)
    rows = 20_000
    frame = pd.DataFrame(
        {
            "distance_km": ((rng.pareto(1.1, rows) + 1.0) * 2.0).round(3),
            "amount": rng.lognormal(3.0, 1.2, rows).round(2),
            "species": rng.choice(["a", "b"], size=rows),
        }
    )
    result = _validate(new_artifact, "heavy", _examples(new_artifact, "heavy", frame, tmp_path))
    skew = result["measured"]["skew"]
    assert skew["distance_km"]["type"] == "JENSEN_SHANNON_DIVERGENCE"
    assert skew["distance_km"]["value"] < 0.1 and skew["amount"]["value"] < 0.1
    assert result["found"]["skew"] == {} and result["error"] is None


def test_unseen_rare_categories_and_a_column_empty_in_eval_are_recorded_not_blocking(tmp_path, new_artifact):
    rng = np.random.default_rng(3)
    rows = 3000
    kind = rng.choice(["a", "b", "c"], size=rows).astype(object)
    frame = pd.DataFrame({"kind": kind, "x": rng.normal(size=rows), "species": rng.choice(["x", "y"], size=rows)})
    examples = _examples(new_artifact, "base", frame, tmp_path)
    first = _validate(new_artifact, "first", examples)
    later = frame.copy()
    later.loc[:4, "kind"] = [f"rare-{i}" for i in range(5)]  # five values the schema never saw
    later["note"] = None
    later.loc[: rows // 2, "note"] = "filled"
    later_examples = _examples(new_artifact, "later", later, tmp_path)
    graded = _validate(new_artifact, "later", later_examples, curated_schema=first["schema"])
    assert graded["error"] is None
    kinds = graded["anomalies"].properties["severity"]
    assert kinds["train"]["kind"] == {"severity": "warning", "kinds": ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]}
    assert graded["anomalies"].properties["blocking_count"] == 0 and graded["anomalies"].properties["warning_count"] >= 1
    assert ">warning<" in Path(graded["report"].path("index.html")).read_text()

    strict = _validate(new_artifact, "strict", later_examples, curated_schema=first["schema"],
                       severity={"ENUM_TYPE_UNEXPECTED_STRING_VALUES": "error"})
    assert "1 blocking anomaly" in strict["error"] and "'kind' (train)" in strict["error"]
    with pytest.raises(ParameterError, match="'severity' parameter of validate"):
        _validate(new_artifact, "bad-severity", later_examples, severity={"skew": "fatal"})


def test_a_column_missing_blocks_but_one_present_and_empty_in_a_split_is_recorded():
    from flywheel.components.validate.severity import classify

    kinds = {"eval": {"notes": ["SCHEMA_MISSING_COLUMN"], "island": ["SCHEMA_MISSING_COLUMN"]},
             "train": {"mass": ["FLOAT_TYPE_STRING_NOT_FLOAT"]}, "skew": {"mass": ["COMPARATOR_L_INFTY_HIGH"]}}
    graded = classify(kinds, overrides={}, curated_domain=False, split_columns={"eval": {"notes", "mass"}})
    assert graded["eval"]["notes"] == {"severity": "warning", "kinds": ["COLUMN_EMPTY_IN_SPLIT"]}
    assert graded["eval"]["island"]["severity"] == "error"
    assert graded["train"]["mass"]["severity"] == "error" and graded["skew"]["mass"]["severity"] == "warning"
    relaxed = classify(kinds, overrides={"SCHEMA_MISSING_COLUMN": "warning"}, curated_domain=False, split_columns={})
    assert relaxed["eval"]["island"]["severity"] == "warning"

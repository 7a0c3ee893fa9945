"""The explain component end to end from its pipeline files through LocalRunner, in small configs."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from flywheel.components.explain import TableCodec, explain
from flywheel.dsl.artifacts import HTML
from flywheel.errors import FlywheelError, ParameterError
from flywheel.component_call import call_component
from flywheel.pipeline_file import load_pipeline
from flywheel.runner import LocalRunner
from tests.conftest import REPO


def _run(home, name, params):
    result = LocalRunner(home, max_workers=2).run(load_pipeline(os.path.join(REPO, "pipelines", name)), params)
    assert result.ok, result.errors
    return result


def _report(result) -> tuple[HTML, dict, str]:
    report = result.outputs["explain"]["report"]
    with open(os.path.join(report.uri, "explanations.json"), encoding="utf-8") as handle:
        document = json.load(handle)
    with open(os.path.join(report.uri, "index.html"), encoding="utf-8") as handle:
        page = handle.read()
    return report, document, page


def test_penguins_pipeline_explains_with_additive_shap_and_faithful_deletions(home):
    result = _run(home, "explain.py", {"epochs": 30, "rows": 8, "background_size": 10, "lime_samples": 200})
    report, document, page = _report(result)
    shap, lime = report.properties["shap"], report.properties["lime"]
    assert report.properties["rows_explained"] == 8 and len(document["rows"]) == 8
    assert shap["additive_within_1e-4"] and shap["max_additivity_error"] < 1e-4
    for row in document["rows"]:  # per prediction: values + base value = output
        assert abs(sum(row["shap"].values()) + row["shap_base_value"] - row["probability"]) < 1e-4
    assert shap["deletion_top_k_change"] > 1.5 * shap["deletion_random_change"]
    assert lime["deletion_top_k_change"] > lime["deletion_random_change"]
    assert 0.0 < lime["mean_r2"] <= 1.0
    importance = shap["global_importance"]
    assert set(importance) >= {"bill_length_mm", "island", "sex"}
    assert max(importance, key=importance.get) != "year"  # the year says nothing about the species
    for png in ("shap_global.png", "per_prediction.png"):
        assert os.path.getsize(os.path.join(report.uri, png)) > 5000 and f'src="{png}"' in page
    assert "Faithfulness" in page and "<script" not in page


def test_digits_pipeline_grad_cam_and_lime_beat_a_random_map(home):
    result = _run(home, "explain_digits.py", {"epochs": 6, "rows": 24, "lime_samples": 150, "grad_cam_layer": "conv_0"})
    report, document, page = _report(result)
    summary = report.properties
    assert summary["images_explained"] == 24 and summary["grad_cam"]["layer"] == "conv_0"
    noise = summary["random_map"]
    for name in ("grad_cam", "lime_image"):
        measured = summary[name]
        assert measured["mass_on_ink"] > summary["ink_share_of_area"], name
        assert measured["deletion_auc"] < noise["deletion_auc"], name
        assert measured["insertion_auc"] > noise["insertion_auc"], name
    assert abs(noise["mass_on_ink"] - summary["ink_share_of_area"]) < 0.08
    assert summary["lime_image"]["mean_r2"] > 0.2
    for png in ("heat_maps.png", "deletion_insertion.png"):
        assert os.path.getsize(os.path.join(report.uri, png)) > 5000 and f'src="{png}"' in page


def test_table_codec_round_trips_raw_features():
    spec = {
        "numeric_features": ["x"],
        "categorical_features": ["c"],
        "features": {"x": {"mean": 2.5}, "c": {"vocabulary": ["a", "b"]}},
    }
    codec = TableCodec(spec)
    matrix = codec.encode(pd.DataFrame({"x": [1.0, None], "c": ["b", None]}))
    assert matrix.tolist() == [[1.0, 1.0], [2.5, 2.0]]
    raw = codec.decode(matrix)
    assert raw["x"].tolist() == [1.0, 2.5] and raw["c"].tolist() == ["b", ""]


def test_bad_parameters_and_a_model_without_its_contract_are_refused(tmp_path):
    from flywheel.dsl.artifacts import Examples, Model

    model = tmp_path / "model"
    model.mkdir()
    artifacts = {"examples": Examples(uri=str(tmp_path / "ex")), "model": Model(uri=str(model))}
    with pytest.raises(ParameterError, match="The 'rows' parameter of explain must be an int in \\[1, inf\\). Got 0 instead."):
        call_component(explain, artifacts, {"report": HTML(uri=str(tmp_path / "r"))}, {"rows": 0})
    with pytest.raises(FlywheelError, match="model.json"):
        call_component(
            explain, {"examples": Examples(uri=str(tmp_path / "ex")), "model": Model(uri=str(model))},
            {"report": HTML(uri=str(tmp_path / "r2"))}, {},
        )

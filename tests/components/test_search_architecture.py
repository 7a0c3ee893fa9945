"""search_architecture end to end: from the pipeline file through LocalRunner, in a tiny config."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from flywheel.components import examples_io
from flywheel.models import features
from flywheel.models import layers as model_layers
from flywheel.components.search_architecture import search_architecture
from flywheel.dsl.artifacts import HTML, Examples, Model, TransformGraph
from flywheel.errors import FlywheelError, ParameterError
from flywheel.component_call import call_component
from flywheel.pipeline_file import load_pipeline
from flywheel.runner import LocalRunner
from tests.conftest import REPO

TINY_SPACE = {
    "kinds": ["cnn", "mlp"], "stages": [1], "layers_per_stage": [1], "widths": [4, 8], "kernel_sizes": [3],
    "skip": [False], "dense_units": [0], "mlp_layers": [1], "mlp_units": [16, 32],
}


def test_pipeline_searches_trains_evaluates_and_pushes_the_best_architecture(home, tmp_path):
    import tensorflow as tf

    params = {
        "search_space": TINY_SPACE, "strategy": "evolution", "n_trials": 3, "population_size": 2, "sample_size": 2,
        "search_epochs": 2, "final_epochs": 6, "thresholds": {"accuracy": 0.8}, "registry": str(tmp_path / "registry"),
    }
    result = LocalRunner(home, max_workers=2).run(load_pipeline(os.path.join(REPO, "pipelines", "architecture_search.py")), params)
    assert result.ok, result.errors
    assert set(result.states) == {"ingest", "transform", "search_architecture", "evaluate", "push"}

    report = result.outputs["search_architecture"]["report"]
    with open(os.path.join(report.uri, "candidates.json"), encoding="utf-8") as handle:
        document = json.load(handle)
    candidates, summary = document["candidates"], document["summary"]
    assert len(candidates) == 3 and summary["stopped_by"] == "trials"
    best = max(range(3), key=lambda i: candidates[i]["score"])
    assert summary["best_index"] == best and candidates[best]["best"]
    assert candidates[best]["pareto_params"]  # the best score is never dominated in (accuracy, params)
    assert os.path.getsize(os.path.join(report.uri, "pareto.png")) > 5000
    with open(os.path.join(report.uri, "index.html"), encoding="utf-8") as handle:
        page = handle.read()
    assert candidates[best]["name"] in page and 'src="pareto.png"' in page

    model = result.outputs["search_architecture"]["model"]
    assert model.properties["architecture"] == summary["best_architecture"]
    net = model_layers.load_model(os.path.join(model.uri, features.MODEL_FILE))  # safe_mode=True
    assert net.count_params() == model.properties["parameters"]
    examples = Examples(uri=result.outputs["ingest"]["examples"].uri, properties=result.outputs["ingest"]["examples"].properties)
    pixels, frame = examples_io.read_images(examples, "eval")
    proba = np.asarray(net.predict(pixels.astype("float32"), verbose=0))
    accuracy = float((proba.argmax(1) == frame["label"].astype(int).to_numpy()).mean())
    serve = tf.saved_model.load(os.path.join(model.uri, features.SERVING_DIR)).signatures["serving_default"]
    assert np.allclose(serve(image=tf.constant(pixels[:4].astype("float32")))["probabilities"].numpy(), proba[:4], atol=1e-5)

    evaluation = result.outputs["evaluate"]["evaluation"]
    with open(os.path.join(evaluation.uri, "evaluation.json"), encoding="utf-8") as handle:
        overall = json.load(handle)["overall"]
    assert overall["accuracy"] == pytest.approx(accuracy, abs=1e-9) and accuracy >= 0.8
    assert result.outputs["evaluate"]["blessing"].properties["blessed"] is True
    assert result.outputs["push"]["pushed_model"].properties["pushed"] is True


def test_tables_and_bad_parameters_are_refused(tmp_path):
    from flywheel.components.transform import transform
    from tests.components.model_fixtures import penguin_examples

    examples = penguin_examples(str(tmp_path / "ex"))
    graph = TransformGraph(uri=str(tmp_path / "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    outputs = {"model": Model(uri=str(tmp_path / "m")), "report": HTML(uri=str(tmp_path / "r"))}
    with pytest.raises(FlywheelError, match="is for tables; architecture search and scaling need image Examples"):
        search_architecture(examples=examples, transform_graph=graph, **_made(outputs))
    with pytest.raises(ParameterError, match=r"The 'max_params' parameter of search_architecture must be >= 0 \(0: no limit\)\. Got -1 instead\."):
        search_architecture(examples=examples, transform_graph=graph, max_params=-1, **_made(outputs))


def _made(outputs: dict) -> dict:
    for artifact in outputs.values():
        os.makedirs(artifact.uri, exist_ok=True)
    return outputs


def test_compound_scaling_pipeline_writes_a_scaled_model_that_serves_raw_pixels(home, tmp_path):
    import tensorflow as tf

    base = {"kind": "cnn", "stages": [[8]], "kernel_size": 3, "skip": False, "dense_units": []}
    params = {
        "base": base, "phi": 1.0, "grid_values": [1.0, 1.4, 2.0], "search_epochs": 2, "final_epochs": 5,
        "thresholds": {"accuracy": 0.7}, "registry": str(tmp_path / "registry"),
    }
    result = LocalRunner(home, max_workers=2).run(load_pipeline(os.path.join(REPO, "pipelines", "compound_scaling.py")), params)
    assert result.ok, result.errors

    report = result.outputs["scale_model"]["report"]
    with open(os.path.join(report.uri, "scaling.json"), encoding="utf-8") as handle:
        document = json.load(handle)
    grid, chosen, comparison = document["grid"], document["chosen"], document["comparison"]
    assert {(g["alpha"], g["beta"], g["gamma"]) for g in grid} == {(2.0, 1.0, 1.0), (1.0, 1.4, 1.0), (1.0, 1.0, 1.4)}
    best = min(grid, key=lambda g: (-g["val_accuracy"], g["flops"]))  # best validation accuracy, ties: fewer FLOPs
    assert (chosen["alpha"], chosen["beta"], chosen["gamma"]) == (best["alpha"], best["beta"], best["gamma"])
    assert abs(chosen["alpha"] * chosen["beta"] ** 2 * chosen["gamma"] ** 2 - 2.0) <= 0.1
    assert [r["method"] for r in comparison] == ["baseline", "compound", "depth", "width", "resolution"]
    assert os.path.getsize(os.path.join(report.uri, "scaling.png")) > 5000

    model = result.outputs["scale_model"]["model"]
    assert model.properties["architecture"] == chosen["architecture"]
    net = model_layers.load_model(os.path.join(model.uri, features.MODEL_FILE))  # safe_mode=True
    assert net.input_shape == (None, 8, 8, 1)
    assert net.count_params() - model.properties["parameters"] == 0
    resized = [layer for layer in net.layers if layer.__class__.__name__ == "Resizing"]
    assert len(resized) == (chosen["architecture"]["resolution"] != 8)
    examples = Examples(uri=result.outputs["ingest"]["examples"].uri, properties=result.outputs["ingest"]["examples"].properties)
    pixels, _ = examples_io.read_images(examples, "eval")
    serve = tf.saved_model.load(os.path.join(model.uri, features.SERVING_DIR)).signatures["serving_default"]
    served = serve(image=tf.constant(pixels[:4].astype("float32")))["probabilities"].numpy()
    assert np.allclose(served, np.asarray(net.predict(pixels[:4].astype("float32"), verbose=0)), atol=1e-5)
    assert result.outputs["evaluate"]["blessing"].properties["blessed"] is True

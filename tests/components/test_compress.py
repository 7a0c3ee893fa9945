"""compress and gate_compression on real models: digits CNN and penguin MLP, in small configs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from flywheel.models import layers as model_layers
from flywheel.models import features
from flywheel.components.compress import compress, gate_compression
from flywheel.components.evaluate import evaluate
from flywheel.components.ingest import ingest
from flywheel.components.push import push
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import HTML, ClassificationMetrics, Examples, Markdown, Model, ModelBlessing, ModelEvaluation, PushedModel, TransformGraph
from flywheel.errors import ParameterError
from flywheel.component_call import call_component
from flywheel.pipeline_file import load_pipeline
from flywheel.runner import LocalRunner
from flywheel.techniques.compression import read_compressed
from tests.conftest import REPO
from tests.components.model_fixtures import penguin_examples

SMALL = {"fine_tune_epochs": 1, "pruning_steps": 1, "latency_batch": 32, "latency_repeats": 3}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    examples, graph, model = Examples(uri=str(root / "ex")), TransformGraph(uri=str(root / "tg")), Model(uri=str(root / "m"))
    call_component(ingest, {}, {"examples": examples}, {"path": "sklearn-digits"})
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    call_component(
        train, {"examples": examples, "transform_graph": graph}, {"model": model},
        {"conv_widths": [8, 16], "hidden_units": [32], "epochs": 8, "learning_rate": 0.01, "dropout": 0.0},
    )
    return root, examples, model


def _compress(root, examples, model, name, **params):
    out, report = Model(uri=str(root / name)), HTML(uri=str(root / f"{name}-report"))
    call_component(compress, {"model": model, "examples": examples}, {"compressed": out, "report": report}, {**SMALL, **params})
    return out, report


def _gate(root, examples, compressed, name, max_accuracy_drop, threshold=0.5):
    evaluation = [ModelEvaluation(uri=str(root / f"{name}-ev")), ModelBlessing(uri=str(root / f"{name}-bl")),
                  ClassificationMetrics(uri=str(root / f"{name}-mt")), Markdown(uri=str(root / f"{name}-md"))]
    call_component(
        evaluate, {"examples": examples, "model": compressed},
        {"evaluation": evaluation[0], "blessing": evaluation[1], "metrics": evaluation[2], "summary": evaluation[3]},
        {"slice_features": [], "thresholds": {"accuracy": threshold}, "registry": str(root / "registry"), "model_name": name},
    )
    gated = ModelBlessing(uri=str(root / f"{name}-gated"))
    call_component(gate_compression, {"blessing": evaluation[1], "compressed": compressed}, {"gated": gated},
                   {"max_accuracy_drop": max_accuracy_drop})
    return evaluation[1], gated


def test_compressed_digits_model_decodes_to_the_served_model_and_reports_every_stage(digits):
    root, examples, model = digits
    out, report = _compress(root, examples, model, "c", sparsity=0.8, bits=4, quantize_int8=False)
    served = model_layers.load_model(out.path(features.MODEL_FILE))
    decoded = read_compressed(out.path("model.fwz"))
    pixels = np.random.RandomState(0).uniform(0, 16, size=(20, 8, 8, 1)).astype("float32")
    assert np.array_equal(decoded.predict(pixels, verbose=0), served.predict(pixels, verbose=0))
    document = json.loads(open(out.path("report.json")).read())
    stages = {row["stage"]: row for row in document["stages"]}
    assert list(stages) == ["original", "pruned", "shared", "huffman"]
    assert stages["original"]["nonzero_parameters"] > 0.99 * stages["original"]["parameters"]
    assert stages["pruned"]["nonzero_parameters"] < 0.35 * stages["original"]["parameters"]
    assert stages["huffman"]["bytes"] < stages["shared"]["bytes"] < stages["pruned"]["bytes"] < stages["original"]["bytes"]
    # An 8/16-filter CNN is ~3.7k parameters: the architecture header and biases weigh as much as the coded kernels.
    assert document["weights_compression_ratio"] > 8 and document["compression_ratio"] > 4 and os.path.getsize(out.path("model.fwz")) == stages["huffman"]["bytes"]
    assert all(row["latency_p50_ms"] > 0 and 0 <= row["accuracy"] <= 1 for row in stages.values())
    for stage in ("dense", "pruned", "shared"):
        assert np.isfinite(read_compressed(out.path(f"stages/{stage}.fwz")).predict(pixels, verbose=0)).all()
    assert os.path.isdir(out.path(features.SERVING_DIR)) and os.path.exists(report.path("report.html"))
    assert "huffman" in open(report.path("report.html")).read()
    assert out.properties["compression_ratio"] == pytest.approx(document["compression_ratio"], rel=1e-3)

    blessing, gated = _gate(root, examples, out, "c", max_accuracy_drop=1.0)
    assert blessing.properties["blessed"] and gated.properties["blessed"]
    pushed = PushedModel(uri=str(root / "pushed"))
    call_component(push, {"model": out, "blessing": gated}, {"pushed_model": pushed},
                   {"registry": str(root / "registry"), "model_name": "c"})
    assert pushed.properties["pushed"]


def test_a_compressed_model_that_loses_too_much_accuracy_is_not_blessed_nor_pushed(digits):
    root, examples, model = digits
    out, _ = _compress(root, examples, model, "absurd", sparsity=0.999, bits=1, fine_tune_epochs=0)
    assert out.properties["accuracy_drop"] > 0.3
    blessing, gated = _gate(root, examples, out, "absurd", max_accuracy_drop=0.01, threshold=0.0)
    assert blessing.properties["blessed"]  # evaluate's absolute threshold alone would not stop it...
    assert not gated.properties["blessed"]  # ...the accuracy-drop gate does
    assert "exceeds max_accuracy_drop 0.01" in gated.properties["reasons"][0]
    pushed = PushedModel(uri=str(root / "absurd-pushed"))
    call_component(push, {"model": out, "blessing": gated}, {"pushed_model": pushed},
                   {"registry": str(root / "registry"), "model_name": "absurd"})
    assert not pushed.properties["pushed"]


def test_int8_option_serves_a_quantized_model_that_loads_safely(digits):
    root, examples, model = digits
    out, _ = _compress(root, examples, model, "int8", sparsity=0.5, quantize_int8=True)
    served = model_layers.load_model(out.path(features.MODEL_FILE))
    assert any(str(w.dtype) == "int8" for w in served.weights)
    stages = [row["stage"] for row in json.loads(open(out.path("report.json")).read())["stages"]]
    assert stages[-1] == "int8"


def test_penguin_mlp_round_trips_through_the_compressed_file(tmp_path):
    examples = penguin_examples(str(tmp_path / "ex"))
    graph, model = TransformGraph(uri=str(tmp_path / "tg")), Model(uri=str(tmp_path / "m"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    call_component(train, {"examples": examples, "transform_graph": graph}, {"model": model}, {"epochs": 5})
    out, _ = _compress(tmp_path, examples, model, "c", sparsity=0.5, bits=3)
    spec = features.read_json(out.path(features.MODEL_JSON))
    rows = features.raw_inputs(__import__("flywheel.components.examples_io", fromlist=["x"]).read_split(examples, "eval"), spec)
    served = model_layers.load_model(out.path(features.MODEL_FILE))
    decoded = read_compressed(out.path("model.fwz"))
    assert np.array_equal(decoded.predict(rows, verbose=0), served.predict(rows, verbose=0))


def test_bad_parameters_are_refused_with_the_uniform_message(digits):
    root, examples, model = digits
    with pytest.raises(ParameterError, match="The 'sparsity' parameter of compress must be .* Got 1.0 instead."):
        _compress(root, examples, model, "bad", sparsity=1.0)
    with pytest.raises(ParameterError, match="The 'pruning_scope' parameter of compress"):
        _compress(root, examples, model, "bad", pruning_scope="network")


def test_compression_pipeline_runs_end_to_end_in_a_small_config(home, tmp_path):
    pipe = load_pipeline(os.path.join(REPO, "pipelines", "compression.py"))
    params = {"conv_widths": [4, 8], "hidden_units": [16], "epochs": 3, "fine_tune_epochs": 1, "pruning_steps": 1,
              "sparsity": 0.5, "max_accuracy_drop": 1.0, "thresholds": {"accuracy": 0.3},
              "registry": str(tmp_path / "registry")}
    # In-process: TensorFlow is already loaded here, and forking a process that holds its threads can deadlock.
    result = LocalRunner(home, max_workers=0).run(pipe, params)
    assert result.ok, result.errors
    assert result.outputs["push"]["pushed_model"].properties["pushed"]
    assert result.outputs["compress"]["compressed"].properties["compression_ratio"] > 1


def test_distillation_pipeline_trains_a_student_from_the_teacher_in_a_small_config(home, tmp_path):
    pipe = load_pipeline(os.path.join(REPO, "pipelines", "distillation.py"))
    params = {"train.conv_widths": [8, 16], "train.hidden_units": [32], "train-2.conv_widths": [2, 4],  # teacher, student
              "train-2.hidden_units": [8], "epochs": 3, "thresholds": {"accuracy": 0.0},
              "registry": str(tmp_path / "registry")}
    result = LocalRunner(home, max_workers=0).run(pipe, params)
    assert result.ok, result.errors
    teacher, student = result.outputs["train"]["model"], result.outputs["train-2"]["model"]
    assert student.properties["distillation"]["teacher_uri"] == teacher.uri
    assert student.properties["distillation"]["temperature"] == 4.0
    assert student.properties["parameters"] * 5 < teacher.properties["parameters"]
    assert 0 <= student.properties["final_val_accuracy"] <= 1 and len(json.loads(open(
        os.path.join(student.uri, "history.json")).read())["history"]["accuracy"]) >= 1
    assert result.outputs["push"]["pushed_model"].properties["pushed"]


def test_train_refuses_a_teacher_with_coteaching_or_other_labels(digits, tmp_path):
    root, examples, model = digits
    graph = TransformGraph(uri=str(root / "tg"))
    with pytest.raises(ParameterError, match="'teacher' input of train"):
        call_component(train, {"examples": examples, "transform_graph": graph, "teacher": model},
                       {"model": Model(uri=str(tmp_path / "s"))}, {"coteaching": True, "epochs": 1})
    penguins = Model(uri=str(tmp_path / "p"))
    os.makedirs(penguins.uri)
    features.write_json(penguins.path(features.MODEL_JSON), {"label_vocabulary": ["Adelie"], "modality": "table", "features": {}})
    with pytest.raises(ParameterError, match="same labels and inputs"):
        call_component(train, {"examples": examples, "transform_graph": graph, "teacher": penguins},
                       {"model": Model(uri=str(tmp_path / "s2"))}, {"epochs": 1})
    with pytest.raises(ParameterError, match="'distill_alpha' parameter of train"):
        call_component(train, {"examples": examples, "transform_graph": graph, "teacher": model},
                       {"model": Model(uri=str(tmp_path / "s3"))}, {"distill_alpha": 2.0})

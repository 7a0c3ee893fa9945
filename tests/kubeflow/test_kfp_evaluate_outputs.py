"""evaluate's executor output on Kubeflow is what the KFP UI renders: the same metadata kfp's own
artifact types write (``Metrics.log_metric``, ``ClassificationMetrics.log_roc_curve`` and
``log_confusion_matrix``), and a Markdown summary published as one file."""

from __future__ import annotations

import pytest

try:
    from tests.components.model_fixtures import small_penguin_model
except ImportError:  # tests/ is not a package: pytest put the directory on sys.path
    from components.model_fixtures import small_penguin_model

from flywheel.components.evaluate import evaluate
from flywheel.kubeflow.entrypoint import execute
from flywheel.kubeflow.compiler import kfp_artifact_class

RUN = "minio://mlpipeline/v2/artifacts/training/run-1"


def _artifact(name: str, schema_title: str, uri: str, metadata: dict | None = None) -> dict:
    return {"artifacts": [{"name": name, "type": {"schemaTitle": schema_title, "schemaVersion": "0.0.1"},
                           "uri": uri, "metadata": metadata or {}}]}


@pytest.fixture(scope="module")
def evaluate_output(tmp_path_factory):
    """The executor output of evaluate run by the executor, as in a KFP pod, on a small penguins model."""
    root = tmp_path_factory.mktemp("kfp-evaluate")
    run_dir = root / "minio" / "mlpipeline" / "v2" / "artifacts" / "training" / "run-1"
    examples, model = small_penguin_model(str(run_dir / "ingest" / "examples"), str(run_dir / "train"))
    outputs = {name: _artifact(name, kfp_artifact_class(spec.type).schema_title, f"{RUN}/evaluate/{name}")
               for name, spec in evaluate.outputs.items()}
    executor_input = {
        "inputs": {
            "parameterValues": {"registry": str(root / "registry"), "slice_features": ["island"], "model_name": "penguins"},
            "artifacts": {
                "examples": _artifact("examples", "system.Dataset", f"{RUN}/ingest/examples", examples.properties),
                "model": _artifact("model", "system.Model", f"{RUN}/train/model", model.properties),
            },
        },
        "outputs": {"artifacts": outputs, "outputFile": str(root / "outputs" / "output_metadata.json")},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLYWHEEL_ARTIFACT_MOUNT_ROOT", str(root))
        output = execute(executor_input, evaluate)
    return root, {name: entry["artifacts"][0] for name, entry in output["artifacts"].items()}


def test_evaluate_declares_the_kfp_types_the_ui_renders():
    titles = {name: kfp_artifact_class(spec.type).schema_title for name, spec in evaluate.outputs.items()}

    assert titles["evaluation"] == "system.Metrics"
    assert titles["metrics"] == "system.ClassificationMetrics"
    assert titles["summary"] == "system.Markdown"


def test_scalar_metrics_are_what_kfp_metrics_log_metric_writes(evaluate_output):
    from kfp import dsl

    _, artifacts = evaluate_output
    metadata = artifacts["evaluation"]["metadata"]
    expected = dsl.Metrics()
    for name, value in metadata.items():
        assert type(value) in (int, float), f"{name}={value!r} is not a scalar metric"
        expected.log_metric(name, value)

    assert expected.metadata == metadata
    assert 0.0 <= metadata["accuracy"] <= 1.0 and metadata["eval_rows"] == 86
    assert {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr"} <= set(metadata)


def test_roc_curve_and_confusion_matrix_are_what_kfp_classification_metrics_writes(evaluate_output):
    from kfp import dsl

    _, artifacts = evaluate_output
    metadata = artifacts["metrics"]["metadata"]
    points = metadata["confidenceMetrics"]
    categories = [spec["displayName"] for spec in metadata["confusionMatrix"]["annotationSpecs"]]
    matrix = [row["row"] for row in metadata["confusionMatrix"]["rows"]]
    expected = dsl.ClassificationMetrics()
    expected.log_roc_curve([p["falsePositiveRate"] for p in points], [p["recall"] for p in points],
                           [p["confidenceThreshold"] for p in points])
    expected.log_confusion_matrix(categories, matrix)

    assert expected.metadata == metadata
    assert len(points) >= 3 and categories == ["Adelie", "Chinstrap", "Gentoo"]
    assert points[0]["falsePositiveRate"] == 0.0 and points[-1]["recall"] == 1.0  # a whole ROC curve
    assert [p["falsePositiveRate"] for p in points] == sorted(p["falsePositiveRate"] for p in points)
    assert sum(map(sum, matrix)) == 86


def test_the_markdown_summary_is_published_as_one_file_the_ui_reads(evaluate_output):
    root, artifacts = evaluate_output
    summary = artifacts["summary"]
    path = root / "minio" / "mlpipeline" / "v2" / "artifacts" / "training" / "run-1" / "evaluate" / "summary"

    assert summary["uri"] == f"{RUN}/evaluate/summary"
    assert path.is_file()  # the KFP UI reads a Markdown artifact's URI as one file
    text = path.read_text()
    title = text.splitlines()[0]
    assert title.startswith("# Evaluation of ") and title.endswith("/training/run-1/train/model")
    assert f"| accuracy | {artifacts['evaluation']['metadata']['accuracy']:.4f} |" in text
    assert "| island | Biscoe |" in text

"""evaluate: metrics equal scikit-learn's, slices, KFP metrics, blessing by threshold and by regression."""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    from tests.components.model_fixtures import penguin_examples, run, transform_and_train
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import penguin_examples, run, transform_and_train

from flywheel.models import features
from flywheel.components import examples_io
from flywheel.components.evaluate import classification
from flywheel.models import layers as model_layers
from flywheel.components.evaluate import decide, evaluate
from flywheel.dsl.artifacts import ClassificationMetrics, Markdown, ModelBlessing, ModelEvaluation
from flywheel.errors import ParameterError
from flywheel.registry import ModelRegistry


def test_metrics_equal_scikit_learn_on_a_known_set():
    from sklearn import metrics as skm
    from sklearn.preprocessing import label_binarize

    rng = np.random.RandomState(3)
    classes = ["a", "b", "c"]
    y = rng.choice(classes, size=120, p=[0.5, 0.3, 0.2])
    proba = rng.dirichlet([1, 1, 1], size=120)
    proba[np.arange(120), [classes.index(v) for v in y]] += 0.6  # informative but imperfect
    proba /= proba.sum(axis=1, keepdims=True)
    y_pred = np.asarray(classes)[proba.argmax(1)]

    ours = classification.classification_metrics(y, proba, classes)

    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, y_pred))
    assert ours["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, y_pred))
    assert ours["precision_macro"] == pytest.approx(skm.precision_score(y, y_pred, average="macro"))
    assert ours["recall_macro"] == pytest.approx(skm.recall_score(y, y_pred, average="macro"))
    assert ours["f1_macro"] == pytest.approx(skm.f1_score(y, y_pred, average="macro"))
    assert ours["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    assert ours["average_precision"] == pytest.approx(
        skm.average_precision_score(label_binarize(y, classes=classes), proba, average="macro")
    )
    assert ours["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, y_pred, labels=classes).tolist()
    per_class_f1 = skm.f1_score(y, y_pred, average=None, labels=classes)
    assert [ours["per_class"][c]["f1"] for c in classes] == pytest.approx(list(per_class_f1))
    assert ours["accuracy"] < 1.0  # the set is not trivially separable


def test_kfp_shapes():
    confusion = {"labels": ["x", "y"], "matrix": [[3, 1], [0, 4]]}
    assert classification.kfp_confusion_matrix(confusion) == {
        "annotationSpecs": [{"displayName": "x"}, {"displayName": "y"}],
        "rows": [{"row": [3, 1]}, {"row": [0, 4]}],
    }
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    micro, per_class = classification.kfp_roc_curves(["x", "y", "y"], proba, ["x", "y"])
    assert micro[0]["falsePositiveRate"] == 0.0 and micro[-1]["recall"] == 1.0
    assert set(per_class) == {"x", "y"}
    assert all(set(p) == {"confidenceThreshold", "recall", "falsePositiveRate"} for p in micro)


def test_decide_applies_thresholds_then_regression_margin():
    new = {"balanced_accuracy": 0.90, "accuracy": 0.91}
    old = {"balanced_accuracy": 0.91, "accuracy": 0.91}
    args = dict(baseline_version=3, compare_metrics=["balanced_accuracy"])

    reasons, blessed = decide(new, {"balanced_accuracy": 0.8}, baseline_metrics=old, max_regression=0.02, **args)
    assert blessed and any("no regression" in r for r in reasons)
    reasons, blessed = decide(new, {"balanced_accuracy": 0.8}, baseline_metrics=old, max_regression=0.005, **args)
    assert not blessed and reasons == [
        "balanced_accuracy 0.9000 is worse than the serving version 3 (0.9100) by more than max_regression 0.005"
    ]
    reasons, blessed = decide(new, {"accuracy": 0.95}, baseline_metrics=None, baseline_version=None,
                              compare_metrics=[], max_regression=0.02)
    assert not blessed and reasons == ["accuracy 0.9100 is below the threshold 0.95"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A good penguins model (defaults) and a poor one (one tiny epoch), on the same Examples."""
    root = tmp_path_factory.mktemp("eval")
    examples = penguin_examples(str(root / "ex"))
    _, good = transform_and_train(examples, str(root / "good"))
    _, poor = transform_and_train(
        examples, str(root / "poor"), epochs=1, hidden_units=[2], learning_rate=0.001, early_stopping_patience=0
    )
    return examples, good, poor


def _evaluate(tmp_path, examples, model, **params):
    params.setdefault("registry", str(tmp_path / "reg"))
    outputs = {
        "evaluation": ModelEvaluation(uri=str(tmp_path / "evaluation")),
        "blessing": ModelBlessing(uri=str(tmp_path / "blessing")),
        "metrics": ClassificationMetrics(uri=str(tmp_path / "metrics")),
        "summary": Markdown(uri=str(tmp_path / "summary")),
    }
    return run(evaluate, {"examples": examples, "model": model}, outputs, **params)


def test_evaluation_overall_and_per_slice(trained, tmp_path):
    from sklearn import metrics as skm

    examples, good, _ = trained
    out = _evaluate(tmp_path, examples, good, slice_features=["island", "sex", "no_such_column"])

    with open(out["evaluation"].path("evaluation.json")) as f:
        report = json.load(f)
    frame = examples_io.read_split(examples, "eval")
    spec = features.read_json(good.path(features.MODEL_JSON))
    net = model_layers.load_model(good.path(features.MODEL_FILE))
    proba = net.predict(features.raw_inputs(frame, spec), verbose=0)
    predicted = np.asarray(spec["label_vocabulary"])[np.asarray(proba).argmax(1)]
    assert report["overall"]["accuracy"] == pytest.approx(skm.accuracy_score(frame["species"], predicted))
    assert report["overall"]["accuracy"] >= 0.95
    assert out["evaluation"].properties["balanced_accuracy"] == report["overall"]["balanced_accuracy"]
    assert set(report["slices"]) == {"island", "sex"}
    assert set(report["slices"]["island"]) == set(frame["island"])
    biscoe = frame["island"] == "Biscoe"
    assert report["slices"]["island"]["Biscoe"]["count"] == int(biscoe.sum())
    assert report["slices"]["island"]["Biscoe"]["accuracy"] == pytest.approx(
        skm.accuracy_score(frame["species"][biscoe], predicted[biscoe.to_numpy()])
    )
    assert sum(s["count"] for s in report["slices"]["sex"].values()) == len(frame)
    assert any("no_such_column" in note for note in report["notes"])

    with open(out["metrics"].path("metrics.json")) as f:
        kfp = json.load(f)
    names = [spec_["displayName"] for spec_ in kfp["confusionMatrix"]["annotationSpecs"]]
    assert names == ["Adelie", "Chinstrap", "Gentoo"]
    assert sum(sum(r["row"]) for r in kfp["confusionMatrix"]["rows"]) == len(frame)
    assert kfp["confidenceMetrics"] and out["metrics"].properties["confusionMatrix"] == kfp["confusionMatrix"]

    blessing = out["blessing"]
    assert blessing.properties["blessed"] is True
    assert "no model serves yet; nothing to compare with" in blessing.properties["reasons"]
    with open(blessing.path("blessing.json")) as f:
        assert json.load(f)["blessed"] is True

    assert all(type(v) in (int, float) for v in out["evaluation"].properties.values())  # KFP scalar metrics
    with open(out["summary"].path("summary.md")) as f:
        summary = f.read()
    assert "**Blessed** on the `eval` split" in summary
    assert f"| accuracy | {report['overall']['accuracy']:.4f} |" in summary
    biscoe_row = report["slices"]["island"]["Biscoe"]
    assert f"| island | Biscoe | {biscoe_row['count']} | {biscoe_row['accuracy']:.4f} |" in summary


def test_blessing_refuses_below_threshold(trained, tmp_path):
    examples, _, poor = trained
    out = _evaluate(tmp_path, examples, poor)

    blessing = out["blessing"]
    assert out["evaluation"].properties["balanced_accuracy"] < 0.8
    assert blessing.properties["blessed"] is False
    reasons = blessing.properties["reasons"]
    assert any(r.startswith("balanced_accuracy") and "below the threshold 0.8" in r for r in reasons)


def test_blessing_refuses_regression_against_the_served_model(trained, tmp_path):
    examples, good, poor = trained
    store = ModelRegistry(str(tmp_path / "reg"))
    version, _ = store.push("penguins", good.uri)
    store.set_serving("penguins", version)

    refused = _evaluate(tmp_path / "poor", examples, poor, registry=store.root, model_name="penguins", thresholds={})
    accepted = _evaluate(tmp_path / "good", examples, good, registry=store.root, model_name="penguins")

    reasons = refused["blessing"].properties["reasons"]
    assert refused["blessing"].properties["blessed"] is False
    assert any("worse than the serving version 1" in r for r in reasons)
    assert refused["blessing"].properties["baseline_version"] == 1
    assert accepted["blessing"].properties["blessed"] is True
    with open(accepted["evaluation"].path("evaluation.json")) as f:
        baseline = json.load(f)["baseline"]
    assert baseline["version"] == 1
    assert baseline["overall"]["accuracy"] == accepted["evaluation"].properties["accuracy"]  # same model


def test_the_baseline_loads_from_a_registry_on_s3(trained, tmp_path, s3_bucket, monkeypatch):
    """A registry URI (moto's S3 API on loopback): model.json is read from the bucket, the Keras model from a local copy."""
    examples, good, poor = trained
    monkeypatch.setenv("FLYWHEEL_REGISTRY_CACHE", str(tmp_path / "cache"))
    store = ModelRegistry(f"{s3_bucket}/registry")
    store.publish("penguins", good.uri)

    refused = _evaluate(tmp_path / "poor", examples, poor, registry=store.root, model_name="penguins", thresholds={})
    accepted = _evaluate(tmp_path / "good", examples, good, registry=store.root, model_name="penguins")

    assert refused["blessing"].properties["blessed"] is False
    assert refused["blessing"].properties["baseline_version"] == 1
    assert any("worse than the serving version 1" in r for r in refused["blessing"].properties["reasons"])
    with open(accepted["evaluation"].path("evaluation.json")) as f:
        baseline = json.load(f)["baseline"]
    assert baseline["version"] == 1 and baseline["registry"] == store.root
    assert baseline["overall"]["accuracy"] == accepted["evaluation"].properties["accuracy"]  # the same model
    assert store.cached_versions("penguins") == [1]  # loaded through the one local copy


def test_unknown_metric_names_are_rejected(trained, tmp_path):
    examples, good, _ = trained
    with pytest.raises(ParameterError, match=r"The 'thresholds' parameter of evaluate must be a dict of metric name -> "
                       r"minimum number, names from \['accuracy', .*\]\. Got \{'acuracy': 0\.9\} instead\."):
        _evaluate(tmp_path, examples, good, thresholds={"acuracy": 0.9})
    with pytest.raises(ParameterError, match=r"The 'max_regression' parameter of evaluate must be a float in \[0, inf\)"):
        _evaluate(tmp_path, examples, good, max_regression=-0.1)

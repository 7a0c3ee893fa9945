"""evaluate in batches: classification.py's accumulators equal the in-memory metrics (AUC-type: within the stated bound)."""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    from tests.components.model_fixtures import penguin_examples, transform_and_train
    from tests.components.test_evaluate import _evaluate
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import penguin_examples, transform_and_train
    from test_evaluate import _evaluate

from flywheel.components import evaluate as evaluate_module
from flywheel.components.evaluate import classification

CLASSES = ["a", "b", "c"]


def _scores(n: int, seed: int = 0):
    """True names (a few outside the vocabulary) and softmax scores that carry signal."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(len(CLASSES), size=n, p=[0.5, 0.3, 0.2])
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[truth]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = np.asarray(CLASSES, dtype=object)[truth]
    names[rng.random(n) < 0.001] = "zz"
    names[rng.random(n) < 0.001] = "unseen"
    return names, proba.astype("float32")


def _feed(accumulator, names, proba, batch: int):
    for start in range(0, len(names), batch):
        accumulator.update(names[start:start + batch], proba[start:start + batch])
    return accumulator


def test_under_exact_rows_the_batched_metrics_are_the_in_memory_ones():
    names, proba = _scores(5_000)
    batched = _feed(classification.MetricsAccumulator(CLASSES), names, proba, 333).result()
    whole = classification.classification_metrics(names, proba, CLASSES)
    assert batched == {**whole, "auc_method": "exact"}
    assert _feed(classification.MetricsAccumulator(CLASSES), names, proba, 333).roc_curves() == classification.kfp_roc_curves(
        names, proba, CLASSES
    )


def test_beyond_exact_rows_counts_are_exact_and_auc_is_within_its_stated_bound():
    names, proba = _scores(300_000, seed=1)
    accumulator = _feed(classification.MetricsAccumulator(CLASSES, exact_rows=100_000), names, proba, 65_536)
    assert not accumulator.exact
    binned = accumulator.result()
    whole = classification.classification_metrics(names, proba, CLASSES)
    assert binned["auc_method"] == "binned" and binned["auc_bins"] == classification.AUC_BINS
    assert binned["count"] == whole["count"] == 300_000
    assert binned["confusion_matrix"] == whole["confusion_matrix"]
    for metric in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro"):
        assert binned[metric] == pytest.approx(whole[metric], abs=1e-12), metric
    for name in CLASSES:
        mine, theirs = binned["per_class"][name], whole["per_class"][name]
        assert {k: mine[k] for k in ("precision", "recall", "f1", "support")} == pytest.approx(
            {k: theirs[k] for k in ("precision", "recall", "f1", "support")}, abs=1e-12
        )
        bound = binned["roc_auc_max_error"][name]
        assert 0 < bound < 1e-4
        assert abs(mine["roc_auc"] - theirs["roc_auc"]) <= bound + 1e-12
        assert mine["average_precision"] == pytest.approx(theirs["average_precision"], abs=1e-4)
    assert binned["roc_auc_ovr"] == pytest.approx(whole["roc_auc_ovr"], abs=1e-4)
    micro, per_class = accumulator.roc_curves()
    exact_micro, exact_per_class = classification.kfp_roc_curves(names, proba, CLASSES)
    assert set(per_class) == set(exact_per_class) and micro[0]["falsePositiveRate"] == 0.0 and micro[-1]["recall"] == 1.0
    # at each binned threshold (a bin's lower edge) the curve holds the real scores' recall and false-positive rate
    positive = names == "a"
    for point in per_class["a"][1:]:
        at = proba[:, 0] >= point["confidenceThreshold"]
        assert point["recall"] == pytest.approx(at[positive].mean(), abs=1e-3)
        assert point["falsePositiveRate"] == pytest.approx(at[~positive].mean(), abs=1e-3)
    assert len(micro) == len(exact_micro) == 200


def test_a_coarse_histogram_states_a_larger_bound_that_still_holds():
    names, proba = _scores(50_000, seed=2)
    binned = _feed(classification.MetricsAccumulator(CLASSES, bins=16, exact_rows=0), names, proba, 4096).result()
    whole = classification.classification_metrics(names, proba, CLASSES)
    for name in CLASSES:
        error = abs(binned["per_class"][name]["roc_auc"] - whole["per_class"][name]["roc_auc"])
        assert 1e-4 < binned["roc_auc_max_error"][name] and error <= binned["roc_auc_max_error"][name]


def test_slices_in_batches_equal_sliced_metrics_and_too_many_values_are_noted():
    import pandas as pd

    names, proba = _scores(4_000, seed=3)
    frame = pd.DataFrame({"s": np.where(np.arange(4_000) % 9 == 0, None, [f"v{k % 5}" for k in range(4_000)]),
                          "id": [str(k) for k in range(4_000)]})
    slicer = classification.SliceAccumulator(CLASSES, ["s", "id", "missing"], list(frame.columns), max_values=50)
    for start in range(0, 4_000, 700):
        part = slice(start, start + 700)
        slicer.update(frame.iloc[part].reset_index(drop=True), names[part], proba[part])
    slices, notes = slicer.result()
    expected, _ = classification.sliced_metrics(frame, names, proba, CLASSES, ["s"])
    assert {v: {k: m for k, m in r.items() if k != "auc_method"} for v, r in slices["s"].items()} == expected["s"]
    assert set(slices) == {"s"}
    assert notes == [
        "slice feature 'missing' is not a column of the eval data; skipped",
        "slice feature 'id' has more than 50 values (700 seen); skipped",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-batches")
    examples = penguin_examples(str(root / "ex"))
    return examples, transform_and_train(examples, str(root / "good"))[1]


def test_evaluate_scores_a_split_in_batches_with_the_in_memory_results(trained, tmp_path, monkeypatch):
    examples, good = trained
    whole = _evaluate(tmp_path / "whole", examples, good)
    monkeypatch.setattr(evaluate_module, "EVAL_BATCH_ROWS", 7)
    batched = _evaluate(tmp_path / "batched", examples, good)
    reports = []
    for out in (whole, batched):
        with open(out["evaluation"].path("evaluation.json")) as f:
            report = json.load(f)
        reports.append({k: report[k] for k in ("overall", "slices", "notes")})
    assert reports[0] == reports[1] and reports[0]["overall"]["count"] > 7 * 5
    monkeypatch.setattr(classification, "EXACT_ROWS", 10)
    binned = _evaluate(tmp_path / "binned", examples, good)
    with open(binned["evaluation"].path("evaluation.json")) as f:
        overall = json.load(f)["overall"]
    assert overall["auc_method"] == "binned"
    assert overall["accuracy"] == reports[0]["overall"]["accuracy"]
    assert abs(overall["roc_auc_ovr"] - reports[0]["overall"]["roc_auc_ovr"]) <= max(overall["roc_auc_max_error"].values()) + 1e-12
    with open(binned["metrics"].path("metrics.json")) as f:
        assert json.load(f)["confusionMatrix"] is not None

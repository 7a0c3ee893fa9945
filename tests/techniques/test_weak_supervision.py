"""Labeling functions, the LF summary, the label model against majority vote, pre-training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.components.data.bundled import table_frame
from flywheel.components.data.features import tabular_features
from flywheel.errors import FlywheelError, ParameterError
from flywheel.pipelines.weak_supervision import BREAST_CANCER_LFS
from flywheel.techniques.weak_supervision import (
    ABSTAIN,
    LabelModel,
    apply_labeling_functions,
    labeling_function,
    lf_summary,
    majority_vote,
    pretrain_finetune,
    resolve_labeling_functions,
)


@labeling_function()
def short_name(row):
    return "short" if len(row["name"]) <= 3 else ABSTAIN


def test_rules_and_python_functions_vote_or_abstain():
    frame = pd.DataFrame({"name": ["ann", "bartholomew", "bo"], "size": [1.0, 5.0, None]})
    lfs = resolve_labeling_functions(
        [{"feature": "size", "op": ">", "value": 2, "label": "long"}, "tests.techniques.test_weak_supervision:short_name"]
    )
    L = apply_labeling_functions(frame, lfs, ["short", "long"])
    assert L.tolist() == [[-1, 0], [1, -1], [-1, 0]]
    assert [lf.name for lf in lfs] == ["size>2->long", "short_name"]
    with pytest.raises(ParameterError, match="needs keys feature, op"):
        resolve_labeling_functions([{"feature": "size", "op": "~", "value": 1, "label": 0}])
    with pytest.raises(ParameterError, match="cannot be imported"):
        resolve_labeling_functions(["tests.techniques.test_weak_supervision:nothing_here"])
    with pytest.raises(FlywheelError, match="not a class"):
        apply_labeling_functions(frame, lfs, ["short", "medium"])


def test_lf_summary_counts_coverage_overlaps_and_conflicts():
    L = np.array([[0, 0, -1], [0, 1, -1], [-1, -1, 1], [1, -1, -1]])
    table = lf_summary(L, y=np.array([0, 1, 1, 1]), names=["a", "b", "c"])
    assert table["coverage"].tolist() == [0.75, 0.5, 0.25]
    assert table["overlaps"].tolist() == [0.5, 0.5, 0.0]
    assert table["conflicts"].tolist() == [0.25, 0.25, 0.0]
    assert table["correct"].tolist() == [2, 2, 1] and table["emp_accuracy"].round(3).tolist() == [0.667, 1.0, 1.0]


def test_majority_vote_splits_ties_and_abstentions():
    proba = majority_vote(np.array([[0, 0, 1], [0, 1, -1], [-1, -1, -1]]), 2)
    assert proba.tolist() == [[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]]


@pytest.fixture(scope="module")
def breast_cancer():
    frame, label = table_frame("breast_cancer")
    lfs = resolve_labeling_functions(BREAST_CANCER_LFS)
    return frame, frame[label].to_numpy(), apply_labeling_functions(frame, lfs, [0, 1])


def test_label_model_beats_majority_vote_on_noisy_correlated_lfs(breast_cancer):
    _, y, L = breast_cancer
    covered = (L != ABSTAIN).any(axis=1)
    vote = (majority_vote(L, 2).argmax(axis=1) == y)[covered].mean()
    model = LabelModel(cardinality=2).fit(L)
    learnt = (model.predict(L) == y)[covered].mean()
    assert learnt > vote + 0.05, (learnt, vote)
    # the four size rules share one group; the learnt accuracies rank a precise rule above a loose one
    assert len(set(model.lf_groups_[3:7].tolist())) == 1 and np.isclose(model.lf_weights_[3], 0.25)
    assert model.lf_accuracy_[0] > model.lf_accuracy_[3] + 0.2


def test_label_model_recovers_lf_accuracies_without_labels():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    accuracy = np.array([0.95, 0.8, 0.65, 0.6, 0.55])
    L = np.where(rng.random((3000, 5)) < accuracy, y[:, None], 1 - y[:, None])
    model = LabelModel(cardinality=2, dependency_threshold=None).fit(L)
    assert np.abs(model.lf_accuracy_ - accuracy).max() < 0.05, model.lf_accuracy_
    assert (model.predict(L) == y).mean() > (majority_vote(L, 2).argmax(axis=1) == y).mean() + 0.02


def test_pretraining_on_weak_labels_beats_few_gold_labels(breast_cancer):
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, y, L = breast_cancer
    X, _ = tabular_features(frame, ["label"])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    test, train = order[:170], order[170:]
    gold = np.concatenate([train[y[train] == 0][:5], train[y[train] == 1][:5]])
    proba = LabelModel(cardinality=2).fit(L[train]).predict_proba(L[train])
    pretrained = pretrain_finetune(X[train], proba, X[gold], y[gold], random_state=0).score(X[test], y[test])
    plain = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0))
    alone = plain.fit(X[gold], y[gold]).score(X[test], y[test])
    assert pretrained > 0.9 and pretrained > alone, (pretrained, alone)


def test_label_model_refuses_bad_input():
    with pytest.raises(FlywheelError, match="votes must be -1"):
        LabelModel(cardinality=2).fit(np.array([[0, 2]]))
    with pytest.raises(FlywheelError, match="before fit"):
        LabelModel().predict(np.array([[0, 1]]))
    with pytest.raises(FlywheelError, match="fitted on 2 LFs"):
        LabelModel().fit(np.array([[0, 1], [1, 1]])).predict(np.array([[0, 1, 1]]))

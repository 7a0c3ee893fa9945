"""Data sanity gates: one-class or too-rare labels stop train before it fits, and
evaluate refuses to compare with a serving model that predicts other classes."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import pytest

try:
    from tests.components.model_fixtures import penguin_examples, penguins_frame, run, transform_and_train, write_examples
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import penguin_examples, penguins_frame, run, transform_and_train, write_examples

from flywheel.components.data.sanity import check_label_classes, check_same_vocabulary
from flywheel.dsl.artifacts import ClassificationMetrics, Markdown, Model, ModelBlessing, ModelEvaluation, TransformGraph
from flywheel.errors import DataSanityError, ParameterError
from flywheel.registry import ModelRegistry


def _check(counts, minimum=5):
    check_label_classes({k: Counter(v) for k, v in counts.items()}, label="species", minimum=minimum, where="ex/")


def test_one_class_in_a_split_is_refused():
    with pytest.raises(DataSanityError, match=r"1 class\(es\) in the train split of ex/ \(only \['Adelie'\]\); a classifier needs at least two"):
        _check({"train": {"Adelie": 200}, "eval": {"Adelie": 50}})
    with pytest.raises(DataSanityError, match=r"in the eval split .*only \['Gentoo'\]"):
        _check({"train": {"Adelie": 200, "Gentoo": 100}, "eval": {"Gentoo": 50}})


def test_a_class_below_the_minimum_or_absent_in_a_split_is_refused():
    with pytest.raises(DataSanityError, match=r"eval split of ex/.*min_class_examples=5 rows \('Chinstrap': 2\)"):
        _check({"train": {"Adelie": 100, "Chinstrap": 60}, "eval": {"Adelie": 30, "Chinstrap": 2}})
    with pytest.raises(DataSanityError, match=r"In the eval split of ex/, .*\('Adelie': 0\)"):
        _check({"train": {"Adelie": 100, "Chinstrap": 60, "Gentoo": 50}, "eval": {"Chinstrap": 30, "Gentoo": 20}})
    with pytest.raises(DataSanityError, match=r"eval split of ex/ has label class\(es\) \['Gentoo'\] that the train split lacks"):
        _check({"train": {"Adelie": 100, "Chinstrap": 60}, "eval": {"Adelie": 30, "Gentoo": 20}})


def test_enough_of_every_class_passes_and_the_minimum_is_validated():
    _check({"train": {"a": 5, "b": 7}, "eval": {"a": 5, "b": 5}})
    _check({"train": {"a": 1, "b": 1}, "eval": {"a": 1, "b": 1}}, minimum=1)
    with pytest.raises(ParameterError, match="'min_class_examples' parameter of train must be an int >= 1. Got 0"):
        _check({"train": {"a": 5, "b": 5}}, minimum=0)


def test_vocabularies_compare_as_sets():
    check_same_vocabulary(["b", "a"], ["a", "b"], version=1, model_name="m")
    with pytest.raises(DataSanityError, match=r"new: none, gone: \['Chinstrap', 'Gentoo'\].*allow_label_change=true"):
        check_same_vocabulary(["Adelie"], ["Adelie", "Chinstrap", "Gentoo"], version=3, model_name="penguins")


def test_train_refuses_a_one_class_label_before_fitting(tmp_path):
    from flywheel.components.train import train
    from flywheel.components.transform import transform

    frame = penguins_frame().assign(species="Adelie")  # every row one class: the probe of #15 item 1
    examples = write_examples(str(tmp_path / "ex"), {"train": frame.iloc[80:], "eval": frame.iloc[:80]})
    graph = run(transform, {"examples": examples}, {"transform_graph": TransformGraph(uri=str(tmp_path / "tg"))})
    model = Model(uri=str(tmp_path / "model"))

    with pytest.raises(DataSanityError, match=r"label 'species' has 1 class\(es\) in the train split"):
        run(train, {"examples": examples, "transform_graph": graph["transform_graph"]}, {"model": model}, epochs=1)
    assert not os.path.exists(model.path("model.keras"))


def test_evaluate_refuses_a_baseline_with_another_label_vocabulary(tmp_path):
    from flywheel.components.evaluate import evaluate


    examples = penguin_examples(str(tmp_path / "ex"))
    _, model = transform_and_train(examples, str(tmp_path / "m"), epochs=2, early_stopping_patience=0)
    # The serving version: the same files, but it predicts one class only (what #15 item 1 pushed).
    served = str(tmp_path / "served")
    shutil.copytree(model.uri, served)
    with open(os.path.join(served, "model.json"), encoding="utf-8") as handle:
        contract = json.load(handle)
    contract["label_vocabulary"] = ["Adelie"]
    with open(os.path.join(served, "model.json"), "w", encoding="utf-8") as handle:
        json.dump(contract, handle)
    store = ModelRegistry(str(tmp_path / "reg"))
    store.publish("penguins", served)

    def outputs(name):
        return {
            "evaluation": ModelEvaluation(uri=str(tmp_path / name / "evaluation")),
            "blessing": ModelBlessing(uri=str(tmp_path / name / "blessing")),
            "metrics": ClassificationMetrics(uri=str(tmp_path / name / "metrics")),
            "summary": Markdown(uri=str(tmp_path / name / "summary")),
        }

    with pytest.raises(DataSanityError, match=r"serving version 1 of 'penguins' predicts \['Adelie'\]"):
        run(evaluate, {"examples": examples, "model": model}, outputs("refused"), registry=store.root, model_name="penguins",
            thresholds={})

    allowed = run(
        evaluate, {"examples": examples, "model": model}, outputs("allowed"),
        registry=store.root, model_name="penguins", thresholds={}, allow_label_change=True,
    )
    reasons = allowed["blessing"].properties["reasons"]
    assert any(r.startswith("regression check skipped: allow_label_change=true") for r in reasons)

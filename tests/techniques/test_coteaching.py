"""Co-teaching: the forget-rate schedule, and train's option against standard training under label noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flywheel.components import examples_io
from flywheel.components.evaluate import evaluate
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import ClassificationMetrics, Examples, Markdown, Model, ModelBlessing, ModelEvaluation, TransformGraph
from flywheel.component_call import call_component
from flywheel.techniques.coteaching import forget_rate_schedule


def test_schedule_is_the_papers_r_of_t():
    tau, t_k = 0.45, 10
    rates = forget_rate_schedule(14, tau, t_k)
    kept = [1 - r for r in rates]
    assert kept == pytest.approx([1 - min(t / t_k * tau, tau) for t in range(1, 15)])
    assert rates[9:] == [tau] * 5 and rates[0] == pytest.approx(0.045)
    assert forget_rate_schedule(3, 0.2, 0) == [0.2, 0.2, 0.2]
    assert forget_rate_schedule(4, 0.2, 4, exponent=2.0) == pytest.approx([0.2 / 16, 0.2 / 4, 0.2 * 9 / 16, 0.2])


@pytest.fixture(scope="module")
def noisy_digits(tmp_path_factory):
    """Digits whose train labels flip with probability 0.45 to another class (uniformly); eval stays clean."""
    root = tmp_path_factory.mktemp("noisy")
    clean = Examples(uri=str(root / "clean"))
    call_component(ingest, {}, {"examples": clean}, {"path": "sklearn-digits"})
    examples = Examples(uri=str(root / "ex"), properties=dict(clean.properties))
    rng = np.random.RandomState(0)
    images, frame = examples_io.read_images(clean, "train")
    labels = frame["label"].to_numpy(dtype=object).copy()
    flip = rng.rand(len(labels)) < 0.45
    for i in np.flatnonzero(flip):
        labels[i] = str(rng.choice([c for c in range(10) if str(c) != labels[i]]))
    examples_io.write_images(examples, "train", images, frame.assign(label=labels))
    examples_io.write_images(examples, "eval", *examples_io.read_images(clean, "eval"))
    graph = TransformGraph(uri=str(root / "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    return root, examples, graph


def _accuracy(noisy_digits, name, **params):
    root, examples, graph = noisy_digits
    model = Model(uri=str(root / name))
    base = {"epochs": 15, "early_stopping_patience": 0, "learning_rate": 0.01, "hidden_units": [64], "batch_size": 64}
    call_component(train, {"examples": examples, "transform_graph": graph}, {"model": model}, {**base, **params})
    outputs = {
        "evaluation": ModelEvaluation(uri=str(root / f"{name}-ev")),
        "blessing": ModelBlessing(uri=str(root / f"{name}-bl")),
        "metrics": ClassificationMetrics(uri=str(root / f"{name}-cm")),
        "summary": Markdown(uri=str(root / f"{name}-md")),
    }
    call_component(
        evaluate, {"examples": examples, "model": model}, outputs, {"registry": str(root / "reg"), "thresholds": {}}
    )
    with open(outputs["evaluation"].path("evaluation.json")) as f:
        return model, json.load(f)["overall"]["accuracy"]


def test_coteaching_beats_standard_training_under_45_percent_noise_same_epochs(noisy_digits):
    standard_model, standard = _accuracy(noisy_digits, "standard")
    model, coteaching = _accuracy(noisy_digits, "coteaching", coteaching=True, forget_rate=0.45, num_gradual=10)

    assert model.properties["coteaching"] == {"forget_rate": 0.45, "num_gradual": 10}
    assert model.properties["epochs_run"] == standard_model.properties["epochs_run"] == 15
    with open(model.path("history.json")) as f:
        history = json.load(f)["history"]
    assert history["forget_rate"] == pytest.approx(forget_rate_schedule(15, 0.45, 10))
    # Standard training memorises the flipped labels; co-teaching learns from the small-loss (clean) ones.
    assert coteaching >= standard + 0.04, (standard, coteaching)
    assert coteaching >= 0.9

"""Mixup and RandAugment: what the layers do to a batch, and train's options on a low-data digits set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flywheel.components import examples_io
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import Examples, Model, TransformGraph
from flywheel.errors import ParameterError
from flywheel.component_call import call_component
from flywheel.techniques.mixing import MixUp, RandAugment


def test_mixup_makes_convex_combinations_of_pairs_with_matching_labels():
    rng = np.random.RandomState(0)
    images = rng.uniform(0, 255, (16, 4, 4, 1)).astype("float32")
    labels = np.eye(16, dtype="float32")  # one class per image, so a label row names the partner
    mixed, soft = MixUp(alpha=1.0, random_state=3).transform(images, labels)

    assert np.allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    mixed_rows = 0
    for i in range(16):
        weights = soft[i]
        rebuilt = np.tensordot(weights, images, axes=1)
        assert np.allclose(mixed[i], rebuilt, atol=1e-2)  # image weights equal label weights
        mixed_rows += int(np.count_nonzero(weights > 1e-3) == 2)
    assert mixed_rows >= 10  # alpha=1: lambda ~ U(0, 1), nearly every row mixes two images


def test_mixup_alpha_controls_how_much_is_mixed():
    images = np.random.RandomState(0).uniform(0, 255, (256, 2, 2, 1)).astype("float32")
    labels = np.eye(2, dtype="float32")[np.arange(256) % 2]

    def mean_weight_of_own_label(alpha: float) -> float:
        _, soft = MixUp(alpha=alpha, random_state=0).transform(images, labels)
        return float(np.abs(soft[:, 0] - 0.5).mean())

    # Small alpha puts lambda near 0 or 1 (little mixing); alpha = 1 spreads it uniformly.
    assert mean_weight_of_own_label(0.1) > mean_weight_of_own_label(1.0) + 0.05


def test_randaugment_changes_images_within_their_range_and_zero_magnitude_is_milder():
    images = np.random.RandomState(0).uniform(0, 255, (32, 8, 8, 1)).astype("float32")
    strong = RandAugment(num_ops=2, magnitude=9.0, random_state=0).transform(images)
    weak = RandAugment(num_ops=2, magnitude=1.0, random_state=0).transform(images)

    assert strong.shape == images.shape
    assert strong.min() >= -1e-3 and strong.max() <= 255.0 + 1e-3
    assert not np.allclose(strong, images)
    assert np.abs(strong - images).mean() > np.abs(weak - images).mean()


@pytest.fixture(scope="module")
def low_data(tmp_path_factory):
    """Digits with 15 train images per class (full eval split), and its transform graph."""
    root = tmp_path_factory.mktemp("lowdata")
    full = Examples(uri=str(root / "full"))
    call_component(ingest, {}, {"examples": full}, {"path": "sklearn-digits"})
    images, frame = examples_io.read_images(full, "train")
    rng = np.random.RandomState(0)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(frame["label"] == str(c)), 15, replace=False) for c in range(10)]))
    examples = Examples(uri=str(root / "ex"), properties=dict(full.properties))
    examples_io.write_images(examples, "train", images[keep], frame.iloc[keep].reset_index(drop=True))
    examples_io.write_images(examples, "eval", *examples_io.read_images(full, "eval"))
    graph = TransformGraph(uri=str(root / "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    return root, examples, graph


def _train(low_data, name, **params):
    root, examples, graph = low_data
    model = Model(uri=str(root / name))
    base = {"epochs": 6, "early_stopping_patience": 0, "learning_rate": 0.003, "hidden_units": [64], "seed": 0}
    call_component(train, {"examples": examples, "transform_graph": graph}, {"model": model}, {**base, **params})
    with open(model.path("history.json")) as f:
        return model, json.load(f)["history"]


@pytest.fixture(scope="module")
def plain(low_data):
    return _train(low_data, "plain")


def test_train_mixup_option_trains_on_mixed_labels(low_data, plain):
    _, plain_history = plain
    model, history = _train(low_data, "mixup", mixup_alpha=1.0)
    assert model.properties["mixup_alpha"] == 1.0
    # On mixed batches the loss cannot fall to a one-hot loss: mixed targets keep it high.
    assert np.mean(history["loss"][-3:]) > np.mean(plain_history["loss"][-3:]) + 0.1
    # Validation stays unmixed: it is scored on the true labels like the plain model's.
    assert history["val_accuracy"][-1] > 0.3


def test_train_randaugment_option_makes_training_harder(low_data, plain):
    _, plain_history = plain
    model, history = _train(low_data, "randaugment", randaugment_n=2, randaugment_m=9.0)
    assert model.properties["randaugment"] == [2, 9.0]
    assert np.mean(history["loss"][-3:]) > np.mean(plain_history["loss"][-3:]) + 0.05


def test_augmentation_parameters_are_checked(low_data):
    with pytest.raises(ParameterError, match="The 'randaugment_m' parameter of train must be a float in \\[0, 10\\]. Got 11"):
        _train(low_data, "bad", randaugment_n=1, randaugment_m=11)
    with pytest.raises(ParameterError, match="The 'mixup_alpha' parameter of train must be a float in \\[0, inf\\)"):
        _train(low_data, "bad2", mixup_alpha=-0.5)

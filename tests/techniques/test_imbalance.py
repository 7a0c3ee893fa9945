"""Class imbalance: the resamplers, and transform's resample option through train and evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flywheel.components import examples_io
from flywheel.components.data.resampling import RESAMPLED_DIR
from flywheel.components.evaluate import evaluate
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import ClassificationMetrics, Examples, Markdown, Model, ModelBlessing, ModelEvaluation, TransformGraph
from flywheel.errors import ParameterError
from flywheel.component_call import call_component
from flywheel.techniques._checks import TechniqueInputError
from flywheel.techniques.imbalance import RandomUndersampler, SMOTEOversampler
from tests.components.model_fixtures import imbalanced_examples


def _imbalanced(n_major=95, n_minor=5, seed=0):
    rng = np.random.RandomState(seed)
    x = np.vstack([rng.normal(0, 1, (n_major, 2)), rng.normal(3, 0.5, (n_minor, 2))])
    return x, np.array(["major"] * n_major + ["minor"] * n_minor)


def test_smote_synthesises_minority_points_between_minority_neighbours():
    x, y = _imbalanced(n_minor=10)
    sampler = SMOTEOversampler(k_neighbors=3, random_state=0)
    x_new, y_new = sampler.fit_resample(x, y)

    assert sampler.class_counts_after_ == {"major": 95, "minor": 95} and sampler.n_synthetic_ == 85
    assert np.array_equal(x_new[:105], x)  # originals kept, in order
    synthetic = x_new[105:]
    minority = x[y == "minor"]
    low, high = minority.min(axis=0), minority.max(axis=0)
    assert np.all((synthetic >= low - 1e-9) & (synthetic <= high + 1e-9))  # inside the minority's hull box
    assert len(np.unique(synthetic, axis=0)) > 50  # new points, not copies


def test_undersampling_keeps_original_rows_down_to_the_minority():
    x, y = _imbalanced()
    sampler = RandomUndersampler(random_state=0)
    x_new, y_new = sampler.fit_resample(x, y)
    assert sampler.class_counts_after_ == {"major": 5, "minor": 5}
    assert np.array_equal(x_new, x[sampler.sample_indices_])
    ratio = RandomUndersampler(sampling_strategy=0.5, random_state=0).fit_resample(x, y)[1]
    assert list(np.unique(ratio, return_counts=True)[1]) == [10, 5]


def test_smote_refuses_classes_smaller_than_its_neighbourhood():
    x, y = _imbalanced(n_minor=3)
    with pytest.raises(TechniqueInputError, match="class 'minor' has 3. Lower k_neighbors"):
        SMOTEOversampler(k_neighbors=5).fit_resample(x, y)
    with pytest.raises(TechniqueInputError, match="finite"):
        SMOTEOversampler().fit_resample(np.where(x > 2, np.nan, x), y)


def test_smote_resamples_images_in_their_dtype_and_shape():
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (26, 5, 5, 1)).astype("uint8")
    labels = np.array([0] * 20 + [1] * 6)
    new_images, new_labels = SMOTEOversampler(k_neighbors=2, random_state=0).fit_resample(images, labels)
    assert new_images.shape == (40, 5, 5, 1) and new_images.dtype == np.uint8
    assert np.bincount(new_labels).tolist() == [20, 20]


def _fit_and_score(examples, root, transform_params, train_params=None):
    graph = TransformGraph(uri=f"{root}/tg")
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, transform_params)
    model = Model(uri=f"{root}/model")
    call_component(train, {"examples": examples, "transform_graph": graph}, {"model": model}, train_params or {})
    outputs = {
        "evaluation": ModelEvaluation(uri=f"{root}/ev"),
        "blessing": ModelBlessing(uri=f"{root}/bl"),
        "metrics": ClassificationMetrics(uri=f"{root}/cm"),
        "summary": Markdown(uri=f"{root}/md"),
    }
    call_component(evaluate, {"examples": examples, "model": model}, outputs, {"registry": f"{root}/reg", "thresholds": {}})
    with open(outputs["evaluation"].path("evaluation.json")) as f:
        return graph, model, json.load(f)["overall"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("imbalance")
    examples = imbalanced_examples(str(root / "ex"))
    return root, examples, _fit_and_score(examples, str(root / "plain"), {})


def test_transform_smote_resamples_train_only_and_raises_minority_recall(plain):
    root, examples, (_, _, base) = plain
    graph, model, smote = _fit_and_score(examples, str(root / "smote"), {"resample": "smote", "seed": 0})

    props = graph.properties
    after = props["class_counts_after"]
    assert props["class_counts_before"]["rare"] < 30 and after["rare"] == after["common"]
    resampled = Examples(uri=graph.path(RESAMPLED_DIR))
    validation = examples_io.read_split(resampled, "validation")
    original = examples_io.read_split(examples, "train")
    # The hold-out is original rows with the original class ratio; eval is untouched.
    assert len(validation.merge(original, on=["x1", "x2", "y"])) == len(validation)
    assert 0.02 < (validation["y"] == "rare").mean() < 0.09
    assert model.properties["resampled"] is True
    assert model.properties["train_rows"] == props["rows_after_resampling"]
    # The plain model all but ignores the 5% minority; SMOTE lifts its recall by a wide margin.
    assert smote["per_class"]["rare"]["recall"] >= base["per_class"]["rare"]["recall"] + 0.25
    assert smote["balanced_accuracy"] >= base["balanced_accuracy"] + 0.05


def test_transform_undersample_raises_minority_recall(plain):
    root, examples, (_, _, base) = plain
    graph, _, under = _fit_and_score(examples, str(root / "under"), {"resample": "undersample", "seed": 0})
    counts = graph.properties["class_counts_after"]
    assert counts["rare"] == counts["common"] < 30
    assert under["per_class"]["rare"]["recall"] >= base["per_class"]["rare"]["recall"] + 0.25


def test_transform_resample_parameters_are_checked(plain, tmp_path):
    _, examples, _ = plain
    graph = TransformGraph(uri=str(tmp_path / "tg"))
    with pytest.raises(ParameterError, match="The 'resample' parameter of transform must be one of"):
        call_component(transform, {"examples": examples}, {"transform_graph": graph}, {"resample": "adasyn"})
    with pytest.raises(ParameterError, match=r"must only hold \['sampling_strategy'\].*Got \['k_neighbors'\]"):
        call_component(
            transform, {"examples": examples}, {"transform_graph": graph},
            {"resample": "undersample", "resample_params": {"k_neighbors": 3}},
        )

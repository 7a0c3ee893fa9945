"""The technique components end to end from pipeline files through LocalRunner, in small configs."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from flywheel.components import examples_io
from flywheel.components.augment import augment
from flywheel.components.find_label_issues import find_label_issues
from flywheel.dsl.artifacts import Examples, Metrics
from flywheel.errors import ParameterError
from flywheel.component_call import call_component
from flywheel.pipeline_file import load_pipeline
from flywheel.runner import LocalRunner
from tests.conftest import REPO


def _run(home, name, params):
    result = LocalRunner(home, max_workers=2).run(load_pipeline(os.path.join(REPO, "pipelines", name)), params)
    assert result.ok, result.errors
    return result


def test_active_learning_pipeline_unrolls_rounds_and_writes_the_curve(home):
    from flywheel.pipelines.active_learning import build

    pipe = build(rounds=2)
    assert sorted(t.id for t in pipe) == sorted(
        ["digits_examples", "split_pool", "query", "annotate", "query-2", "annotate-2", "learning_curve"]
    )
    result = LocalRunner(home, max_workers=2).run(pipe, {"batch_size": 30, "strategy": "margin"})
    assert result.ok, result.errors
    curve = result.outputs["learning_curve"]["curve"]
    with open(os.path.join(curve.uri, "curve.json"), encoding="utf-8") as handle:
        points = json.load(handle)
    assert points["labels"] == [20, 50, 80]
    assert points["accuracy"][-1] > points["accuracy"][0] and points["accuracy"][-1] > 0.8
    assert os.path.getsize(os.path.join(curve.uri, "curve.png")) > 1000
    labeled = result.outputs["annotate-2"]["updated"]
    frame = examples_io.read_split(labeled, "train")
    images, _ = examples_io.read_images(labeled, "train")
    assert len(frame) == len(images) == 80 and sorted(frame["al_round"].unique()) == [0, 1, 2]
    oracle = examples_io.read_split(result.outputs["split_pool"]["oracle"], "train").set_index("example_id")["label"]
    queried = frame[frame["al_round"] > 0]
    assert (queried["label"].to_numpy() == oracle.loc[queried["example_id"]].to_numpy()).all()
    remaining = examples_io.read_split(result.outputs["query-2"]["remaining"], "train")
    assert "label" not in remaining.columns and not set(remaining["example_id"]) & set(frame["example_id"])


def test_weak_supervision_pipeline_beats_majority_vote_and_prunes(home):
    generative = _run(home, "weak_supervision.py", {})
    majority = _run(home, "weak_supervision.py", {"label_model": "majority", "prune": False})
    summary = generative.outputs["weak_label"]["summary"].properties
    assert summary["label_accuracy"] > summary["majority_vote_accuracy"] + 0.05
    assert majority.outputs["weak_label"]["summary"].properties["label_accuracy"] == summary["majority_vote_accuracy"]
    table = pd.read_csv(os.path.join(generative.outputs["weak_label"]["summary"].uri, "lf_summary.csv"))
    assert {"coverage", "overlaps", "conflicts", "emp_accuracy", "learnt_accuracy"} <= set(table.columns) and len(table) == 11
    weak = examples_io.read_split(generative.outputs["weak_label"]["weak"], "train")
    assert {"proba_0", "proba_1", "gold_label"} <= set(weak.columns)
    assert np.allclose(weak[["proba_0", "proba_1"]].sum(axis=1), 1.0)
    report = generative.outputs["find_label_issues"]["report"].properties
    cleaned = examples_io.read_split(generative.outputs["find_label_issues"]["cleaned"], "train")
    assert len(cleaned) == len(weak) - report["flagged"]
    kept = examples_io.read_split(majority.outputs["find_label_issues"]["cleaned"], "train")
    assert "is_label_issue" in kept.columns and len(kept) == len(weak)


def test_augmentation_pipeline_adds_policy_copies_and_gan_samples(home):
    result = _run(home, "augmentation.py", {"per_class": 10, "n_candidates": 2, "n_mutations": 1, "n_copies": 2, "augment-2.gan_steps": 300, "augment-2.target_per_class": 25})
    policy = result.outputs["search_augmentation"]["policy"]
    with open(os.path.join(policy.uri, "policy.json"), encoding="utf-8") as handle:
        document = json.load(handle)
    assert len(document["policy"]) == 5 and "baseline_score" in document
    by_policy = result.outputs["augment"]["augmented"]
    images, frame = examples_io.read_images(by_policy, "train")
    assert len(images) == len(frame) == 300 and frame["synthetic"].sum() == 200 and images.dtype == np.uint8
    by_gan = result.outputs["augment-2"]["augmented"]
    _, frame = examples_io.read_images(by_gan, "train")
    assert frame.groupby("label").size().tolist() == [25] * 10 and frame["synthetic"].sum() == 150
    assert len(examples_io.read_images(by_gan, "eval")[1]) == len(examples_io.read_images(by_policy, "eval")[1])


def test_find_label_issues_on_images_flags_injected_noise(tmp_path):
    from sklearn.datasets import load_digits

    from flywheel.techniques.label_issues import noisy_labels

    digits = load_digits()
    images = np.round(digits.images[:400] * 255 / 16).astype(np.uint8)[..., None]
    noisy, flipped = noisy_labels(digits.target[:400], noise_rate=0.2, random_state=0)
    examples = Examples(uri=str(tmp_path / "in"), properties={"label": "label", "modality": "image", "class_names": list(range(10))})
    examples_io.write_images(examples, "train", images, pd.DataFrame({"label": noisy, "was_flipped": flipped}))
    outputs = {"cleaned": Examples(uri=str(tmp_path / "out")), "report": Metrics(uri=str(tmp_path / "rep"))}
    call_component(find_label_issues, {"examples": examples}, outputs, {"cv_folds": 3})
    _, kept = examples_io.read_images(outputs["cleaned"], "train")
    removed = 400 - len(kept)
    assert removed == outputs["report"].properties["flagged"] > 40
    assert kept["was_flipped"].sum() < flipped.sum() - 0.5 * removed  # most removed rows were noise


def test_augment_refuses_a_policy_run_without_a_policy(tmp_path):
    examples = Examples(uri=str(tmp_path / "in"), properties={"label": "label", "modality": "image"})
    with pytest.raises(ParameterError, match="needs the 'policy' input"):
        augment.fn(examples=examples, augmented=Examples(uri=str(tmp_path / "out")), method="policy")
    with pytest.raises(ParameterError, match="The 'method' parameter of augment"):
        augment(examples=examples, augmented=Examples(uri=str(tmp_path / "out")), method="vae")

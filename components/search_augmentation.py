"""search_augmentation: AutoAugment-style policy search -> an AugmentationPolicy artifact.

A small search (random + (1+1)-evolution, child = logistic regression or a small CNN),
not AutoAugment's reinforcement-learning search; see
``flywheel.techniques.autoaugment``. The best policy is written as
``policy.json`` ({"policy": [[[op, p, m], ...], ...], ...}); ``augment``
applies it offline.
"""

from __future__ import annotations

import json

from flywheel.dsl.artifacts import Artifact, Examples
from flywheel.dsl.component import Input, Output, component
from flywheel.errors import FlywheelError

from flywheel.components.data import features as data
from flywheel.components import examples_io

POLICY_FILE = "policy.json"


class AugmentationPolicy(Artifact):
    """A searched augmentation policy (``policy.json``)."""

    TYPE_NAME = "AugmentationPolicy"
    SCHEMA_TITLE = "system.Artifact"


def read_policy(policy: Artifact) -> dict:
    """The JSON document of an AugmentationPolicy artifact.

    Raises:
        FlywheelError: the artifact has no policy.json.
    """
    try:
        with open(policy.path(POLICY_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise FlywheelError(f"No {POLICY_FILE} in the policy artifact at {policy.uri}; it comes from search_augmentation.") from exc


def image_split(examples: Examples, split: str, classes: list | None = None):
    """(images as float in [0, 1], class indices, frame, classes) of an image split.

    Raises:
        FlywheelError: the Examples are not images.
    """
    if not examples_io.is_image(examples):
        raise FlywheelError(f"Examples at {examples.uri} are not images (modality 'image'); augmentation works on image Examples.")
    label = examples_io.label_of(examples)
    flat, frame, images = data.load_features(examples, split)
    classes = classes or data.class_names_of(examples, frame, label)
    return flat.reshape(images.shape), data.encode_labels(frame[label].tolist(), classes, "augmentation"), frame, classes


@component
def search_augmentation(
    examples: Input[Examples],
    policy: Output[AugmentationPolicy],
    validation_fraction: float = 0.3,
    n_candidates: int = 16,
    n_mutations: int = 8,
    n_subpolicies: int = 5,
    ops_per_subpolicy: int = 2,
    n_copies: int = 4,
    child_model: str = "logreg",
    child_epochs: int = 20,
    seed: int = 0,
) -> None:
    """Searches an augmentation policy on a stratified validation part of the train split.

    The policy is scored on held-out *train* images, never on ``eval``.
    Properties: ``best_score``, ``baseline_score`` (validation accuracy without
    augmentation), ``trials``; ``trials.json`` lists every candidate.

    ``child_model`` scores each candidate with "logreg" (logistic regression
    on pixels) or "cnn" (a small Keras CNN trained ``child_epochs`` epochs; much
    slower). The other parameters are ``PolicySearch``'s.

    Raises:
        ParameterError: a parameter breaks its rule.
        FlywheelError: not image Examples, or too few images to split.
    """
    from sklearn.model_selection import train_test_split

    from flywheel.techniques.autoaugment import PolicySearch

    images, y, _, _ = image_split(examples, "train")
    try:
        fit_idx, val_idx = train_test_split(range(len(y)), test_size=validation_fraction, stratify=y, random_state=seed)
    except ValueError as exc:
        raise FlywheelError(f"search_augmentation cannot split {len(y)} train images for validation: {exc}") from exc
    search = PolicySearch(
        n_candidates=n_candidates, n_mutations=n_mutations, n_subpolicies=n_subpolicies,
        ops_per_subpolicy=ops_per_subpolicy, n_copies=n_copies, child_model=child_model, child_epochs=child_epochs,
        random_state=seed,
    ).fit(images[fit_idx], y[fit_idx], images[val_idx], y[val_idx])
    document = {
        "policy": search.best_policy_, "score": search.best_score_, "baseline_score": search.baseline_score_,
        "child_model": child_model,
    }
    with open(policy.path(POLICY_FILE), "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    with open(policy.path("trials.json"), "w", encoding="utf-8") as handle:
        json.dump(search.trials_, handle)
    policy.properties.update({
        "best_score": search.best_score_, "baseline_score": search.baseline_score_, "trials": len(search.trials_),
        "child_model": child_model,
    })

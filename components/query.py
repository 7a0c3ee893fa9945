"""Active learning as components: split a pool, query it, label the batch, draw the curve.

One round of the loop is ``query`` (fit a model on the labelled set, rank the
pool, pick a batch) followed by ``annotate`` (an oracle labels the batch and
it joins the labelled set). ``query`` fits its model *inside* the component
rather than taking a Model artifact: its model must be fitted on exactly the
current labelled set, query-by-committee needs several bootstrap models
anyway, and a few-second fit per round keeps the unrolled pipeline to two
nodes per round. In simulation the oracle is an Examples artifact holding the
held-out true labels (``split_pool`` writes it); with people, ``annotate``
would read their labels from the same place.

Examples written here keep the input's modality (image or tabular), carry an
``example_id`` column, and the labelled set has an ``al_round`` column (0 for
the seed set), from which ``learning_curve`` retrains round by round.
"""

from __future__ import annotations

from typing import Annotated

import json

from flywheel.dsl.artifacts import Examples, Metrics
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval
from flywheel.errors import FlywheelError

from flywheel.components.data import features as data
from flywheel.components import examples_io

POOL_SPLIT = "train"
ROUND_COLUMN = "al_round"


def _take(source: Examples, split: str, rows, target: Examples, frame) -> None:
    images = None
    if examples_io.is_image(source):
        images, _ = examples_io.read_images(source, split)
        images = images[rows]
    data.write_like(source, target, POOL_SPLIT, frame, images)


@component
def split_pool(
    examples: Input[Examples],
    labeled: Output[Examples],
    pool: Output[Examples],
    oracle: Output[Examples],
    initial_per_class: Annotated[int, Interval(int, 1, None)] = 2,
    seed: int = 0,
) -> None:
    """Splits the train split into a small labelled seed set, an unlabelled pool and its oracle.

    Args:
        examples: Examples with a labelled ``train`` split and an ``example_id`` column.
        labeled: Receives ``initial_per_class`` labelled examples per class (``al_round`` 0).
        pool: Receives the other examples without their label.
        oracle: Receives ``example_id`` and the true label of every pool example.
        initial_per_class: Seed labels per class.
        seed: Seeds the choice of the seed set.

    Raises:
        ParameterError: initial_per_class < 1.
        FlywheelError: no label, or a class with too few examples.
    """
    import numpy as np

    label = examples_io.label_of(examples)
    frame = examples_io.read_split(examples, POOL_SPLIT).reset_index(drop=True)
    if data.ID_COLUMN not in frame.columns:
        frame[data.ID_COLUMN] = np.arange(len(frame), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for value in sorted(frame[label].unique().tolist()):
        rows = np.flatnonzero(frame[label].to_numpy() == value)
        if len(rows) <= initial_per_class:
            raise FlywheelError(f"Class {value!r} has {len(rows)} train examples; split_pool needs more than initial_per_class={initial_per_class}.")
        chosen.extend(rng.choice(rows, initial_per_class, replace=False).tolist())
    chosen = np.sort(np.array(chosen))
    rest = np.setdiff1d(np.arange(len(frame)), chosen)
    _take(examples, POOL_SPLIT, chosen, labeled, frame.iloc[chosen].assign(**{ROUND_COLUMN: 0}))
    _take(examples, POOL_SPLIT, rest, pool, frame.iloc[rest].drop(columns=[label]))
    examples_io.write_split(oracle, POOL_SPLIT, frame.iloc[rest][[data.ID_COLUMN, label]].reset_index(drop=True))
    oracle.properties.update({"label": label, "row_counts": {POOL_SPLIT: len(rest)}})
    labeled.properties["labels_used"] = len(chosen)


@component
def query(
    labeled: Input[Examples],
    pool: Input[Examples],
    batch: Output[Examples],
    remaining: Output[Examples],
    strategy: str = "entropy",
    batch_size: int = 20,
    committee_size: int = 5,
    C: float = 1.0,
    seed: int = 0,
) -> None:
    """Picks the next batch of pool examples to label (see UncertaintySampler).

    Args:
        labeled: The labelled set so far.
        pool: Unlabelled examples to choose from.
        batch: Receives the chosen examples (no label), with an ``al_score`` column.
        remaining: Receives the rest of the pool.
        strategy: least_confidence, margin, entropy, committee or random.
        batch_size: How many to pick (all that are left if fewer).
        committee_size: Bootstrap models for ``committee``.
        C: Inverse regularisation of the logistic-regression model.
        seed: Seeds bootstraps, the random baseline and tie-breaks.

    Raises:
        ParameterError: a parameter breaks its rule.
        FlywheelError: the pool is empty or has other features than the labelled set.
    """
    import numpy as np

    from flywheel.techniques.active_learning import UncertaintySampler

    label = examples_io.label_of(labeled)
    X, frame, X_pool, pool_frame, pool_images = data.aligned_features(labeled, POOL_SPLIT, pool, POOL_SPLIT, label=label)
    if len(X_pool) == 0:
        raise FlywheelError(f"The pool at {pool.uri} is empty; run fewer rounds or use a smaller batch_size.")
    classes = data.class_names_of(labeled, frame, label)
    y = data.encode_labels(frame[label].tolist(), classes, "query")
    sampler = UncertaintySampler(
        strategy=strategy, batch_size=min(batch_size, len(X_pool)), committee_size=committee_size, C=C, random_state=seed
    )
    picked = sampler.fit(X, y).query(X_pool)
    rest = np.setdiff1d(np.arange(len(X_pool)), picked)
    chosen = pool_frame.iloc[picked].assign(al_score=sampler.scores_[picked])
    data.write_like(pool, batch, POOL_SPLIT, chosen, None if pool_images is None else pool_images[picked])
    data.write_like(pool, remaining, POOL_SPLIT, pool_frame.iloc[rest], None if pool_images is None else pool_images[rest])
    batch.properties.update({"strategy": strategy, "mean_score": float(sampler.scores_[picked].mean())})


@component
def annotate(
    labeled: Input[Examples],
    batch: Input[Examples],
    oracle: Input[Examples],
    updated: Output[Examples],
) -> None:
    """Labels a queried batch from the oracle and appends it to the labelled set.

    Raises:
        FlywheelError: the oracle has no label for an example of the batch.
    """
    import numpy as np
    import pandas as pd

    label = examples_io.label_of(labeled)
    frame = examples_io.read_split(labeled, POOL_SPLIT)
    chosen = examples_io.read_split(batch, POOL_SPLIT)
    truth = examples_io.read_split(oracle, POOL_SPLIT).set_index(data.ID_COLUMN)[label]
    missing = sorted(set(chosen[data.ID_COLUMN]) - set(truth.index))
    if missing:
        raise FlywheelError(f"The oracle at {oracle.uri} has no label for example ids {missing[:5]}.")
    new_round = int(frame[ROUND_COLUMN].max()) + 1
    chosen = chosen.drop(columns=["al_score"]).assign(**{label: truth.loc[chosen[data.ID_COLUMN]].to_numpy(), ROUND_COLUMN: new_round})
    merged = pd.concat([frame, chosen[frame.columns]], ignore_index=True)
    images = None
    if examples_io.is_image(labeled):
        images = np.concatenate([examples_io.read_images(labeled, POOL_SPLIT)[0], examples_io.read_images(batch, POOL_SPLIT)[0]])
    data.write_like(labeled, updated, POOL_SPLIT, merged, images)
    updated.properties["labels_used"] = len(merged)


@component
def learning_curve(
    labeled: Input[Examples],
    test: Input[Examples],
    curve: Output[Metrics],
    test_split: str = "eval",
    C: float = 1.0,
) -> None:
    """Accuracy on ``test_split`` after each round: refits on the labels known by then.

    Writes ``curve.json`` ({"labels": [...], "accuracy": [...]}) and
    ``curve.png``; properties ``final_accuracy`` and ``labels_used``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    label = examples_io.label_of(labeled)
    X, frame, X_test, test_frame, _ = data.aligned_features(labeled, POOL_SPLIT, test, test_split, label=label)
    classes = data.class_names_of(labeled, frame, label)
    y = data.encode_labels(frame[label].tolist(), classes, "learning_curve")
    y_test = data.encode_labels(test_frame[label].tolist(), classes, "learning_curve")
    rounds = frame[ROUND_COLUMN].to_numpy()
    labels_seen, accuracy = [], []
    for r in range(int(rounds.max()) + 1):
        known = rounds <= r
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=C, max_iter=2000).fit(X[known], y[known])
        labels_seen.append(int(known.sum()))
        accuracy.append(float(model.score(X_test, y_test)))
    with open(curve.path("curve.json"), "w", encoding="utf-8") as handle:
        json.dump({"labels": labels_seen, "accuracy": accuracy}, handle)
    plot_curves({"this run": (labels_seen, accuracy)}, curve.path("curve.png"), title="Active learning")
    curve.properties.update({"final_accuracy": accuracy[-1], "labels_used": labels_seen[-1], "rounds": len(accuracy) - 1})


def plot_curves(curves: dict, path: str, *, title: str) -> None:
    """Writes accuracy-vs-labels curves ({name: (labels, accuracy)}) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, y) in curves.items():
        ax.plot(x, y, marker=".", label=name)
    ax.set_xlabel("labelled examples")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Measured results of the image/imbalance techniques, each against a plain baseline in the same run.

Every configuration runs through the components a pipeline uses (ingest ->
transform -> train -> evaluate), so the numbers are those of the pipeline
options, on data that ships with the packages:

* ``imbalance``: scikit-learn ``make_classification`` with a 5% minority
  (4,000 rows, 10 features); plain vs SMOTE and random undersampling
  (``transform``), class weights and focal loss (``train``). Minority recall
  and balanced accuracy on the (hash-split, equally imbalanced) eval split.
* ``coteaching``: digits (``ingest(path="sklearn-digits")``) with 20% and 45%
  symmetric label noise injected into the train split only (a label flips to
  one of the 9 other classes uniformly); standard training and co-teaching with
  the same CNN and the same epochs, no early stopping; eval labels are clean.
* ``augment``: low-data digits, 10 and 30 train images per class (seeded
  draws from the train split, 20% of them held out as a ``validation`` split);
  no augmentation vs mixup and RandAugment (``train`` options) and vs GAN
  samples and a searched policy (offline, through ``search_augmentation`` and
  ``augment``), the same CNN and epochs; accuracy on the full eval split (349
  images).
* ``augment_cnn_child``: the same subsets and training, no augmentation vs the
  searched policy whose candidates a small CNN scored
  (``search_augmentation(child_model="cnn")``) instead of logistic regression.

    .venv/bin/python benchmarks/techniques_images.py all --seeds 3 [--out results.json]

Prints one Markdown table per study (mean and standard deviation over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quiet() -> None:
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def run_components(examples: Any, root: str, transform_params: dict, train_params: dict) -> dict[str, Any]:
    """transform -> train -> evaluate on ``examples``; returns evaluation.json plus the model properties."""
    from flywheel.components.evaluate import evaluate
    from flywheel.components.train import train
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import ClassificationMetrics, Markdown, Model, ModelBlessing, ModelEvaluation, TransformGraph
    from flywheel.component_call import call_component

    graph = TransformGraph(uri=os.path.join(root, "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, transform_params)
    model = Model(uri=os.path.join(root, "model"))
    started = time.perf_counter()
    call_component(train, {"examples": examples, "transform_graph": graph}, {"model": model}, train_params)
    seconds = time.perf_counter() - started
    outputs = {
        "evaluation": ModelEvaluation(uri=os.path.join(root, "ev")),
        "blessing": ModelBlessing(uri=os.path.join(root, "bl")),
        "metrics": ClassificationMetrics(uri=os.path.join(root, "cm")),
        "summary": Markdown(uri=os.path.join(root, "md")),
    }
    call_component(
        evaluate, {"examples": examples, "model": model}, outputs,
        {"registry": os.path.join(root, "registry"), "thresholds": {}, "slice_features": []},
    )
    with open(outputs["evaluation"].path("evaluation.json"), encoding="utf-8") as f:
        report = json.load(f)
    return {"overall": report["overall"], "model": model.properties, "train_seconds": seconds}


def _ingest(path: str, root: str, **params: Any) -> Any:
    from flywheel.components.ingest import ingest
    from flywheel.dsl.artifacts import Examples
    from flywheel.component_call import call_component

    examples = Examples(uri=os.path.join(root, "examples"))
    call_component(ingest, {}, {"examples": examples}, {"path": path, **params})
    return examples


def _summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


# --------------------------------------------------------------------------- imbalance

IMBALANCE_CONFIGS = {
    "plain": ({}, {}),
    "SMOTE (transform resample='smote')": ({"resample": "smote"}, {}),
    "random undersampling (transform resample='undersample')": ({"resample": "undersample"}, {}),
    "class weights (train class_weights='balanced')": ({}, {"class_weights": "balanced"}),
    "focal loss (train loss='focal', gamma 2)": ({}, {"loss": "focal"}),
}


def imbalance(seeds: int, work: str) -> dict[str, Any]:
    """Minority recall and balanced accuracy per configuration."""
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=4000, n_features=10, n_informative=4, n_redundant=2, weights=[0.95, 0.05],
        class_sep=0.8, flip_y=0.0, random_state=7,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame["target"] = ["minority" if v == 1 else "majority" for v in y]
    path = os.path.join(work, "imbalanced.parquet")
    frame.to_parquet(path, index=False)
    examples = _ingest(path, os.path.join(work, "imb"), label="target", eval_ratio=0.3)
    results: dict[str, Any] = {"rows": examples.properties["row_counts"], "configs": {}}
    base_train = {"epochs": 100, "hidden_units": [32, 16], "learning_rate": 0.003}
    for name, (transform_params, train_params) in IMBALANCE_CONFIGS.items():
        recalls, balanced = [], []
        for seed in range(seeds):
            out = run_components(
                examples, os.path.join(work, "imb", f"{len(results['configs'])}-{seed}"),
                {**transform_params, "seed": seed}, {**base_train, **train_params, "seed": seed},
            )
            recalls.append(out["overall"]["per_class"]["minority"]["recall"])
            balanced.append(out["overall"]["balanced_accuracy"])
        results["configs"][name] = {"minority_recall": recalls, "balanced_accuracy": balanced}
        print(f"  {name}: minority recall {_summary(recalls)}, balanced accuracy {_summary(balanced)}", flush=True)
    return results


# --------------------------------------------------------------------------- co-teaching

def noisy_copy(examples: Any, uri: str, rate: float, seed: int) -> Any:
    """Image Examples whose train labels are flipped with probability ``rate`` to another class, uniformly."""
    import numpy as np

    from flywheel.components import examples_io
    from flywheel.dsl.artifacts import Examples

    classes = list(examples.properties["class_names"])
    rng = np.random.RandomState(seed)
    target = Examples(uri=uri, properties=dict(examples.properties))
    for split in examples_io.split_names(examples):
        images, frame = examples_io.read_images(examples, split)
        if split == "train":
            labels = frame["label"].to_numpy(dtype=object).copy()
            flip = rng.rand(len(labels)) < rate
            for i in np.flatnonzero(flip):
                labels[i] = rng.choice([c for c in classes if c != labels[i]])
            frame = frame.assign(label=labels)
            target.properties["noise_rate_actual"] = float(flip.mean())
        examples_io.write_images(target, split, images, frame)
    return target


def coteaching(seeds: int, work: str, epochs: int = 40, rates: tuple[float, ...] = (0.2, 0.45)) -> dict[str, Any]:
    """Clean test accuracy of standard training vs co-teaching under symmetric label noise."""
    clean = _ingest("sklearn-digits", os.path.join(work, "cot"))
    base = {"epochs": epochs, "early_stopping_patience": 0, "learning_rate": 0.003, "batch_size": 64,
            "hidden_units": [64], "dropout": 0.25}
    results: dict[str, Any] = {"epochs": epochs, "rates": {}}
    for rate in rates:
        rows: dict[str, list[float]] = {"standard": [], "co-teaching": []}
        for seed in range(seeds):
            noisy = noisy_copy(clean, os.path.join(work, "cot", f"noisy-{rate}-{seed}"), rate, seed)
            for name, extra in (
                ("standard", {}),
                ("co-teaching", {"coteaching": True, "forget_rate": rate, "num_gradual": 10}),
            ):
                out = run_components(
                    noisy, os.path.join(work, "cot", f"{name}-{rate}-{seed}"), {}, {**base, **extra, "seed": seed}
                )
                rows[name].append(out["overall"]["accuracy"])
        results["rates"][str(rate)] = rows
        print(
            f"  noise {rate:.0%}: standard {_summary(rows['standard'])}, co-teaching {_summary(rows['co-teaching'])}",
            flush=True,
        )
    return results


# --------------------------------------------------------------------------- augmentation

AUGMENT_CONFIGS = {
    "none": {},
    "mixup alpha=0.2": {"mixup_alpha": 0.2},
    "mixup alpha=1.0": {"mixup_alpha": 1.0},
    "RandAugment N=1 M=3": {"randaugment_n": 1, "randaugment_m": 3.0},
    "RandAugment N=2 M=5": {"randaugment_n": 2, "randaugment_m": 5.0},
}


# Grown train splits mean more gradient steps per epoch; "repeat" (the real images
# 1 + POLICY_COPIES times, no augmentation) is the step-matched control for "policy".
OFFLINE_CONFIGS = {
    "none, train split repeated 5x (step control)": "repeat",
    "GAN samples to 60/class": "gan",
    "searched policy, 4 copies": "policy",
}
# The searched policy again, its candidates scored by a small CNN instead of logistic
# regression (study "augment_cnn_child"; slower, so not part of "augment").
CNN_CHILD_CONFIGS = {"searched policy (CNN child), 4 copies": "policy-cnn"}
CNN_CHILD_EPOCHS = 15
GAN_TARGET_PER_CLASS = 60
GAN_STEPS = 3000
POLICY_COPIES = 4


def low_data_copy(examples: Any, uri: str, per_class: int, seed: int, validation_fraction: float = 0.2) -> Any:
    """Image Examples with ``per_class`` seeded train images of each class; eval is untouched.

    A stratified ``validation_fraction`` of those images becomes a ``validation``
    split, drawn exactly as ``train`` would draw its hold-out for ``seed``; so
    offline augmentation grows only the images a model fits, and every
    configuration validates on the same real images.
    """
    import numpy as np

    from flywheel.components import examples_io
    from flywheel.components.data import resampling
    from flywheel.dsl.artifacts import Examples

    rng = np.random.RandomState(seed)
    target = Examples(uri=uri, properties=dict(examples.properties))
    images, frame = examples_io.read_images(examples, "train")
    keep = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(frame["label"].to_numpy() == c), per_class, replace=False)
        for c in examples.properties["class_names"]
    ]))
    images, frame = images[keep], frame.iloc[keep].reset_index(drop=True)
    fit, val = resampling.holdout_indices(frame["label"].to_numpy(), validation_fraction, seed)
    examples_io.write_images(target, "train", images[fit], frame.iloc[fit].reset_index(drop=True))
    examples_io.write_images(target, "validation", images[val], frame.iloc[val].reset_index(drop=True))
    examples_io.write_images(target, "eval", *examples_io.read_images(examples, "eval"))
    target.properties["split_names"] = examples_io.split_names(target)
    target.properties["row_counts"] = {
        "train": int(len(fit)), "validation": int(len(val)), "eval": examples.properties["row_counts"]["eval"],
    }
    return target


def repeated_copy(examples: Any, uri: str, times: int) -> Any:
    """Image Examples whose train split is the original one ``times`` times over; other splits unchanged."""
    import numpy as np

    from flywheel.components import examples_io
    from flywheel.dsl.artifacts import Examples

    target = Examples(uri=uri, properties=dict(examples.properties))
    for split in examples_io.split_names(examples):
        images, frame = examples_io.read_images(examples, split)
        if split == "train":
            images = np.concatenate([images] * times)
            frame = frame.iloc[np.tile(np.arange(len(frame)), times)].reset_index(drop=True)
        examples_io.write_images(target, split, images, frame)
    counts = examples.properties["row_counts"]
    target.properties["row_counts"] = {**counts, "train": times * int(counts["train"])}
    return target


def offline_augmented(subset: Any, root: str, method: str, seed: int) -> tuple[Any, dict[str, Any]]:
    """``subset`` grown by the ``augment`` component (after ``search_augmentation`` for a policy).

    ``method`` is "gan", "policy", "policy-cnn" (search with the CNN child) or
    "repeat" (the step control: no component, the real images repeated). Returns the augmented Examples and what the steps recorded (synthetic rows,
    the search's validation scores and seconds).
    """
    from flywheel.components.augment import augment as augment_component
    from flywheel.components.search_augmentation import AugmentationPolicy, search_augmentation
    from flywheel.dsl.artifacts import Examples
    from flywheel.component_call import call_component

    inputs: dict[str, Any] = {"examples": subset}
    info: dict[str, Any] = {}
    started = time.perf_counter()
    if method == "repeat":
        return repeated_copy(subset, os.path.join(root, "augmented"), 1 + POLICY_COPIES), info
    if method in ("policy", "policy-cnn"):
        policy = AugmentationPolicy(uri=os.path.join(root, "policy"))
        child = {"child_model": "cnn", "child_epochs": CNN_CHILD_EPOCHS} if method == "policy-cnn" else {}
        call_component(
            search_augmentation, {"examples": subset}, {"policy": policy}, {"n_copies": POLICY_COPIES, "seed": seed, **child}
        )
        info.update(
            search_best=policy.properties["best_score"], search_baseline=policy.properties["baseline_score"],
            search_seconds=round(time.perf_counter() - started, 1),
        )
        inputs["policy"] = policy
    augmented = Examples(uri=os.path.join(root, "augmented"))
    call_component(
        augment_component, inputs, {"augmented": augmented},
        {"method": "policy" if method == "policy-cnn" else method, "target_per_class": GAN_TARGET_PER_CLASS,
         "n_copies": POLICY_COPIES, "gan_steps": GAN_STEPS, "seed": seed},
    )
    info.update(synthetic_rows=augmented.properties["synthetic_rows"], seconds=round(time.perf_counter() - started, 1))
    return augmented, info


def augment(
    seeds: int, work: str, sizes: tuple[int, ...] = (10, 30), epochs: int = 80, configs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Eval accuracy of the CNN trained on few images per class, with and without augmentation.

    ``AUGMENT_CONFIGS`` are ``train`` options on the subset itself;
    ``OFFLINE_CONFIGS`` first grow the subset's train split with the
    ``augment`` component, then train plainly. Same CNN, epochs and seed for all.
    ``configs`` (name -> train options dict, or an offline method name) replaces
    that default set.
    """
    clean = _ingest("sklearn-digits", os.path.join(work, "aug"))
    base = {"epochs": epochs, "early_stopping_patience": 0, "learning_rate": 0.003, "batch_size": 32,
            "hidden_units": [64], "dropout": 0.25}
    configs = configs if configs is not None else {**AUGMENT_CONFIGS, **OFFLINE_CONFIGS}
    names = list(configs)
    offline_names = [name for name, how in configs.items() if isinstance(how, str)]
    results: dict[str, Any] = {"epochs": epochs, "sizes": {}, "offline": {}}
    for size in sizes:
        rows: dict[str, list[float]] = {name: [] for name in names}
        offline: dict[str, list[dict[str, Any]]] = {name: [] for name in offline_names}
        for seed in range(seeds):
            subset = low_data_copy(clean, os.path.join(work, "aug", f"low-{size}-{seed}"), size, seed)
            for name in names:
                root = os.path.join(work, "aug", f"{size}-{seed}-{names.index(name)}")
                examples = subset
                options: dict[str, Any] = {}
                if name in offline_names:
                    examples, info = offline_augmented(subset, root, configs[name], seed)
                    offline[name].append(info)
                else:
                    options = configs[name]
                out = run_components(examples, root, {}, {**base, **options, "seed": seed})
                rows[name].append(out["overall"]["accuracy"])
            print(f"    {size}/class seed {seed}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in rows.items()), flush=True)
        results["sizes"][str(size)] = rows
        results["offline"][str(size)] = offline
        print(f"  {size} per class: " + ", ".join(f"{n} {_summary(v)}" for n, v in rows.items()), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=("imbalance", "coteaching", "augment", "augment_cnn_child", "all"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", help="write the raw numbers as JSON here")
    parser.add_argument("--sizes", default="10,30", help="augment studies: train images per class, comma-separated")
    args = parser.parse_args(argv)
    _quiet()
    sys.path.insert(0, REPO)
    sizes = tuple(int(size) for size in args.sizes.split(","))
    studies = {
        "imbalance": imbalance, "coteaching": coteaching,
        "augment": lambda seeds, work: augment(seeds, work, sizes),
        "augment_cnn_child": lambda seeds, work: augment(seeds, work, sizes, configs={"none": {}, **CNN_CHILD_CONFIGS}),
    }
    chosen = list(studies) if args.study == "all" else [args.study]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        for name in chosen:
            started = time.perf_counter()
            print(f"{name}:", flush=True)
            results[name] = studies[name](args.seeds, work)
            results[name]["seconds"] = round(time.perf_counter() - started, 1)
            print(f"  ({results[name]['seconds']} s)", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

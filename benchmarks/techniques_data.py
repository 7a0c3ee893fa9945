"""Measured results of the data-centric techniques, each against a plain baseline in the same run.

    python benchmarks/techniques_data.py                     # everything (~5 min on 2 cores)
    python benchmarks/techniques_data.py --only active_learning weak_supervision
    python benchmarks/techniques_data.py --seeds 3 --out docs/techniques

Prints Markdown tables (pasted into docs/techniques.md) and writes the
active-learning curve to ``<out>/active_learning_digits.png``. Every number is
a mean over ``--seeds`` seeds; all randomness is seeded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flywheel.components.data.bundled import digits_arrays, table_frame  # noqa: E402
from flywheel.components.data.features import tabular_features  # noqa: E402
from flywheel.techniques.active_learning import UncertaintySampler  # noqa: E402

warnings.filterwarnings("ignore")


def _digits_split(seed: int):
    from sklearn.model_selection import train_test_split

    images, y = digits_arrays()
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
    return images / 255.0, y, train, test


def _logreg(X, y, C=1.0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000).fit(X, y)


def active_learning(seeds: int, out: str) -> None:
    from flywheel.components.query import plot_curves

    strategies = ["random", "least_confidence", "margin", "entropy", "committee"]
    initial, batch, budget = 20, 10, 300
    curves = {s: [] for s in strategies}
    for seed in range(seeds):
        images, y, train, test = _digits_split(seed)
        X = images.reshape(len(images), -1)
        rng = np.random.default_rng(seed)
        start = np.concatenate([rng.choice(train[y[train] == c], initial // 10, replace=False) for c in range(10)])
        for strategy in strategies:
            labeled, pool = list(start), np.setdiff1d(train, start)
            acc = []
            while True:
                sampler = UncertaintySampler(strategy=strategy, batch_size=batch, committee_size=5, random_state=seed)
                sampler.fit(X[labeled], y[labeled])
                # accuracy of one model on all labels so far (a committee member saw a bootstrap only)
                acc.append(_logreg(X[labeled], y[labeled]).score(X[test], y[test]))
                if len(labeled) >= budget:
                    break
                picked = pool[sampler.query(X[pool])]
                labeled += picked.tolist()
                pool = np.setdiff1d(pool, picked)
            curves[strategy].append(acc)
    labels = list(range(initial, budget + 1, batch))
    mean = {s: np.mean(curves[s], axis=0) for s in strategies}
    target = mean["random"][-1]
    print(f"\n### Active learning (digits, logistic regression, {seeds} seeds, start {initial} labels, batch {batch})\n")
    print("| strategy | acc @ 50 | acc @ 100 | acc @ 200 | acc @ 300 | labels to reach random's acc @ 300 |")
    print("|---|---|---|---|---|---|")
    for s in strategies:
        reach = next((n for n, a in zip(labels, mean[s]) if a >= target), None)
        at = {n: mean[s][labels.index(n)] for n in (50, 100, 200, 300)}
        print(f"| {s} | {at[50]:.3f} | {at[100]:.3f} | {at[200]:.3f} | {at[300]:.3f} | {reach if reach else '> 300'} |")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "active_learning_digits.png")
    plot_curves({s: (labels, mean[s]) for s in strategies}, path, title=f"Digits, mean of {seeds} seeds")
    print(f"\nCurve: {path}")


def weak_supervision(seeds: int, out: str) -> None:
    from sklearn.model_selection import train_test_split

    from flywheel.pipelines.weak_supervision import BREAST_CANCER_LFS
    from flywheel.techniques.weak_supervision import (
        LabelModel,
        apply_labeling_functions,
        lf_summary,
        majority_vote,
        pretrain_finetune,
        resolve_labeling_functions,
    )

    frame, label = table_frame("breast_cancer")
    y = frame[label].to_numpy()
    lfs = resolve_labeling_functions(BREAST_CANCER_LFS)
    L = apply_labeling_functions(frame, lfs, [0, 1])
    covered = (L != -1).any(axis=1)
    table = lf_summary(L, y, [lf.name for lf in lfs])
    dependent = LabelModel(cardinality=2).fit(L)
    independent = LabelModel(cardinality=2, dependency_threshold=None).fit(L)
    table["learnt_accuracy"] = dependent.lf_accuracy_.round(3)
    print("\n### Weak supervision: LF summary (breast cancer, all 569 rows; gold used only for the last columns)\n")
    print(table.round(3).to_markdown(index=False))
    print("\n| labels from | label accuracy (covered rows) |\n|---|---|")
    for name, proba in (
        ("majority vote", majority_vote(L, 2)),
        ("label model, independent LFs (Dawid-Skene)", independent.predict_proba(L)),
        ("label model, correlated LFs grouped (default)", dependent.predict_proba(L)),
    ):
        print(f"| {name} | {(proba.argmax(axis=1) == y)[covered].mean():.3f} |")

    X, _ = tabular_features(frame, [label])
    rows = []
    for n_gold in (10, 20, 40):
        gold_only, pretrained = [], []
        for seed in range(seeds):
            train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
            model = LabelModel(cardinality=2).fit(L[train])
            proba = model.predict_proba(L[train])
            gold = np.random.default_rng(seed).choice(train, n_gold, replace=False)
            while len(np.unique(y[gold])) < 2:
                gold = np.random.default_rng(seed + 100).choice(train, n_gold, replace=False)
            from sklearn.neural_network import MLPClassifier
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            plain = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=seed))
            gold_only.append(plain.fit(X[gold], y[gold]).score(X[test], y[test]))
            both = pretrain_finetune(X[train], proba, X[gold], y[gold], random_state=seed)
            pretrained.append(both.score(X[test], y[test]))
        rows.append((n_gold, np.mean(gold_only), np.std(gold_only), np.mean(pretrained), np.std(pretrained)))
    print(f"\n### Weakly supervised pre-training (MLP 32, test split 30%, {seeds} seeds)\n")
    print("| gold labels | gold only | pre-train on label-model labels + fine-tune on gold |\n|---|---|---|")
    for n, a, sa, b, sb in rows:
        print(f"| {n} | {a:.3f} ± {sa:.3f} | {b:.3f} ± {sb:.3f} |")


def confident_learning(seeds: int, out: str) -> None:
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from flywheel.techniques.label_issues import ConfidentLearning, noisy_labels

    images, digit_y = digits_arrays()
    penguins, label = table_frame("penguins")
    species = sorted(penguins[label].unique())
    pX, _ = tabular_features(penguins, [label])
    data = {
        "digits": (images.reshape(len(images), -1) / 255.0, digit_y),
        "penguins": (pX, np.array([species.index(s) for s in penguins[label]])),
    }
    print(f"\n### Confident learning (cleanlab find_label_issues, 5-fold out-of-fold probabilities, {seeds} seeds)\n")
    print("| data | noise | rate | flagged | precision | recall | test acc, noisy labels | test acc, pruned |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (X, y) in data.items():
        for kind in ("symmetric", "class_conditional"):
            for rate in (0.1, 0.3):
                stats = []
                for seed in range(seeds):
                    train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
                    noisy, flipped = noisy_labels(y[train], noise_rate=rate, kind=kind, random_state=seed)
                    finder = ConfidentLearning(cv_folds=5, random_state=seed).fit(X[train], noisy)
                    flagged = finder.label_issues_
                    precision = (flagged & flipped).sum() / max(flagged.sum(), 1)
                    recall = (flagged & flipped).sum() / max(flipped.sum(), 1)

                    def fit(rows, labels):
                        from sklearn.linear_model import LogisticRegression

                        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[train][rows], labels)

                    everything = np.ones(len(train), dtype=bool)
                    acc_noisy = fit(everything, noisy).score(X[test], y[test])
                    acc_pruned = fit(~flagged, noisy[~flagged]).score(X[test], y[test])
                    stats.append((flagged.mean(), precision, recall, acc_noisy, acc_pruned))
                m = np.mean(stats, axis=0)
                print(f"| {name} | {kind} | {rate:.0%} | {m[0]:.1%} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.3f} | {m[4]:.3f} |")


def augmentation(seeds: int, out: str) -> None:
    from sklearn.model_selection import train_test_split

    from flywheel.techniques.autoaugment import PolicySearch, augmented_training_set, child_accuracy
    from flywheel.techniques.gan import ConditionalGAN

    print(f"\n### Augmentation on low-data digits (logistic regression on pixels, test = 30% of digits, {seeds} seeds)\n")
    print("| train images per class | no augmentation | + GAN samples (to 60/class) | + searched policy (4 copies) | policy's val acc (search) vs none | search time |")
    print("|---|---|---|---|---|---|")
    for per_class in (10, 20, 30):
        rows = []
        for seed in range(seeds):
            images, y, train, test = _digits_split(seed)
            rng = np.random.default_rng(seed)
            small = np.concatenate([rng.permutation(train[y[train] == c])[:per_class] for c in range(10)])
            base = child_accuracy(images[small], y[small], images[test], y[test])
            gan = ConditionalGAN(steps=3000, random_state=seed).fit(images[small], y[small])
            fake, fake_y = gan.sample(60 - per_class)
            with_gan = child_accuracy(np.concatenate([images[small], fake]), np.concatenate([y[small], fake_y]), images[test], y[test])
            fit_idx, val_idx = train_test_split(small, test_size=0.3, stratify=y[small], random_state=seed)
            started = time.monotonic()
            search = PolicySearch(n_candidates=16, n_mutations=8, random_state=seed).fit(images[fit_idx], y[fit_idx], images[val_idx], y[val_idx])
            took = time.monotonic() - started
            ax, ay = augmented_training_set(images[small], y[small], search.best_policy_, 4, seed)
            with_policy = child_accuracy(ax, ay, images[test], y[test])
            rows.append((base, with_gan, with_policy, search.best_score_, search.baseline_score_, took))
        m = np.mean(rows, axis=0)
        print(f"| {per_class} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.3f} vs {m[4]:.3f} | {m[5]:.0f} s |")


SECTIONS = {"active_learning": active_learning, "weak_supervision": weak_supervision, "confident_learning": confident_learning, "augmentation": augmentation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="docs/techniques")
    args = parser.parse_args()
    for name in args.only:
        started = time.monotonic()
        SECTIONS[name](args.seeds, args.out)
        print(f"\n({name}: {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()

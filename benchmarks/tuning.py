"""Grid vs random vs Bayesian (GP) vs Hyperband on the same trial budget and seeds.

Two problems with 2 important and 4 unimportant hyperparameters (Bergstra &
Bengio 2012; Snoek et al. 2012), both searched through ``tune``'s own search
loop (``flywheel.components.tune.search``):

* ``synthetic``: a response surface on [0, 1]^6 whose value depends on two
  dimensions (a Gaussian bump at a random optimum) and barely on four (+-1%);
  which two matter and where the optimum sits are drawn per seed, so the grid
  is not lucky or unlucky by construction. A trial of e "epochs" observes
  f(x) * (1 - exp(-e / 3)) (a learning curve; max 9), so Hyperband has cheap
  low-fidelity trials to discard.
* ``mlp``: scikit-learn's MLPClassifier on the bundled digits (train / validation
  split of 1,257 / 540 rows; the score is validation accuracy), with learning rate
  and width important and L2 alpha, batch size, beta_1, beta_2 nuisance; a trial
  trains for ``epochs`` passes (max_iter).

    python benchmarks/tuning.py                          # both problems, 5 seeds, 20 trials (~25 min on 2 shared cores)
    python benchmarks/tuning.py --problems synthetic --seeds 10 --trials 30

Prints a Markdown table (median over seeds of the best validation score after
5, 10 and all trials, and epochs spent) and writes the median best-so-far curves
to ``<out>/tuning_best_so_far.png``. Grid search uses 2 points per range in
KerasTuner's order (the last name varies fastest), truncated to the budget;
Bayesian starts from ``--initial-points`` random trials.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flywheel.components.tune import search as tune_search  # noqa: E402

warnings.filterwarnings("ignore")
STRATEGIES = ("grid", "random", "bayesian", "hyperband")
MAX_EPOCHS = 9


def synthetic_problem(seed: int):
    """(space, objective, optimum) of one synthetic instance."""
    rng = np.random.RandomState(1000 + seed)
    names = [f"x{i}" for i in range(6)]
    important = list(rng.choice(6, size=2, replace=False))
    centre = rng.uniform(0.15, 0.85, size=2)
    space = {name: {"type": "float", "min": 0.0, "max": 1.0} for name in names}

    def objective(values, epochs):
        x = np.array([values[n] for n in names])
        bump = math.exp(-float(np.sum((x[important] - centre) ** 2)) / (2 * 0.25**2))
        nuisance = 0.01 * float(np.mean(np.cos(2 * np.pi * np.delete(x, important))))
        return {"val_accuracy": (bump + nuisance) * (1 - math.exp(-epochs / 3))}

    return space, objective


def mlp_problem(seed: int):
    """(space, objective) of the digits MLP (split fixed; training seeded by ``seed``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.3, stratify=y, random_state=0)
    space = {
        "learning_rate": {"type": "float", "min": 1e-5, "max": 1.0, "log": True},
        "width": {"type": "int", "min": 1, "max": 256, "log": True},
        "alpha": {"type": "float", "min": 1e-6, "max": 1e-3, "log": True},
        "batch_size": {"type": "int", "min": 32, "max": 256, "step": 32},
        "beta_1": {"type": "float", "min": 0.8, "max": 0.95},
        "beta_2": {"type": "float", "min": 0.99, "max": 0.9999},
    }

    def objective(values, epochs):
        net = MLPClassifier(
            hidden_layer_sizes=(values["width"],), learning_rate_init=values["learning_rate"], alpha=values["alpha"],
            batch_size=values["batch_size"], beta_1=values["beta_1"], beta_2=values["beta_2"], max_iter=epochs,
            n_iter_no_change=epochs + 1, random_state=seed,
        )
        net.fit(x_train, y_train)
        return {"val_accuracy": float(net.score(x_val, y_val))}

    return space, objective


PROBLEMS = {"synthetic": synthetic_problem, "mlp": mlp_problem}


def run_one(problem: str, strategy: str, seed: int, trials: int, initial_points: int) -> dict:
    space, objective = PROBLEMS[problem](seed)
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        records = tune_search.search(
            objective, space, strategy=strategy, objective="val_accuracy", max_trials=trials, max_seconds=0,
            epochs=MAX_EPOCHS if problem == "synthetic" else 20, seed=seed, directory=directory, grid_points=2,
            initial_points=initial_points,
        )
    curve = tune_search.best_so_far(records, "val_accuracy")
    curve += [curve[-1]] * (trials - len(curve))  # a search that stopped early keeps its best
    return {"curve": curve, "epochs": sum(r["epochs"] for r in records), "seconds": time.perf_counter() - started,
            "trials": len(records)}


def plot(results: dict, trials: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(results)
    figure, axes = plt.subplots(1, len(problems), figsize=(5.2 * len(problems), 3.8), dpi=90, squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for strategy, runs in results[problem].items():
            median = np.median(np.array([r["curve"] for r in runs], dtype=float), axis=0)
            ax.plot(range(1, trials + 1), median, label=strategy)
        ax.set_title(f"{problem}: median best-so-far over {len(runs)} seeds")
        ax.set_xlabel("trial")
        ax.set_ylabel("best validation score")
        ax.legend(loc="lower right")
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", choices=sorted(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--strategies", nargs="*", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--initial-points", type=int, default=5)
    parser.add_argument("--out", default="docs/techniques")
    args = parser.parse_args()

    results: dict = {}
    print(f"budget {args.trials} trials, seeds 0..{args.seeds - 1}, Bayesian initial points {args.initial_points}\n")
    print("| problem | strategy | best after 5 | after 10 | after all | (min-max over seeds) | epochs | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for problem in args.problems:
        results[problem] = {}
        for strategy in args.strategies:
            runs = [run_one(problem, strategy, seed, args.trials, args.initial_points) for seed in range(args.seeds)]
            results[problem][strategy] = runs
            finals = [r["curve"][-1] for r in runs]
            at = [statistics.median(r["curve"][min(k, args.trials) - 1] for r in runs) for k in (5, 10)]
            print(
                f"| {problem} | {strategy} | {at[0]:.4f} | {at[1]:.4f} | **{statistics.median(finals):.4f}** | "
                f"{min(finals):.4f}-{max(finals):.4f} | {statistics.median(r['epochs'] for r in runs):.0f} | "
                f"{statistics.median(r['seconds'] for r in runs):.1f} |",
                flush=True,
            )
    path = os.path.join(args.out, "tuning_best_so_far.png")
    plot(results, args.trials, path)
    print(f"\ncurves: {path}")


if __name__ == "__main__":
    main()

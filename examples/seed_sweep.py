"""Train one small model per configuration in parallel, then keep the best (ParallelFor + Collected).

    flywheel run examples/seed_sweep.py
    flywheel run examples/seed_sweep.py --param 'configs=[{"seed": 0, "c": 0.1}, {"seed": 1, "c": 1.0}]'
    flywheel compile examples/seed_sweep.py -o seed_sweep.yaml

Each configuration trains a scikit-learn logistic regression on the digits that ship
with scikit-learn (about a second each); ``pick_best`` reads every model and its
accuracy, in configuration order, and publishes the best one. Re-running with one
more configuration trains only that one: every iteration is cached on its own.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from typing import List

from flywheel import Collected, Dataset, Input, Metrics, Model, Output, ParallelFor, component, pipeline

CONFIGS = [{"seed": 0, "c": 0.01}, {"seed": 1, "c": 0.1}, {"seed": 2, "c": 1.0}]


@component
def load_digits(data: Output[Dataset], eval_fraction: float = 0.3) -> None:
    """Splits scikit-learn's 8x8 digits into train and eval (fixed seed) as .npz."""
    import numpy as np
    from sklearn.datasets import load_digits as digits
    from sklearn.model_selection import train_test_split

    x, y = digits(return_X_y=True)
    x_train, x_eval, y_train, y_eval = train_test_split(x / 16.0, y, test_size=eval_fraction, random_state=0)
    np.savez(data.path("digits.npz"), x_train=x_train, y_train=y_train, x_eval=x_eval, y_eval=y_eval)
    data.properties.update(train_rows=len(y_train), eval_rows=len(y_eval))


@component
def fit_model(data: Input[Dataset], model: Output[Model], metrics: Output[Metrics], accuracy: Output[float],
              seed: int = 0, c: float = 1.0) -> None:
    """Logistic regression with inverse regularisation ``c``; ``accuracy`` on the eval split."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    split = np.load(data.path("digits.npz"))
    fitted = LogisticRegression(C=c, max_iter=300, random_state=seed).fit(split["x_train"], split["y_train"])
    score = float(fitted.score(split["x_eval"], split["y_eval"]))
    with open(model.path("model.pkl"), "wb") as handle:
        pickle.dump(fitted, handle)
    model.properties.update(seed=seed, c=c)
    metrics.properties.update(accuracy=score)
    accuracy.set(round(score, 6))


@component
def pick_best(models: Input[List[Model]], accuracies: list, best: Output[Model]) -> None:
    """Copies the most accurate model (the first of equals) and records the whole sweep."""
    if not models:
        raise ValueError("the sweep trained no model; give pick_best at least one configuration")
    winner = max(range(len(models)), key=lambda i: (accuracies[i], -i))
    for name in os.listdir(models[winner].uri):
        shutil.copy(os.path.join(models[winner].uri, name), best.path(name))
    sweep = [{"seed": m.properties.get("seed"), "c": m.properties.get("c"), "accuracy": a}
             for m, a in zip(models, accuracies)]
    with open(best.path("sweep.json"), "w", encoding="utf-8") as handle:
        json.dump(sweep, handle, indent=2)
    best.properties.update(sweep[winner], chosen=winner, tried=len(models))


@pipeline(name="seed-sweep")
def seed_sweep(configs: list = CONFIGS) -> None:
    """One model per configuration ({"seed", "c"}), the best one kept."""
    data = load_digits()
    with ParallelFor(configs, parallelism=2) as config:
        trained = fit_model(data=data.output, seed=config["seed"], c=config["c"])
    pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))

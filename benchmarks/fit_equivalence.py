"""Prints the numbers of every path through the fit loop (train, tune trial, NAS) with fixed seeds.

Run before and after a change to the fit loop; the JSON must match to float noise:
    .venv/bin/python benchmarks/fit_equivalence.py OUT.json
    .venv/bin/python benchmarks/fit_equivalence.py --compare BEFORE.json AFTER.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "components"))


def _numbers(model) -> dict:
    with open(model.path("history.json")) as f:
        history = json.load(f)
    keep = ("final_train_accuracy", "final_val_accuracy", "final_train_loss", "final_val_loss", "epochs_run", "best_epoch",
            "parameters")
    return {"history": history["history"], "best_epoch": history["best_epoch"],
            **{k: model.properties[k] for k in keep}}


def main(out: str) -> None:
    from model_fixtures import penguin_examples, run

    from flywheel.components import examples_io
    from flywheel.components.tune.objective import TrainObjective
    from flywheel.components.ingest import ingest
    from flywheel.components.train import train
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import Examples, Model, TransformGraph
    from flywheel.models import architectures
    from flywheel.techniques import nas

    root = tempfile.mkdtemp(prefix="fiteq-")
    results: dict = {}
    examples = penguin_examples(os.path.join(root, "pex"))
    graph = run(transform, {"examples": examples}, {"transform_graph": TransformGraph(uri=os.path.join(root, "ptg"))})[
        "transform_graph"]

    def fit_train(name, inputs, **params):
        model = Model(uri=os.path.join(root, name))
        run(train, inputs, {"model": model}, **params)
        results[name] = _numbers(model)
        return model

    pin = {"examples": examples, "transform_graph": graph}
    teacher = fit_train("penguins", pin, epochs=25, early_stopping_patience=3, hidden_units=[8], seed=3)
    fit_train("penguins_focal_balanced", pin, epochs=8, loss="focal", class_weights="balanced", hidden_units=[8], seed=1)
    fit_train("penguins_distilled", {**pin, "teacher": teacher}, epochs=8, hidden_units=[4], seed=2,
              early_stopping_patience=2)

    objective = TrainObjective(examples, graph, fixed={"hidden_units": [8]}, seed=4, validation_fraction=0.2)
    results["tune_trial"] = objective({"learning_rate": 0.02, "dropout": 0.0, "early_stopping_patience": 2}, 10)

    full = Examples(uri=os.path.join(root, "digits"))
    run(ingest, {}, {"examples": full}, path="sklearn-digits")
    images, frame = examples_io.read_images(full, "train")
    rng = np.random.RandomState(0)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(frame["label"] == str(c)), 20, replace=False) for c in range(10)]))
    digits = Examples(uri=os.path.join(root, "dex"), properties=dict(full.properties))
    examples_io.write_images(digits, "train", images[keep], frame.iloc[keep].reset_index(drop=True))
    examples_io.write_images(digits, "eval", *examples_io.read_images(full, "eval"))
    dgraph = run(transform, {"examples": digits}, {"transform_graph": TransformGraph(uri=os.path.join(root, "dtg"))})[
        "transform_graph"]
    din = {"examples": digits, "transform_graph": dgraph}
    base = {"epochs": 3, "early_stopping_patience": 0, "learning_rate": 0.003, "hidden_units": [16], "conv_widths": [8]}
    fit_train("digits_mixup_randaugment", din, mixup_alpha=0.4, randaugment_n=1, seed=5, **base)
    fit_train("digits_coteaching", din, coteaching=True, forget_rate=0.3, num_gradual=2, seed=6, **base)

    x = np.asarray(images[keep], dtype="float32")
    y = np.asarray(frame["label"].iloc[keep].astype(int))
    arch = {"kind": "cnn", "stages": [[8]], "kernel_size": 3, "skip": False, "dense_units": [16], "resolution": 8}
    import keras

    keras.utils.set_random_seed(7)
    net = architectures.build_network(arch, x.shape[1:], 10)
    history = nas.train_network(net, x[:150], y[:150], x[150:], y[150:], epochs=3, batch_size=16, learning_rate=0.01,
                                seed=7, patience=2)
    results["nas_candidate"] = {"history": history, "val_accuracy": nas.accuracy_of(net, x[150:], y[150:])}
    space = {"kinds": ["cnn", "mlp"], "stages": [1], "widths": [8], "dense_units": [0, 16], "mlp_units": [16]}
    search = nas.ArchitectureSearch(search_space=space, n_trials=2, epochs=2, batch_size=32, random_state=8).fit(x[:150], y[:150], x[150:], y[150:])
    results["nas_search"] = [{k: t[k] for k in ("name", "val_accuracy", "epochs_run")} for t in search.trials_]
    with open(out, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print(json.dumps(results, sort_keys=True)[:3000])


def compare(before: str, after: str, tol: float = 1e-5) -> int:
    with open(before) as f:
        a = json.load(f)
    with open(after) as f:
        b = json.load(f)
    bad: list[str] = []

    def walk(x, y, where):
        if isinstance(x, dict):
            if set(x) != set(y):
                bad.append(f"{where}: keys {sorted(x)} != {sorted(y)}")
            for k in set(x) & set(y):
                walk(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list):
            if len(x) != len(y):
                bad.append(f"{where}: length {len(x)} != {len(y)}")
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{where}[{i}]")
        elif isinstance(x, float) or isinstance(y, float):
            if abs(float(x) - float(y)) > tol * max(1.0, abs(float(x))):
                bad.append(f"{where}: {x} != {y}")
        elif x != y:
            bad.append(f"{where}: {x!r} != {y!r}")

    walk(a, b, "")
    print("\n".join(bad) if bad else f"identical within {tol} ({len(a)} runs)")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    main(sys.argv[1])

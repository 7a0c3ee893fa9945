"""Compares train's model families on digits: eval accuracy, parameters, training time.

Run ``.venv/bin/python benchmarks/model_families.py [--seeds 0 1 2] [--epochs 40] [--flops] [--out FILE]``.
Digits come from ``ingest(path="sklearn-digits")`` (one split for every run:
eval 20%, stratified by content hash), then ``transform`` (pixel scaling fitted
on train), then ``train(architecture=...)`` with the same knobs for every
family (``conv_widths=[16, 32]``, ``hidden_units=[64]``, dropout 0.25, Adam 3e-3,
batch 32, at most ``--epochs`` epochs, early stopping on validation loss with
patience 5, weights of the best epoch kept). Eval accuracy is measured on the
eval split with the saved model reloaded through ``flywheel.models.layers.load_model``
(safe mode), and the serving SavedModel is checked to agree with it.
``--efficientnet-seeds`` limits B0 (4 M parameters, slow on a shared CPU) to
the first N seeds. ``--flops`` adds each family's forward FLOPs per image
(TF profiler on the frozen graph of the untrained model; a multiply-add is 2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

FAMILIES = ("mlp", "cnn", "resnet", "vit", "efficientnet_b0")
KNOBS = {"conv_widths": [16, 32], "hidden_units": [64], "dropout": 0.25, "learning_rate": 0.003, "batch_size": 32}


def _prepare(root: str) -> tuple[Any, Any]:
    from flywheel.components.ingest import ingest
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import Examples, TransformGraph
    from flywheel.component_call import call_component

    examples = Examples(uri=os.path.join(root, "examples"))
    call_component(ingest, {}, {"examples": examples}, {"path": "sklearn-digits", "eval_ratio": 0.2})
    graph = TransformGraph(uri=os.path.join(root, "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    return examples, graph


def run_family(examples: Any, graph: Any, root: str, family: str, seed: int, epochs: int) -> dict[str, Any]:
    """Trains one family with one seed through the train component; returns its measurements."""
    import numpy as np
    import tensorflow as tf

    from flywheel.components import examples_io
    from flywheel.models import layers as model_layers
    from flywheel.models import features
    from flywheel.components.train import train
    from flywheel.dsl.artifacts import Model
    from flywheel.component_call import call_component

    model = Model(uri=os.path.join(root, f"{family}-{seed}"))
    started = time.perf_counter()
    call_component(
        train, {"examples": examples, "transform_graph": graph}, {"model": model},
        {**KNOBS, "architecture": family, "epochs": epochs, "early_stopping_patience": 5, "seed": seed},
    )
    component_seconds = time.perf_counter() - started
    pixels, frame = examples_io.read_images(examples, "eval")
    raw = pixels.astype("float32")
    net = model_layers.load_model(model.path(features.MODEL_FILE))
    proba = np.asarray(net.predict(raw, batch_size=256, verbose=0))
    truth = features.encode_labels(frame[model.properties["label"]], model.properties["label_vocabulary"])
    serve = tf.saved_model.load(model.path(features.SERVING_DIR)).signatures["serving_default"]
    served = serve(image=tf.constant(raw[:32]))["probabilities"].numpy()
    props = model.properties
    return {
        "family": family,
        "seed": seed,
        "eval_accuracy": float((proba.argmax(axis=1) == truth).mean()),
        "eval_rows": int(len(truth)),
        "parameters": int(props["parameters"]),
        "fit_seconds": float(props["fit_seconds"]),
        "train_component_seconds": round(component_seconds, 2),
        "epochs_run": int(props["epochs_run"]),
        "best_epoch": int(props["best_epoch"]),
        "final_train_accuracy": float(props["final_train_accuracy"]),
        "final_val_accuracy": float(props["final_val_accuracy"]),
        "diagnosis": props["diagnosis"],
        "serving_matches_reload": bool(np.allclose(served, proba[:32], atol=1e-5)),
    }


def forward_flops(family: str, input_shape: tuple[int, int, int] = (8, 8, 1), n_classes: int = 10) -> int:
    """Floating-point operations of one forward pass on one image (TF profiler; a multiply-add counts 2).

    The family is built with the benchmark's knobs (FLOPs do not depend on weights).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from flywheel.models import images as image_models
    from flywheel.models import families as model_families

    spec = {"image_shape": list(input_shape), "pixel_max": 255.0, "normalize": False, "image_input": "image"}
    net = model_families.build_image_classifier(
        family, input_shape, n_classes, widths=KNOBS["conv_widths"], dense_units=KNOBS["hidden_units"],
        dropout=KNOBS["dropout"], preprocess=image_models.build_image_preprocess(spec),
    )
    forward = tf.function(lambda x: net(x, training=False))
    concrete = forward.get_concrete_function(tf.TensorSpec((1, *input_shape), tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    ).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                            options=options)
    return int(profile.total_float_ops)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per family: accuracy mean/min/max over seeds, parameters, mean fit time, epochs."""
    out = []
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        accuracy = [r["eval_accuracy"] for r in mine]
        out.append({
            "family": family,
            "seeds": [r["seed"] for r in mine],
            "eval_accuracy_mean": round(statistics.fmean(accuracy), 4),
            "eval_accuracy_per_seed": [round(a, 4) for a in accuracy],
            "parameters": mine[0]["parameters"],
            "fit_seconds_mean": round(statistics.fmean(r["fit_seconds"] for r in mine), 1),
            "seconds_per_epoch": round(statistics.fmean(r["fit_seconds"] / r["epochs_run"] for r in mine), 2),
            "epochs_run": [r["epochs_run"] for r in mine],
            "best_epoch": [r["best_epoch"] for r in mine],
            "train_accuracy_mean": round(statistics.fmean(r["final_train_accuracy"] for r in mine), 4),
            "diagnosis": [r["diagnosis"] for r in mine],
        })
    return out


def print_table(summary: list[dict[str, Any]]) -> None:
    print("| family | parameters | forward FLOPs | eval accuracy mean (per seed) | train accuracy | fit s (s/epoch) "
          "| epochs run (best) |")
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        per_seed = " / ".join(f"{a:.4f}" for a in s["eval_accuracy_per_seed"])
        epochs = ", ".join(f"{e} ({b})" for e, b in zip(s["epochs_run"], s["best_epoch"]))
        flops = f"{s['forward_flops']:,}" if "forward_flops" in s else "-"
        print(f"| {s['family']} | {s['parameters']:,} | {flops} | {s['eval_accuracy_mean']:.4f} ({per_seed}) | "
              f"{s['train_accuracy_mean']:.4f} | {s['fit_seconds_mean']} ({s['seconds_per_epoch']}) | {epochs} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--efficientnet-seeds", type=int, default=1, help="B0 runs only the first N seeds")
    parser.add_argument("--flops", action="store_true", help="also count each family's forward FLOPs per image")
    parser.add_argument("--out", default="", help="write the rows and summary as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory() as root:
        examples, graph = _prepare(root)
        rows = []
        for family in args.families:
            seeds = args.seeds[: args.efficientnet_seeds] if family == "efficientnet_b0" else args.seeds
            for seed in seeds:
                row = run_family(examples, graph, root, family, seed, args.epochs)
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary = summarize(rows)
    if args.flops:
        for entry in summary:
            entry["forward_flops"] = forward_flops(entry["family"])
    print_table(summary)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "summary": summary, "knobs": KNOBS, "epochs": args.epochs}, f, indent=2)


if __name__ == "__main__":
    main()

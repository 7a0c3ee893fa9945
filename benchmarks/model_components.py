"""Measures the model components on penguins, and what TFMA would cost instead of scikit-learn.

Run ``.venv/bin/python benchmarks/model_components.py [--tfma] [--out DIR]``. It
prints the import time, each component's in-process time (transform, train,
evaluate, push; run twice so the second evaluate compares with a served
model), the eval accuracy, and with ``--tfma`` the cost of
``tfma.analyze_raw_data`` on the same predictions and slices.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any


def _penguin_examples(uri: str) -> Any:
    import numpy as np
    from palmerpenguins import load_penguins

    from flywheel.components import examples_io
    from flywheel.dsl.artifacts import Examples

    frame = load_penguins()
    frame = frame.iloc[np.random.RandomState(0).permutation(len(frame))].reset_index(drop=True)
    n_eval = int(round(len(frame) * 0.25))
    examples = Examples(uri=uri, properties={"label": "species"})
    examples_io.write_split(examples, "train", frame.iloc[n_eval:])
    examples_io.write_split(examples, "eval", frame.iloc[:n_eval])
    return examples


def time_components(root: str, runs: int = 2) -> list[dict[str, Any]]:
    """Runs transform -> train -> evaluate -> push ``runs`` times; returns seconds per component."""
    from flywheel.components.evaluate import evaluate
    from flywheel.components.push import push
    from flywheel.components.train import train
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import (
        ClassificationMetrics,
        Markdown,
        Model,
        ModelBlessing,
        ModelEvaluation,
        PushedModel,
        TransformGraph,
    )
    from flywheel.component_call import call_component

    examples = _penguin_examples(os.path.join(root, "examples"))
    registry = os.path.join(root, "registry")
    results = []
    for run in range(runs):
        base = os.path.join(root, f"run{run}")
        row: dict[str, Any] = {"run": run}

        def timed(name: str, comp: Any, inputs: dict, outputs: dict, params: dict) -> dict:
            started = time.perf_counter()
            call_component(comp, inputs, outputs, params)
            row[name] = round(time.perf_counter() - started, 3)
            return outputs

        graph = timed("transform", transform, {"examples": examples},
                      {"transform_graph": TransformGraph(uri=f"{base}/tg")}, {})["transform_graph"]
        model = timed("train", train, {"examples": examples, "transform_graph": graph},
                      {"model": Model(uri=f"{base}/model")}, {"seed": run})["model"]
        evaluated = timed(
            "evaluate", evaluate, {"examples": examples, "model": model},
            {"evaluation": ModelEvaluation(uri=f"{base}/evaluation"), "blessing": ModelBlessing(uri=f"{base}/blessing"),
             "metrics": ClassificationMetrics(uri=f"{base}/metrics"),
             "summary": Markdown(uri=f"{base}/summary")},
            {"registry": registry},
        )
        pushed = timed("push", push, {"model": model, "blessing": evaluated["blessing"]},
                       {"pushed_model": PushedModel(uri=f"{base}/pushed")}, {"registry": registry})["pushed_model"]
        row.update(
            eval_accuracy=evaluated["evaluation"].properties["accuracy"],
            balanced_accuracy=evaluated["evaluation"].properties["balanced_accuracy"],
            epochs_run=model.properties["epochs_run"],
            diagnosis=model.properties["diagnosis"],
            blessed=evaluated["blessing"].properties["blessed"],
            pushed_version=pushed.properties["version"],
        )
        results.append(row)
    return results


def tfma_cost(root: str, calls: int = 2) -> dict[str, float]:
    """Seconds TFMA needs for the evaluation that ``evaluate`` does with scikit-learn."""
    from flywheel.models import features
    from flywheel.components import examples_io
    from flywheel.components.evaluate import classification
    from flywheel.models import layers as model_layers

    model_dir = os.path.join(root, "run0", "model")
    examples = _penguin_examples(os.path.join(root, "examples"))
    frame = examples_io.read_split(examples, "eval")
    spec = features.read_json(os.path.join(model_dir, features.MODEL_JSON))
    proba = model_layers.load_model(os.path.join(model_dir, features.MODEL_FILE)).predict(
        features.raw_inputs(frame, spec), verbose=0
    )
    started = time.perf_counter()
    classification.classification_metrics(frame["species"], proba, spec["label_vocabulary"])
    classification.sliced_metrics(frame, frame["species"], proba, spec["label_vocabulary"], ["island", "sex"])
    result = {"sklearn_seconds": round(time.perf_counter() - started, 4)}

    started = time.perf_counter()
    import tensorflow_model_analysis as tfma

    result["tfma_import_seconds"] = round(time.perf_counter() - started, 3)
    import pandas as pd

    data = pd.DataFrame(
        {
            "label": features.encode_labels(frame["species"], spec["label_vocabulary"]).astype("int64"),
            "prediction": list(proba.astype("float32")),
            "island": frame["island"].fillna("(missing)"),
            "sex": frame["sex"].fillna("(missing)"),
        }
    )
    classes = list(range(len(spec["label_vocabulary"])))
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction")],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount"),
                                      tfma.MetricConfig(class_name="SparseCategoricalAccuracy"),
                                      tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot")]),
            tfma.MetricsSpec(
                metrics=[tfma.MetricConfig(class_name=n) for n in ("AUC", "Precision", "Recall")],
                binarize=tfma.BinarizationOptions(class_ids={"values": classes}),
            ),
        ],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["island"]),
                       tfma.SlicingSpec(feature_keys=["sex"])],
    )
    for call in range(calls):
        started = time.perf_counter()
        tfma.analyze_raw_data(data, config, output_path=tempfile.mkdtemp(dir=root))
        result[f"tfma_analyze_call_{call + 1}_seconds"] = round(time.perf_counter() - started, 3)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfma", action="store_true", help="also measure TFMA's cost")
    parser.add_argument("--out", default="", help="work directory (default: a temporary one)")
    args = parser.parse_args(argv)
    root = args.out or tempfile.mkdtemp(prefix="flywheel-model-bench-")
    started = time.perf_counter()
    import keras  # noqa: F401 - timed: the cold import every TF component pays once
    import sklearn.metrics  # noqa: F401

    report: dict[str, Any] = {"import_tf_keras_sklearn_seconds": round(time.perf_counter() - started, 3)}
    report["components"] = time_components(root)
    if args.tfma:
        report["tfma"] = tfma_cost(root)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

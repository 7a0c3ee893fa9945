"""Model optimisation benchmark (issue 9): Deep Compression and knowledge distillation, through the components.

    .venv/bin/python benchmarks/compression.py               # everything (~4 min on 2 cores)
    .venv/bin/python benchmarks/compression.py --only deep   # Deep Compression only
    .venv/bin/python benchmarks/compression.py --only distill

Deep Compression: ``train`` -> ``compress`` on the digits CNN (the digits
pipeline's default, and a wider one) and on the penguin MLP; prints every
stage's file size, ratio to the float32 weights, accuracy on the eval split and
p50 latency of a 256-row batch. Distillation: a teacher CNN, then the same
small student (about a tenth of the teacher's parameters, or fewer) trained
with the teacher and without it (same epochs, same seeds), over several seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

from flywheel.components.compress import compress
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import HTML, Examples, Model, TransformGraph
from flywheel.component_call import call_component

DEEP = [
    # name, data, train params, compress params
    ("digits CNN [16,32]/[64] (pipeline default)", "digits",
     {"conv_widths": [16, 32], "hidden_units": [64], "epochs": 30, "learning_rate": 0.003, "dropout": 0.25},
     {"sparsity": 0.9, "bits": 5, "pruning_steps": 4, "fine_tune_epochs": 8, "learning_rate": 0.002}),
    ("digits CNN [32,64]/[128] (wider)", "digits",
     {"conv_widths": [32, 64], "hidden_units": [128], "epochs": 30, "learning_rate": 0.003, "dropout": 0.25},
     {"sparsity": 0.95, "bits": 4, "pruning_steps": 5, "fine_tune_epochs": 12, "learning_rate": 0.001}),
    ("penguin MLP [16,8] (pipeline default)", "penguins",
     {"hidden_units": [16, 8], "epochs": 100, "learning_rate": 0.01},
     {"sparsity": 0.8, "bits": 3, "pruning_steps": 4, "fine_tune_epochs": 10, "learning_rate": 0.005}),
]


def _data(root: str, name: str, folder: str = "") -> tuple[Examples, TransformGraph]:
    folder = folder or name
    examples = Examples(uri=os.path.join(root, f"{folder}-ex"))
    graph = TransformGraph(uri=os.path.join(root, f"{folder}-tg"))
    if name == "digits":
        call_component(ingest, {}, {"examples": examples}, {"path": "sklearn-digits"})
    else:
        import palmerpenguins

        csv = os.path.join(root, "penguins.csv")
        palmerpenguins.load_penguins().to_csv(csv, index=False)
        call_component(ingest, {}, {"examples": examples}, {"path": csv, "label": "species"})
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    return examples, graph


def _train(root: str, name: str, examples: Examples, graph: TransformGraph, params: dict, teacher: Model | None = None) -> Model:
    model = Model(uri=os.path.join(root, name))
    inputs = {"examples": examples, "transform_graph": graph, **({"teacher": teacher} if teacher else {})}
    call_component(train, inputs, {"model": model}, params)
    return model


def deep_compression(root: str) -> list[dict]:
    results, data = [], {}
    for i, (title, dataset, train_params, compress_params) in enumerate(DEEP):
        if dataset not in data:
            data[dataset] = _data(root, dataset)
        examples, graph = data[dataset]
        model = _train(root, f"deep-{i}", examples, graph, train_params)
        out, report = Model(uri=os.path.join(root, f"deep-{i}-c")), HTML(uri=os.path.join(root, f"deep-{i}-r"))
        call_component(compress, {"model": model, "examples": examples}, {"compressed": out, "report": report},
                       {**compress_params, "quantize_int8": True})
        with open(out.path("report.json"), encoding="utf-8") as handle:
            document = json.load(handle)
        results.append({"title": title, "settings": compress_params, **document})
        print(f"\n### {title}\nfloat32 weights {document['float32_weight_bytes']} B; settings {compress_params}")
        print("| stage | file bytes | weight bytes | ratio (file) | non-zero params | accuracy | p50 latency (256 rows) |")
        print("|---|---|---|---|---|---|---|")
        for row in document["stages"]:
            print(f"| {row['stage']} | {row['bytes']} | {row['weight_bytes']} | {row['ratio']:.1f}x | "
                  f"{row['nonzero_parameters']} / {row['parameters']} | {row['accuracy']:.4f} | {row['latency_p50_ms']:.2f} ms |")
        print(f"full pipeline: {document['compression_ratio']:.1f}x (file), {document['weights_compression_ratio']:.1f}x "
              f"(weights without the architecture header); accuracy change "
              f"{-100 * (document['accuracy_original'] - document['stages'][3]['accuracy']):+.2f} points (Huffman stage)")
    return results


def distillation(root: str, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    import numpy as np

    from flywheel.components import examples_io
    from flywheel.models import layers as model_layers
    from flywheel.models import features

    examples, graph = _data(root, "digits", "digits-distill")
    base = {"epochs": 30, "learning_rate": 0.003, "dropout": 0.25, "early_stopping_patience": 0}
    teacher_params = {**base, "conv_widths": [32, 64], "hidden_units": [128]}
    student_params = {**base, "conv_widths": [8, 16], "hidden_units": [32]}
    images, frame = examples_io.read_images(examples, "eval")

    def accuracy(model: Model) -> float:
        spec = features.read_json(model.path(features.MODEL_JSON))
        net = model_layers.load_model(model.path(features.MODEL_FILE))
        y = features.encode_labels(frame[spec["label"]], spec["label_vocabulary"])
        return float(np.mean(net.predict(np.asarray(images, "float32"), verbose=0).argmax(1) == y))

    rows = []
    for seed in seeds:
        teacher = _train(root, f"teacher-{seed}", examples, graph, {**teacher_params, "seed": seed})
        distilled = _train(root, f"student-kd-{seed}", examples, graph,
                           {**student_params, "seed": seed, "distill_temperature": 4.0, "distill_alpha": 0.1}, teacher)
        alone = _train(root, f"student-{seed}", examples, graph, {**student_params, "seed": seed})
        rows.append({"seed": seed, "teacher": accuracy(teacher), "distilled": accuracy(distilled), "alone": accuracy(alone),
                     "teacher_params": teacher.properties["parameters"], "student_params": distilled.properties["parameters"]})
        print(rows[-1])
    summary = {k: statistics.mean(r[k] for r in rows) for k in ("teacher", "distilled", "alone")}
    summary["kept"] = summary["distilled"] / summary["teacher"]
    summary["params_ratio"] = rows[0]["student_params"] / rows[0]["teacher_params"]
    print(f"\nteacher {summary['teacher']:.4f}; distilled student {summary['distilled']:.4f} "
          f"({100 * summary['kept']:.1f}% of the teacher) at {100 * summary['params_ratio']:.1f}% of its parameters; "
          f"student alone {summary['alone']:.4f} (mean over seeds {list(seeds)})")
    return {"rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["deep", "distill"], default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        if args.only in (None, "deep"):
            deep_compression(root)
        if args.only in (None, "distill"):
            distillation(root)


if __name__ == "__main__":
    main()

"""bulk_infer's memory and speed next to scoring the whole file at once, and infra_validate's cost next to evaluate.

1. bulk_infer (``batch_size`` 4096, Parquet shards) against the baseline a notebook would
   write: ``pandas.read_csv`` of the whole file, then one call of the same traced model
   function, then one Parquet file. Both score the same CSV (penguin rows resampled to
   ``--rows`` and to 10x that) in a fresh process each; the peak RSS of that process while
   it scores (``VmHWM``, reset through ``/proc/self/clear_refs`` after the imports) and the wall time of the scoring (model load included, TensorFlow's
   import not) are recorded.
   Bounded memory shows as bulk_infer's peak staying flat from 1x to 10x rows.
2. infra_validate (3 requests of 4 rows through the REST server) against evaluate on the
   same model and Examples, in one process: what the pipeline's new node costs next to
   the one it runs beside.

    nice .venv/bin/python benchmarks/bulk_infer.py [--rows 50000] [--repeat 3]

Prints every run, the medians (of ``--repeat`` runs), the ratios and the load average at
start and end. Scratch data goes to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scoring_child(method: str, model_uri: str, csv: str, out: str) -> dict:
    """Runs in a fresh process: scores ``csv`` by ``method``; returns seconds, rows and peak RSS (MB)."""
    import tensorflow  # noqa: F401 - imported before the clock starts: both methods pay it alike

    from flywheel.components.bulk_infer import bulk_infer
    from flywheel.dsl.artifacts import InferenceResult, Model
    from flywheel.component_call import call_component

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) so it measures the scoring, not TensorFlow's import
    started = time.perf_counter()
    if method == "bulk_infer":
        result = InferenceResult(uri=out)
        call_component(bulk_infer, {"model": Model(uri=model_uri)}, {"predictions": result},
                       {"data_path": csv, "batch_size": 4096, "model_name": "bench"})
        rows = result.properties["rows"]
    else:
        import pandas as pd

        from flywheel.models import features
        from flywheel.models import layers as model_layers
        from flywheel.serving.models import compile_predict

        spec = features.read_json(os.path.join(model_uri, features.MODEL_JSON))
        predict = compile_predict(model_layers.load_model(os.path.join(model_uri, features.MODEL_FILE)), spec)
        frame = pd.read_csv(csv)
        probabilities = predict(features.raw_inputs(frame, spec))
        for index, name in enumerate(spec["label_vocabulary"]):
            frame[f"probability_{name}"] = probabilities[:, index]
        os.makedirs(out, exist_ok=True)
        frame.to_parquet(os.path.join(out, "predictions.parquet"), index=False)
        rows = len(frame)
    seconds = time.perf_counter() - started
    with open("/proc/self/status") as f:
        peak_mb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
    return {"seconds": seconds, "rows": rows, "peak_mb": peak_mb}


def _score_in_child(method: str, model_uri: str, csv: str, out: str) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, %r); import bulk_infer as b; "
        "print(json.dumps(b._scoring_child(%r, %r, %r, %r)))"
    ) % (os.path.join(REPO, "benchmarks"), method, model_uri, csv, out)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _penguin_csv(path: str, rows: int) -> None:
    from palmerpenguins import load_penguins

    frame = load_penguins()
    frame.sample(n=rows, replace=True, random_state=0).to_csv(path, index=False)


def _model_and_examples(root: str) -> tuple:
    sys.path.insert(0, os.path.join(REPO, "tests", "components"))
    from model_fixtures import penguin_examples, transform_and_train

    examples = penguin_examples(os.path.join(root, "examples"))
    _, model = transform_and_train(examples, os.path.join(root, "train"), epochs=4, hidden_units=[8],
                                   early_stopping_patience=0)
    return examples, model


def _infra_vs_evaluate(examples, model, root: str, repeat: int) -> dict[str, list[float]]:
    from flywheel.components.evaluate import evaluate
    from flywheel.components.infra_validate import infra_validate
    from flywheel.dsl.artifacts import ClassificationMetrics, InfraBlessing, Markdown, ModelBlessing, ModelEvaluation
    from flywheel.component_call import call_component

    times: dict[str, list[float]] = {"evaluate": [], "infra_validate": []}
    for run in range(repeat):
        base = os.path.join(root, f"run{run}")
        started = time.perf_counter()
        call_component(evaluate, {"examples": examples, "model": model},
                       {"evaluation": ModelEvaluation(uri=f"{base}/ev"), "blessing": ModelBlessing(uri=f"{base}/bl"),
                        "metrics": ClassificationMetrics(uri=f"{base}/cm"), "summary": Markdown(uri=f"{base}/md")},
                       {"registry": os.path.join(root, "registry"), "slice_features": ["island", "sex"]})
        times["evaluate"].append(time.perf_counter() - started)
        started = time.perf_counter()
        blessing = InfraBlessing(uri=f"{base}/infra")
        call_component(infra_validate, {"examples": examples, "model": model}, {"infra_blessing": blessing}, {})
        times["infra_validate"].append(time.perf_counter() - started)
        assert blessing.properties["blessed"], blessing.properties["reasons"]
        print(f"  run {run + 1}: evaluate {times['evaluate'][-1]:.2f} s, infra_validate {times['infra_validate'][-1]:.2f} s "
              f"(requests {blessing.properties['latency_ms']} ms)", flush=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {' / '.join(f'{v:.2f}' for v in os.getloadavg())} (1 / 5 / 15 min), "
          f"{os.cpu_count()} CPUs", flush=True)
    root = tempfile.mkdtemp(prefix="flywheel-bench-bulk-")
    try:
        examples, model = _model_and_examples(root)
        results: dict[tuple[str, int], list[dict]] = {}
        sizes = (args.rows, args.rows * 10)
        for rows in sizes:
            csv = os.path.join(root, f"rows-{rows}.csv")
            _penguin_csv(csv, rows)
            print(f"scoring {rows} rows ({os.path.getsize(csv) / 1e6:.1f} MB CSV)", flush=True)
            for run in range(args.repeat):
                for method in ("whole_file", "bulk_infer"):  # alternated, so load changes hit both
                    result = _score_in_child(method, model.uri, csv, os.path.join(root, "out"))
                    results.setdefault((method, rows), []).append(result)
                    print(f"  run {run + 1} {method:10s} {result['seconds']:6.2f} s  peak RSS {result['peak_mb']:7.1f} MB",
                          flush=True)
            os.remove(csv)
        print("\nmedians:")
        for rows in sizes:
            med = {m: {k: statistics.median(r[k] for r in results[(m, rows)]) for k in ("seconds", "peak_mb")}
                   for m in ("whole_file", "bulk_infer")}
            print(f"  {rows:>9} rows: whole file {med['whole_file']['seconds']:.2f} s / {med['whole_file']['peak_mb']:.0f} MB, "
                  f"bulk_infer {med['bulk_infer']['seconds']:.2f} s / {med['bulk_infer']['peak_mb']:.0f} MB  "
                  f"(time ratio bulk/whole {med['bulk_infer']['seconds'] / med['whole_file']['seconds']:.2f}, "
                  f"memory ratio {med['bulk_infer']['peak_mb'] / med['whole_file']['peak_mb']:.2f}, "
                  f"bulk_infer {rows / med['bulk_infer']['seconds']:,.0f} rows/s)")
        growth = {m: statistics.median(r["peak_mb"] for r in results[(m, sizes[1])])
                  - statistics.median(r["peak_mb"] for r in results[(m, sizes[0])]) for m in ("whole_file", "bulk_infer")}
        print(f"  peak RSS growth from {sizes[0]} to {sizes[1]} rows: whole file +{growth['whole_file']:.0f} MB, "
              f"bulk_infer +{growth['bulk_infer']:.0f} MB")
        print("\ninfra_validate next to evaluate (same model, same process):", flush=True)
        times = _infra_vs_evaluate(examples, model, root, args.repeat)
        evaluate_s, infra_s = statistics.median(times["evaluate"]), statistics.median(times["infra_validate"])
        print(f"  medians: evaluate {evaluate_s:.2f} s, infra_validate {infra_s:.2f} s (ratio {infra_s / evaluate_s:.2f})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at end: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

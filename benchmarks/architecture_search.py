"""Measured results of architecture search (Pareto front) and compound scaling, on digits.

Data: scikit-learn's bundled 8x8 digits through the pipeline's own components
(``ingest(path="sklearn-digits")`` -> ``transform``); candidates are scored on a
stratified 20% validation part of the train split, and the ``eval`` split
(349 images) is only used for the final eval accuracy.

* ``nas``: aging evolution and random search with the same budget (trials,
  epochs per candidate, seed) over ``pipelines/architecture_search.py``'s
  search space; prints every strategy's best candidate and the Pareto front
  (validation accuracy vs parameters) over all candidates of both; the chosen
  architectures are retrained (``final_epochs``, early stopping) and scored on eval.
* ``scaling``: EfficientNet's alpha/beta/gamma grid at phi=1 (picked by
  validation accuracy), then baseline vs compound / depth-only / width-only /
  resolution-only scaling to the same FLOPs budget (2**phi) at phi = 1, 2,
  over ``--seeds`` seeds; also compound scaling with the paper's coefficients
  (alpha=1.2, beta=1.1, gamma=1.15) for reference.

    .venv/bin/python benchmarks/architecture_search.py all --seeds 2 --trials 30 --search-epochs 8 \
        --scaling-epochs 15 --out /tmp/nas.json
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
PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)  # Tan & Le 2019, found for EfficientNet-B0 on ImageNet


def _quiet() -> None:
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def digits_data(root: str, seed: int) -> tuple[Any, Any, tuple, tuple]:
    """(spec, preprocess, (x_fit, y_fit, x_val, y_val), (x_eval, y_eval)) via ingest and transform."""
    from flywheel.components import examples_io
    from flywheel.models import images as image_models
    from flywheel.models import features
    from flywheel.components.ingest import ingest
    from flywheel.components.search_architecture import image_training_data
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import Examples, TransformGraph
    from flywheel.component_call import call_component

    examples = Examples(uri=os.path.join(root, "ex"))
    call_component(ingest, {}, {"examples": examples}, {"path": "sklearn-digits"})
    graph = TransformGraph(uri=os.path.join(root, "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {"normalize": False})
    spec, preprocess, data = image_training_data(examples, graph, 0.2, seed)
    pixels, frame = examples_io.read_images(examples, "eval")
    eval_data = (image_models.pixels(pixels), features.encode_labels(frame[spec["label"]], spec["label_vocabulary"]))
    return spec, preprocess, data, eval_data


def study_nas(args: argparse.Namespace, root: str) -> dict[str, Any]:
    from flywheel.pipelines.architecture_search import SEARCH_SPACE
    from flywheel.models import architectures
    from flywheel.techniques import nas

    spec, preprocess, data, eval_data = digits_data(root, 0)
    runs = {}
    for strategy in ("evolution", "random"):
        search = nas.ArchitectureSearch(
            search_space=SEARCH_SPACE, strategy=strategy, n_trials=args.trials, time_budget_s=args.time_budget,
            population_size=8, sample_size=3, param_penalty=0.01, epochs=args.search_epochs, random_state=0,
        ).fit(*data, preprocess=preprocess)
        best = search.trials_[search.best_index_]
        net = architectures.build_network(best["architecture"], spec["image_shape"], 10, preprocess=preprocess)
        nas.train_network(net, *data, epochs=args.final_epochs, batch_size=32, learning_rate=0.003, seed=0, patience=5)
        runs[strategy] = {
            "trials": search.trials_, "best_index": search.best_index_, "elapsed_s": search.elapsed_s_,
            "stopped_by": search.stopped_by_, "final_eval_accuracy": nas.accuracy_of(net, *eval_data),
            "final_val_accuracy": nas.accuracy_of(net, data[2], data[3]),
        }
        print(f"# {strategy}: {len(search.trials_)} trials in {search.elapsed_s_:.0f} s; best {best['name']} "
              f"({best['params']} params, val {best['val_accuracy']:.4f}) -> eval {runs[strategy]['final_eval_accuracy']:.4f}",
              file=sys.stderr, flush=True)
    everything = [dict(t, strategy=s, trial=i) for s, run in runs.items() for i, t in enumerate(run["trials"])]
    front = nas.pareto_front([(t["val_accuracy"], t["params"]) for t in everything], ("max", "min"))
    latency_front = nas.pareto_front([(t["val_accuracy"], t["latency_ms"]) for t in everything], ("max", "min"))
    return {"runs": runs, "front": [everything[i] for i in front], "latency_front": [everything[i] for i in latency_front]}


def study_scaling(args: argparse.Namespace, root: str) -> dict[str, Any]:
    from flywheel.techniques import scaling

    out: dict[str, Any] = {"grid": None, "rows": []}
    for seed in range(args.seeds):
        _, preprocess, data, eval_data = digits_data(os.path.join(root, f"s{seed}"), seed)
        if out["grid"] is None:
            started = time.perf_counter()
            search = scaling.CompoundScaling(epochs=args.scaling_epochs, random_state=0).fit(*data, preprocess=preprocess)
            out["grid"] = {"points": search.grid_, "alpha": search.alpha_, "beta": search.beta_, "gamma": search.gamma_,
                           "seconds": time.perf_counter() - started}
            print(f"# grid: alpha={search.alpha_} beta={search.beta_} gamma={search.gamma_}", file=sys.stderr, flush=True)
        coefficients = (out["grid"]["alpha"], out["grid"]["beta"], out["grid"]["gamma"])
        rows = scaling.compare_scaling(
            scaling.BASELINE, coefficients, [1, 2], data, eval_data=eval_data, epochs=args.scaling_epochs, seed=seed,
            preprocess=preprocess,
        )
        # The paper's EfficientNet-B0 coefficients, for reference beside the grid's pick.
        paper = scaling.compare_scaling(
            scaling.BASELINE, PAPER_COEFFICIENTS, [1, 2], data, eval_data=eval_data, methods=("compound",),
            epochs=args.scaling_epochs, seed=seed, preprocess=preprocess,
        )
        rows += [dict(r, method="compound, paper's 1.2/1.1/1.15") for r in paper if r["method"] == "compound"]
        out["rows"] += [dict(r, seed=seed) for r in rows]
        print(f"# scaling seed {seed} done", file=sys.stderr, flush=True)
    return out


def print_tables(results: dict[str, Any]) -> None:
    if "nas" in results:
        study = results["nas"]
        print("\n| strategy | trials | seconds | best architecture | params | FLOPs | val acc (search) | eval acc (retrained) |")
        print("|---|---|---|---|---|---|---|---|")
        for strategy, run in study["runs"].items():
            best = run["trials"][run["best_index"]]
            print(f"| {strategy} | {len(run['trials'])} | {run['elapsed_s']:.0f} | `{best['name']}` | {best['params']:,} | "
                  f"{best['flops']:,} | {best['val_accuracy']:.4f} | {run['final_eval_accuracy']:.4f} |")
        print("\nPareto front, validation accuracy vs parameters (all candidates of both strategies):\n")
        print("| architecture | strategy | params | FLOPs | latency ms/img | val acc |")
        print("|---|---|---|---|---|---|")
        for t in sorted(study["front"], key=lambda t: t["params"]):
            print(f"| `{t['name']}` | {t['strategy']} | {t['params']:,} | {t['flops']:,} | {t['latency_ms']:.4f} | {t['val_accuracy']:.4f} |")
        print("\nPareto front, validation accuracy vs latency:\n")
        print("| architecture | params | latency ms/img | val acc |")
        print("|---|---|---|---|")
        for t in sorted(study["latency_front"], key=lambda t: t["latency_ms"]):
            print(f"| `{t['name']}` | {t['params']:,} | {t['latency_ms']:.4f} | {t['val_accuracy']:.4f} |")
    if "scaling" in results:
        study = results["scaling"]
        grid = study["grid"]
        print(f"\nCoefficient grid at phi=1 (alpha={grid['alpha']}, beta={grid['beta']}, gamma={grid['gamma']} chosen):\n")
        print("| alpha | beta | gamma | a*b^2*g^2 | network | params | FLOPs | val acc |")
        print("|---|---|---|---|---|---|---|---|")
        for g in grid["points"]:
            print(f"| {g['alpha']} | {g['beta']} | {g['gamma']} | {g['product']:.3f} | `{g['name']}` | {g['params']:,} | "
                  f"{g['flops']:,} | {g['val_accuracy']:.4f} |")
        print("\n| phi | method | d / w / r | network | params | FLOPs (x base) | val acc | eval acc |")
        print("|---|---|---|---|---|---|---|---|")
        keys = []
        for r in study["rows"]:
            if (r["phi"], r["method"]) not in keys:
                keys.append((r["phi"], r["method"]))
        for phi, method in keys:
            group = [r for r in study["rows"] if (r["phi"], r["method"]) == (phi, method)]
            r = group[0]

            def stat(key: str) -> str:
                values = [g[key] for g in group]
                sd = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
                return f"{statistics.mean(values):.4f}{sd}"

            print(f"| {phi:g} | {method} | {r['d']:.3g} / {r['w']:.3g} / {r['r']:.3g} | `{r['name']}` | {r['params']:,} | "
                  f"{r['flops']:,} ({r['flops_ratio']:.2f}x) | {stat('val_accuracy')} | {stat('eval_accuracy')} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=["nas", "scaling", "all"])
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the scaling comparison")
    parser.add_argument("--trials", type=int, default=30, help="trials per search strategy")
    parser.add_argument("--time-budget", type=float, default=240.0, help="seconds per search strategy")
    parser.add_argument("--search-epochs", type=int, default=8)
    parser.add_argument("--final-epochs", type=int, default=30)
    parser.add_argument("--scaling-epochs", type=int, default=15)
    parser.add_argument("--out", default="", help="write all numbers as JSON here")
    args = parser.parse_args(argv)
    _quiet()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as root:
        if args.study in ("nas", "all"):
            results["nas"] = study_nas(args, os.path.join(root, "nas"))
        if args.study in ("scaling", "all"):
            results["scaling"] = study_scaling(args, os.path.join(root, "scaling"))
    results["seconds"] = time.perf_counter() - started
    print_tables(results)
    print(f"\ntotal {results['seconds']:.0f} s")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

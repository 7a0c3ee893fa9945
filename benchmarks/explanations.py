"""Faithfulness of the explainers, each against a random baseline in the same run.

Runs the explain pipelines through ``LocalRunner`` (a temporary flywheel
home), so the numbers are those of the ``explain`` component:

* ``penguins`` (``pipelines/explain.py``): an MLP on Palmer penguins; SHAP
  (KernelSHAP, exact: 7 features, 200 >= 2**7 - 2 coalitions) and LIME
  tabular on the first ``rows`` eval predictions. Additivity error per
  prediction; deletion test (top-2 features replaced by the train mean/mode)
  against 2 random features (10 draws per row).
* ``digits`` (``pipelines/explain_digits.py``): the small CNN on scikit-learn
  digits; Grad-CAM on the last convolution (``conv_1``, a 4x4 map) and on the
  first (``conv_0``, 8x8), and LIME image (2x2 patches), on the first
  ``images`` eval images. Share of map mass on ink (pixel > 25% of the range)
  against the ink's area share; deletion/insertion AUC (16 steps) against
  a uniform random map.

    .venv/bin/python benchmarks/explanations.py --seeds 3 [--rows 40 --images 100] [--out results.json]

Prints one Markdown table per dataset (mean and standard deviation over
seeds; the seed trains the model and seeds every explainer).
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


def _run(home: Any, name: str, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Runs a pipeline file; returns the explain report's properties and the explain step's seconds."""
    from flywheel.pipeline_file import load_pipeline
    from flywheel.runner import LocalRunner

    started = time.perf_counter()
    result = LocalRunner(home, max_workers=2).run(load_pipeline(os.path.join(REPO, "pipelines", name)), params)
    if not result.ok:
        raise SystemExit(f"{name} failed: {result.errors}")
    return dict(result.outputs["explain"]["report"].properties), time.perf_counter() - started


def _stat(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3g} ± {spread:.2g}" if spread else f"{mean:.3g}"


def penguins(home: Any, seeds: int, rows: int) -> dict[str, list[float]]:
    numbers: dict[str, list[float]] = {}
    for seed in range(seeds):
        summary, seconds = _run(home, "explain.py", {"seed": seed, "rows": rows})
        for key, value in {
            "shap max additivity error": summary["shap"]["max_additivity_error"],
            "shap deletion top-2": summary["shap"]["deletion_top_k_change"],
            "lime deletion top-2": summary["lime"]["deletion_top_k_change"],
            "random deletion 2": summary["shap"]["deletion_random_change"],
            "lime mean R2": summary["lime"]["mean_r2"],
            "lime min R2": summary["lime"]["min_r2"],
            "run seconds": seconds,
        }.items():
            numbers.setdefault(key, []).append(float(value))
    return numbers


def digits(home: Any, seeds: int, images: int) -> dict[str, list[float]]:
    numbers: dict[str, list[float]] = {}
    for seed in range(seeds):
        for layer in ("conv_1", "conv_0"):
            summary, seconds = _run(home, "explain_digits.py", {"seed": seed, "rows": images, "grad_cam_layer": layer})
            maps = {f"grad_cam {layer}": summary["grad_cam"]}
            if layer == "conv_1":
                maps.update({"lime_image": summary["lime_image"], "random_map": summary["random_map"]})
                numbers.setdefault("ink share of area", []).append(summary["ink_share_of_area"])
                numbers.setdefault("lime_image mean R2", []).append(summary["lime_image"]["mean_r2"])
                numbers.setdefault("run seconds (train + explain)", []).append(seconds)
            for name, measured in maps.items():
                for metric in ("mass_on_ink", "deletion_auc", "insertion_auc"):
                    numbers.setdefault(f"{name} {metric}", []).append(float(measured[metric]))
    return numbers


def _print_penguins(numbers: dict[str, list[float]]) -> None:
    print("\n| explainer | additivity error (max) | surrogate R² (mean / min) | Δp, top-2 removed | Δp, 2 random removed |")
    print("|---|---|---|---|---|")
    print(f"| SHAP (KernelSHAP) | {_stat(numbers['shap max additivity error'])} | - | "
          f"{_stat(numbers['shap deletion top-2'])} | {_stat(numbers['random deletion 2'])} |")
    print(f"| LIME tabular | - | {_stat(numbers['lime mean R2'])} / {_stat(numbers['lime min R2'])} | "
          f"{_stat(numbers['lime deletion top-2'])} | {_stat(numbers['random deletion 2'])} |")
    print(f"\npipeline seconds per seed (ingest..explain): {_stat(numbers['run seconds'])}")


def _print_digits(numbers: dict[str, list[float]]) -> None:
    print(f"\nink share of area: {_stat(numbers['ink share of area'])}; "
          f"LIME image surrogate R² (mean): {_stat(numbers['lime_image mean R2'])}\n")
    print("| map | mass on ink | deletion AUC (lower better) | insertion AUC (higher better) |")
    print("|---|---|---|---|")
    for name in ("grad_cam conv_1", "grad_cam conv_0", "lime_image", "random_map"):
        print(f"| {name} | {_stat(numbers[f'{name} mass_on_ink'])} | {_stat(numbers[f'{name} deletion_auc'])} | "
              f"{_stat(numbers[f'{name} insertion_auc'])} |")
    print(f"\npipeline seconds per seed (first layer, with training): {_stat(numbers['run seconds (train + explain)'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", choices=("penguins", "digits", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=40, help="penguins predictions explained per seed")
    parser.add_argument("--images", type=int, default=100, help="digit images explained per seed")
    parser.add_argument("--out", help="write the raw numbers as JSON here")
    args = parser.parse_args(argv)
    _quiet()
    sys.path.insert(0, REPO)
    from flywheel.home import Home

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as root:
        home = Home(os.path.join(root, "home")).ensure()
        if args.study in ("penguins", "all"):
            results["penguins"] = penguins(home, args.seeds, args.rows)
            print(f"## penguins: SHAP and LIME on {args.rows} eval predictions, {args.seeds} seeds")
            _print_penguins(results["penguins"])
        if args.study in ("digits", "all"):
            results["digits"] = digits(home, args.seeds, args.images)
            print(f"\n## digits: Grad-CAM and LIME image on {args.images} eval images, {args.seeds} seeds")
            _print_digits(results["digits"])
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

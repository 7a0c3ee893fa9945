"""Scale benchmark: a generated taxi-like table through the training pipeline's data path.

    python benchmarks/scale.py                     # 100k rows x3 and 1M rows x1
    python benchmarks/scale.py --rows 100000 --repeat 3
    python benchmarks/scale.py --ten-million       # adds 10M rows (about 1.7 GB of CSV)
    python benchmarks/scale.py --rows 1000000 --repeat 1 --tfx   # and TFX's components on the same CSV

The table has 18 columns like the Chicago taxi trips of TFX's tutorial:
strings with rare values (company, payment type, census tracts), missing
values, heavy-tailed numerics (lognormal miles, Pareto fares) and a
timestamp. Each step (ingest, validate, transform, train with epochs=1,
evaluate) runs in a fresh process, its artifacts handed on through files;
the whole process tree is sampled every 20 ms for wall time and peak RSS.

Baseline in the same run: the ingest before streaming is gone, so each
step's peak RSS is set beside the CSV's size (``peak/file``) and per row
(``bytes/row``); memory that stays flat while rows grow 10x is the goal.
``--tfx``: at each size up to ``TFX_MAX_ROWS``, the same CSV also goes through TFX
1.16's own components on the DirectRunner (benchmarks/tfx_scale.py, in the TFX venv
that benchmarks/pipeline_e2e.py makes): CsvExampleGen, StatisticsGen + SchemaGen,
Transform (z-score numerics, vocabulary strings), each stage a fresh process sampled
the same way, and rows/s of flywheel's ingest+validate+transform is printed beside
TFX's, with their ratio.

The table is printed and written to ``benchmarks/out/scale.json`` and
``benchmarks/out/scale.png`` (gitignored), with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
OUT = os.path.join(HERE, "out")
STEPS = ("ingest", "validate", "transform", "train", "evaluate")
DATA_STEPS = ("ingest", "validate", "transform")  # the steps TFX's components are set beside
TFX_STAGES = {"ingest": "CsvExampleGen", "validate": "StatisticsGen + SchemaGen", "transform": "Transform"}
TFX_MAX_ROWS = 1_000_000
CHUNK_ROWS = 200_000
COMPANIES = [f"Company {i:03d}" for i in range(300)]  # Zipf-weighted: most are rare
PAYMENTS = ["Credit Card", "Cash", "Mobile", "Prcard", "Unknown", "No Charge", "Dispute", "Pcard", "Split"]
PAYMENT_WEIGHTS = [0.52, 0.38, 0.05, 0.03, 0.012, 0.005, 0.002, 0.0009, 0.0001]


def write_taxi_csv(path: str, rows: int, seed: int = 0) -> None:
    """Writes ``rows`` taxi-like rows (18 columns) in chunks, so the generator's memory stays small."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    company_weights = 1.0 / np.arange(1, len(COMPANIES) + 1) ** 1.2
    company_weights /= company_weights.sum()
    start = np.datetime64("2024-01-01T00:00:00")
    with open(path, "w") as handle:
        for first in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - first)
            miles = rng.lognormal(0.8, 1.0, n)
            fare = 3.25 + miles * 2.25 + rng.pareto(2.5, n) * 5
            payment = rng.choice(PAYMENTS, size=n, p=PAYMENT_WEIGHTS)
            tipped = (payment == "Credit Card") & (rng.random(n) < 0.85) | (rng.random(n) < 0.05)
            frame = pd.DataFrame(
                {
                    "trip_start_timestamp": (start + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")).astype(str),
                    "pickup_community_area": np.where(rng.random(n) < 0.05, np.nan, rng.integers(1, 78, n)),
                    "dropoff_community_area": np.where(rng.random(n) < 0.08, np.nan, rng.integers(1, 78, n)),
                    "trip_miles": miles.round(2),
                    "trip_seconds": np.where(rng.random(n) < 0.02, np.nan, (miles * 180 + rng.exponential(300, n)).round()),
                    "fare": fare.round(2),
                    "tolls": np.where(rng.random(n) < 0.99, 0.0, rng.pareto(1.5, n).round(2)),
                    "extras": np.where(rng.random(n) < 0.7, 0.0, rng.exponential(2.0, n).round(2)),
                    "trip_total": (fare * 1.1).round(2),
                    "payment_type": payment,
                    "company": np.where(rng.random(n) < 0.1, None, rng.choice(COMPANIES, size=n, p=company_weights)),
                    "pickup_latitude": np.where(rng.random(n) < 0.05, np.nan, 41.88 + rng.normal(0, 0.05, n).round(6)),
                    "pickup_longitude": np.where(rng.random(n) < 0.05, np.nan, -87.63 + rng.normal(0, 0.05, n).round(6)),
                    "dropoff_latitude": np.where(rng.random(n) < 0.08, np.nan, 41.88 + rng.normal(0, 0.07, n).round(6)),
                    "dropoff_longitude": np.where(rng.random(n) < 0.08, np.nan, -87.63 + rng.normal(0, 0.07, n).round(6)),
                    "pickup_census_tract": np.where(rng.random(n) < 0.3, None, (17031000000 + rng.integers(0, 5000, n)).astype(str)),
                    "dropoff_census_tract": np.where(rng.random(n) < 0.3, None, (17031000000 + rng.integers(0, 5000, n)).astype(str)),
                    "tipped": np.where(tipped, "yes", "no"),
                }
            )
            frame.to_csv(handle, index=False, header=first == 0)


def _artifacts(work: str) -> dict:
    """The artifacts of one run under ``work``, their properties reloaded from the previous steps."""
    from flywheel.dsl import artifacts

    kinds = {
        "examples": artifacts.Examples, "statistics": artifacts.ExampleStatistics, "schema": artifacts.Schema,
        "anomalies": artifacts.ExampleAnomalies, "report": artifacts.HTML, "transform_graph": artifacts.TransformGraph,
        "model": artifacts.Model, "evaluation": artifacts.ModelEvaluation, "blessing": artifacts.ModelBlessing,
        "metrics": artifacts.ClassificationMetrics, "summary": artifacts.Markdown,
    }
    found = {}
    for name, kind in kinds.items():
        uri = os.path.join(work, name)
        os.makedirs(uri, exist_ok=True)
        found[name] = kind(uri=uri)
        saved = os.path.join(work, f"{name}.properties.json")
        if os.path.isfile(saved):
            with open(saved) as handle:
                found[name].properties.update(json.load(handle))
    return found


def run_step(step: str, work: str, csv_path: str) -> None:
    """Runs one step in this process (the child side of the benchmark)."""
    from flywheel.component_call import call_component

    a = _artifacts(work)
    if step == "ingest":
        from flywheel.components.ingest import ingest

        call_component(ingest, {}, {"examples": a["examples"]}, {"path": csv_path, "label": "tipped"})
        outputs = ["examples"]
    elif step == "validate":
        from flywheel.components.validate import validate

        names = ["statistics", "schema", "anomalies", "report"]
        call_component(validate, {"examples": a["examples"]}, {n: a[n] for n in names}, {"fail_on_anomalies": False})
        outputs = names
    elif step == "transform":
        from flywheel.components.transform import transform

        call_component(transform, {"examples": a["examples"], "schema": a["schema"]}, {"transform_graph": a["transform_graph"]}, {})
        outputs = ["transform_graph"]
    elif step == "train":
        from flywheel.components import train as train_module
        from flywheel.components.train import train

        if os.environ.get("FLYWHEEL_SCALE_STREAM_ROWS"):
            train_module.STREAM_ROWS = int(os.environ["FLYWHEEL_SCALE_STREAM_ROWS"])

        call_component(
            train, {"examples": a["examples"], "transform_graph": a["transform_graph"]}, {"model": a["model"]},
            {"epochs": 1, "batch_size": 256},
        )
        outputs = ["model"]
    else:
        from flywheel.components.evaluate import evaluate

        names = ["evaluation", "blessing", "metrics", "summary"]
        call_component(
            evaluate, {"examples": a["examples"], "model": a["model"]}, {n: a[n] for n in names},
            {"slice_features": [], "thresholds": {}, "registry": os.path.join(work, "registry"), "model_name": "taxi"},
        )
        outputs = names
    for name in outputs:
        with open(os.path.join(work, f"{name}.properties.json"), "w") as handle:
            json.dump(a[name].properties, handle, default=str)


def measure_tfx(rows: int, csv_path: str, scratch: str, tfx_python: str, beam_args: list[str]) -> dict:
    """TFX's components over the same CSV, a process per stage: {stage: wall s, peak RSS MB, executions}."""
    from pipeline_e2e import run_and_sample

    input_dir = os.path.join(scratch, f"tfx-input-{rows}")
    work = os.path.join(scratch, f"tfx-run-{rows}-{time.monotonic_ns()}")
    os.makedirs(input_dir, exist_ok=True)
    linked = os.path.join(input_dir, "taxi.csv")
    if not os.path.exists(linked):
        os.link(csv_path, linked)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    stages = {}
    try:
        for stage in DATA_STEPS:
            args = [tfx_python, os.path.join(HERE, "tfx_scale.py"), "--input-dir", input_dir, "--workdir", work,
                    "--stage", stage, *(f"--beam-arg={a}" for a in beam_args)]
            wall, rss, _, out = run_and_sample(args, env, f"TFX {stage} at {rows} rows")
            result = json.loads(out.strip().splitlines()[-1].removeprefix("RESULT "))
            stages[stage] = {"wall_s": wall, "peak_rss_mb": rss, "executions": result["executions"]}
            ran = ", ".join(f"{n} {e['seconds']:.1f} s" for n, e in result["executions"].items() if e["state"] == "COMPLETE")
            print(f"  {rows:>9} rows  TFX {stage:<9} {wall:7.1f} s  {rss:7.0f} MB  ({ran})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(input_dir, ignore_errors=True)
    return stages


def measure(rows: int, scratch: str, tfx: tuple[str, list[str]] | None = None) -> dict:
    """One pass of every step over a fresh ``rows``-row table: {step: (wall s, peak RSS MB)}.

    ``tfx``: (the TFX venv's python, Beam args) to also run TFX's components over the same CSV.
    """
    from pipeline_e2e import run_and_sample

    csv_path = os.path.join(scratch, f"taxi-{rows}.csv")
    if not os.path.isfile(csv_path):
        write_taxi_csv(csv_path, rows)
    work = os.path.join(scratch, f"run-{rows}-{time.monotonic_ns()}")
    os.makedirs(work)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = {"rows": rows, "file_mb": os.path.getsize(csv_path) / 2**20, "steps": {}}
    try:
        for step in STEPS:
            args = [sys.executable, os.path.abspath(__file__), "--step", step, "--work", work, "--csv", csv_path]
            wall, rss, _, _ = run_and_sample(args, env, f"{step} at {rows} rows")
            result["steps"][step] = {"wall_s": wall, "peak_rss_mb": rss}
            print(f"  {rows:>9} rows  {step:<9} {wall:7.1f} s  {rss:7.0f} MB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if tfx is not None:
        result["tfx"] = measure_tfx(rows, csv_path, scratch, *tfx)
    return result


def summarize(runs: list[dict]) -> dict:
    """Medians per step over runs of one size."""
    steps = {}
    for step in STEPS:
        steps[step] = {
            key: statistics.median(run["steps"][step][key] for run in runs) for key in ("wall_s", "peak_rss_mb")
        }
    summary = {"rows": runs[0]["rows"], "file_mb": runs[0]["file_mb"], "repeats": len(runs), "steps": steps}
    if all("tfx" in run for run in runs):
        summary["tfx"] = {
            stage: {key: statistics.median(run["tfx"][stage][key] for run in runs) for key in ("wall_s", "peak_rss_mb")}
            for stage in DATA_STEPS
        }
        summary["tfx_executions"] = [run["tfx"] for run in runs]
    return summary


def print_tfx(sizes: list[dict]) -> None:
    """Flywheel's data steps beside TFX's components: wall s, peak MB, rows/s and their ratio."""
    compared = [size for size in sizes if "tfx" in size]
    if not compared:
        return
    print(f"\n{'rows':>10} {'step':<10} {'flywheel s':>10} {'MB':>6} {'TFX component(s)':<26} {'TFX s':>7} {'MB':>6}")
    for size in compared:
        for step in DATA_STEPS:
            ours, theirs = size["steps"][step], size["tfx"][step]
            print(f"{size['rows']:>10} {step:<10} {ours['wall_s']:>10.1f} {ours['peak_rss_mb']:>6.0f} "
                  f"{TFX_STAGES[step]:<26} {theirs['wall_s']:>7.1f} {theirs['peak_rss_mb']:>6.0f}")
        ours = sum(size["steps"][step]["wall_s"] for step in DATA_STEPS)
        theirs = sum(size["tfx"][step]["wall_s"] for step in DATA_STEPS)
        print(f"{size['rows']:>10} ingest+validate+transform: flywheel {size['rows'] / ours:,.0f} rows/s ({ours:.1f} s), "
              f"TFX {size['rows'] / theirs:,.0f} rows/s ({theirs:.1f} s); flywheel/TFX throughput {theirs / ours:.2f}x")


def print_table(sizes: list[dict]) -> None:
    print(f"\n{'rows':>10} {'file MB':>8} {'runs':>4} {'step':<10} {'wall s':>8} {'peak MB':>8} {'peak/file':>9} {'bytes/row':>9}")
    for size in sizes:
        for step, values in size["steps"].items():
            peak = values["peak_rss_mb"]
            print(
                f"{size['rows']:>10} {size['file_mb']:>8.0f} {size['repeats']:>4} {step:<10} {values['wall_s']:>8.1f} "
                f"{peak:>8.0f} {peak / size['file_mb']:>9.2f} {peak * 2**20 / size['rows']:>9.0f}"
            )
        total = sum(v["wall_s"] for v in size["steps"].values())
        top = max(v["peak_rss_mb"] for v in size["steps"].values())
        print(f"{size['rows']:>10} {'':>8} {'':>4} {'(run)':<10} {total:>8.1f} {top:>8.0f}")


def plot(sizes: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rows = [s["rows"] for s in sizes]
    for step in STEPS:
        left.plot(rows, [s["steps"][step]["wall_s"] for s in sizes], marker="o", label=step)
        right.plot(rows, [s["steps"][step]["peak_rss_mb"] for s in sizes], marker="o", label=step)
    right.plot(rows, [s["file_mb"] for s in sizes], linestyle="--", color="grey", label="CSV size")
    for axis, title in ((left, "wall time (s)"), (right, "peak RSS of the process tree (MB)")):
        axis.set_xscale("log")
        axis.set_xlabel("rows")
        axis.set_title(title)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="table sizes (default 100000 and 1000000)")
    parser.add_argument("--repeat", type=int, default=0, help="runs per size (default: 3 below 1M rows, else 1)")
    parser.add_argument("--ten-million", action="store_true", help="also run 10M rows")
    parser.add_argument("--scratch", default="", help="where tables and artifacts go (default: a temp dir, deleted)")
    parser.add_argument("--stream-rows", type=int, default=None,
                        help="train's STREAM_ROWS for this run (0: every train split streams; default: train's own)")
    parser.add_argument("--tfx", action="store_true",
                        help=f"also run TFX's CsvExampleGen, StatisticsGen + SchemaGen and Transform at sizes up to {TFX_MAX_ROWS:,} rows")
    parser.add_argument("--tfx-beam-arg", action="append", default=None,
                        help="a Beam option for TFX's components (repeat; default: in memory, one worker)")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream_rows is not None:  # the step children read it (run_step)
        os.environ["FLYWHEEL_SCALE_STREAM_ROWS"] = str(args.stream_rows)
    if args.step:
        run_step(args.step, args.work, args.csv)
        return
    import tempfile

    sizes = args.rows or [100_000, 1_000_000]
    tfx_python = None
    if args.tfx:
        from _venvs import venv_python
        from pipeline_e2e import TFX_BASE_PYTHON, TFX_REQUIREMENTS, TFX_VENV

        tfx_python = venv_python(TFX_VENV, TFX_REQUIREMENTS, TFX_BASE_PYTHON, "TFX 1.16")
    tfx_beam_args = args.tfx_beam_arg or ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    if args.ten_million:
        sizes.append(10_000_000)
    scratch = args.scratch or tempfile.mkdtemp(prefix="flywheel-scale-")
    os.makedirs(scratch, exist_ok=True)  # a --scratch that does not exist yet is made
    load_before = os.getloadavg()
    summaries = []
    try:
        for rows in sizes:
            repeat = args.repeat or (3 if rows < 1_000_000 else 1)
            tfx = (tfx_python, tfx_beam_args) if tfx_python and rows <= TFX_MAX_ROWS else None
            summaries.append(summarize([measure(rows, scratch, tfx) for _ in range(repeat)]))
            for name in os.listdir(scratch):
                if name.startswith(f"taxi-{rows}."):
                    os.remove(os.path.join(scratch, name))
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()
    print_table(summaries)
    print_tfx(summaries)
    print(f"\nload average (1/5/15 min) before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "scale.json"), "w") as handle:
        json.dump({"sizes": summaries, "load_before": load_before, "load_after": load_after,
                   "tfx_beam_args": tfx_beam_args if tfx_python else None}, handle, indent=1)
    plot(summaries, os.path.join(OUT, "scale.png"))
    print(f"wrote {os.path.join(OUT, 'scale.json')} and scale.png")


if __name__ == "__main__":
    main()

"""``flywheel demo``: the training pipeline on Palmer penguins, end to end, with a summary."""

from __future__ import annotations

import argparse
import os
from typing import Any

from flywheel.cli.common import add_beam_arg, command_params, home_of


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the training pipeline on Palmer penguins and summarise it (or: demo drift)",
        description="`flywheel demo` runs pipelines/training.py (ingest, validate, transform, train, "
        "evaluate, push) on the penguins data shipped by the palmerpenguins package, then prints rows, "
        "anomalies, metrics, the blessing and where the model was pushed; run it twice and the second "
        "run is cached. `flywheel demo drift` plays the closed loop: serve v1, shifted traffic, the "
        "monitor fires, a retraining run starts by itself, v2 serves, a bad v3 is rolled back.",
    )
    demo.add_argument(
        "scenario", nargs="?", choices=("training", "drift"), default="training", help="which demo (default: training)"
    )
    demo.add_argument("--param", "-p", action="append", default=[], metavar="K=V", help="training pipeline parameter")
    add_beam_arg(demo)
    demo.add_argument("--no-cache", action="store_true", help="run every node")
    demo.set_defaults(handler=run_demo)


def training_pipeline_file() -> str:
    import flywheel.pipelines

    return os.path.join(os.path.dirname(flywheel.pipelines.__file__), "training.py")


def run_demo(args: argparse.Namespace) -> int:
    if args.scenario == "drift":
        from flywheel.cli import drift_demo

        return drift_demo.run(home_of(args).root)
    from flywheel.cli.progress import Progress
    from flywheel.cli.run_commands import _print_outcome
    from flywheel.pipeline_file import load_pipeline
    from flywheel.runner import LocalRunner

    home = home_of(args)
    pipe = load_pipeline(training_pipeline_file())
    # The demo slices its evaluation by the penguins' island and sex; the pipeline's own default slices nothing.
    params = {"slice_features": '["island", "sex"]', **command_params(args, pipe)}
    pipe.resolve_parameters(params)
    print(f"flywheel demo: the '{pipe.name}' pipeline on Palmer penguins, locally, in {home.root}\n", flush=True)
    progress = Progress(list(pipe.topological_order()))
    with progress:
        result = LocalRunner(home, listener=progress.on_event, on_tick=progress.tick).run(
            pipe, params, cache=not args.no_cache
        )
    _print_outcome(result)
    if result.ok:
        print()
        print(summarise(result.outputs, result.states))
    return 0 if result.ok else 1


def summarise(outputs: dict[str, dict[str, Any]], states: dict[str, str]) -> str:
    """A short report of a training run from its output artifacts' properties."""

    def props(node: str, output: str) -> dict[str, Any]:
        artifact = outputs.get(node, {}).get(output)
        return artifact.properties if artifact is not None else {}

    examples = props("ingest", "examples")
    anomalies = props("validate", "anomalies")
    model = props("train", "model")
    evaluation = props("evaluate", "evaluation")
    blessing = props("evaluate", "blessing")
    pushed = props("push", "pushed_model")
    counts = examples.get("row_counts") or {}
    cached = sum(1 for s in states.values() if s == "CACHED")
    lines = ["Summary" + (f" ({cached} of {len(states)} nodes served from the cache)" if cached else "")]
    lines.append(
        f"  rows       {sum(counts.values())} from {examples.get('source', '?')}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: kv[0] != 'train'))
        + f" (label '{examples.get('label', '?')}', {examples.get('rows_dropped', 0)} dropped)"
    )
    count = anomalies.get("anomaly_count", 0)
    blocking = anomalies.get("blocking_count", count)
    graded = f" ({blocking} blocking, {count - blocking} recorded as warnings)" if count else ""
    lines.append(
        f"  anomalies  {'none' if not count else f'{count}{graded}: ' + ', '.join(anomalies.get('anomalous_features') or [])}"
    )
    lines.append(
        f"  training   {model.get('epochs_run', '?')} epochs, {model.get('parameters', '?')} parameters, "
        f"fit diagnosis: {model.get('diagnosis', '?')}"
    )
    shown = ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr", "average_precision"]
    lines.append(
        f"  metrics    eval ({evaluation.get('eval_rows', '?')} rows): "
        + "  ".join(f"{m} {evaluation[m]:.3f}" for m in shown if isinstance(evaluation.get(m), (int, float)))
    )
    reasons = "; ".join(blessing.get("reasons") or [])
    lines.append(f"  blessed    {'yes' if blessing.get('blessed') else 'NO'}: {reasons}")
    if pushed.get("pushed"):
        note = "" if pushed.get("created", True) else " (already there: nothing new pushed)"
        lines.append(
            f"  pushed     {pushed.get('model_name')} version {pushed.get('version')} -> {pushed.get('version_uri')}{note}; "
            f"serving version {pushed.get('serving_version')}"
        )
    else:
        lines.append(f"  pushed     no: {pushed.get('reason', 'model not blessed')}")
    return "\n".join(lines)

"""search_architecture: neural architecture search on image Examples -> the best architecture as a Model.

Runs ``flywheel.techniques.nas.ArchitectureSearch`` (random search or aging
evolution over a search space declared in the pipeline file) on a stratified
validation part of the train split (``eval`` is never touched), then trains
the best architecture for ``final_epochs`` with early stopping and writes it as
a Model artifact exactly like ``train`` does (``model.keras`` with the fitted
pixel preprocessing inside, ``serving/`` taking raw pixels, ``model.json``,
``history.json``, ``learning_curve.png``), so ``evaluate`` and ``push`` take it
unchanged.

The ``report`` (HTML) holds ``index.html``, ``pareto.png`` (validation accuracy
vs parameters and vs latency, the Pareto fronts highlighted) and
``candidates.json`` (every candidate with its architecture, parameters, FLOPs,
latency, accuracy, score and whether it is on each front).
"""

from __future__ import annotations

import html
import time
from typing import Any

from flywheel.dsl.artifacts import HTML, Examples, Model, TransformGraph
from flywheel.dsl.component import Input, Output, component
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components.data import resampling
from flywheel.models import images as image_models
from flywheel.models import features

CANDIDATES_FILE = "candidates.json"
PLOT_FILE = "pareto.png"
REPORT_FILE = "index.html"


@component
def search_architecture(
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    model: Output[Model],
    report: Output[HTML],
    search_space: dict = {},  # noqa: B006 - component defaults are recorded, never mutated
    strategy: str = "evolution",
    n_trials: int = 16,
    time_budget_s: float = 600.0,
    population_size: int = 6,
    sample_size: int = 3,
    param_penalty: float = 0.01,
    max_params: int = 0,
    search_epochs: int = 5,
    final_epochs: int = 30,
    early_stopping_patience: int = 5,
    batch_size: int = 32,
    learning_rate: float = 0.003,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> None:
    """Searches an architecture, trains the best one and reports every candidate and the Pareto front.

    Args:
        examples: Image Examples with a ``train`` split.
        transform_graph: Output of ``transform`` (its pixel preprocessing goes inside every candidate).
        model: Receives the best architecture, trained (the files ``train`` writes).
        report: Receives ``index.html``, ``pareto.png`` and ``candidates.json``.
        search_space: Choice lists overriding ``architectures.DEFAULT_SPACE`` (keys:
            kinds, stages, layers_per_stage, widths, kernel_sizes, skip,
            dense_units, mlp_layers, mlp_units); ``{}`` searches the default space.
        strategy: ``"evolution"`` (aging evolution) or ``"random"``.
        n_trials: Most candidates trained.
        time_budget_s: Most seconds of search (the final training comes after).
        population_size: Aging evolution's population (its first trials are random).
        sample_size: Aging evolution's tournament size.
        param_penalty: lambda of the score ``val_accuracy - lambda * log10(params)``.
        max_params: Hard limit on a candidate's parameters (0: none).
        search_epochs: Epochs per candidate.
        final_epochs: Most epochs of the final training of the best architecture.
        early_stopping_patience: Final training stops after this many epochs
            without validation-loss gain (0 disables it).
        batch_size: Examples per gradient step.
        learning_rate: Adam learning rate.
        validation_fraction: Share of train held out to score candidates.
        seed: Seeds the search and every training.

    Raises:
        ParameterError: a parameter breaks its rule.
        FlywheelError: the Examples are not images.
    """
    _check(final_epochs, early_stopping_patience, validation_fraction, max_params)
    from flywheel.models import layers as model_layers
    from flywheel.models import architectures
    from flywheel.techniques import nas

    spec, preprocess, (x_fit, y_fit, x_val, y_val) = image_training_data(examples, transform_graph, validation_fraction, seed)
    search = nas.ArchitectureSearch(
        search_space=search_space, strategy=strategy, n_trials=n_trials, time_budget_s=float(time_budget_s),
        population_size=population_size, sample_size=sample_size, param_penalty=float(param_penalty),
        max_params=max_params or None, epochs=search_epochs, batch_size=batch_size,
        learning_rate=float(learning_rate), random_state=seed,
    ).fit(x_fit, y_fit, x_val, y_val, preprocess=preprocess, progress=lambda line: print(line, flush=True))

    best = search.best_architecture_
    started = time.perf_counter()
    net = architectures.build_network(best, spec["image_shape"], len(spec["label_vocabulary"]), preprocess=model_layers.load_model(
        transform_graph.path(features.PREPROCESS_FILE)), name="searched")
    history = nas.train_network(
        net, x_fit, y_fit, x_val, y_val, epochs=final_epochs, batch_size=batch_size,
        learning_rate=float(learning_rate), seed=seed, patience=early_stopping_patience,
    )
    write_image_model(
        model, net, spec, history, (x_fit, y_fit, x_val, y_val), patience=early_stopping_patience,
        fit_seconds=time.perf_counter() - started,
        properties={"architecture": best, "architecture_name": architectures.describe(best), "searched_by": "search_architecture",
                    "flops": architectures.architecture_cost(best, spec["image_shape"], len(spec["label_vocabulary"]))[1]},
    )
    write_search_report(report, search)


def _check(final_epochs: int, patience: int, fraction: float, max_params: int) -> None:
    def fail(name: str, rule: str, value: Any) -> None:
        raise ParameterError(f"The '{name}' parameter of search_architecture must be {rule}. Got {value!r} instead.")

    if final_epochs < 1:
        fail("final_epochs", ">= 1", final_epochs)
    if patience < 0:
        fail("early_stopping_patience", ">= 0", patience)
    if not 0.0 < fraction < 1.0:
        fail("validation_fraction", "in (0, 1)", fraction)
    if max_params < 0:
        fail("max_params", ">= 0 (0: no limit)", max_params)


def image_training_data(examples: Examples, transform_graph: TransformGraph, fraction: float, seed: int) -> tuple[dict, Any, tuple]:
    """(transform spec, frozen preprocess model, (x_fit, y_fit, x_val, y_val)) of image Examples.

    Validation is the ``validation`` split when there is one, else a stratified
    ``fraction`` of train; rows come from the transform's resampled split when
    ``transform`` resampled.

    Raises:
        FlywheelError: the transform graph is not an image transform.
    """
    from flywheel.models import layers as model_layers

    spec = features.read_json(transform_graph.path(features.TRANSFORM_JSON))
    if not image_models.is_image_spec(spec):
        raise FlywheelError(
            f"The transform graph at {transform_graph.uri} is for tables; architecture search and scaling need image "
            "Examples (ingest images, e.g. path='sklearn-digits')."
        )
    from flywheel.components.train import training_data

    source = resampling.resampled_examples(transform_graph) or examples
    data = training_data(source, spec, fraction, seed)
    return spec, model_layers.load_model(transform_graph.path(features.PREPROCESS_FILE)), data


def write_image_model(
    model: Model, net: Any, spec: dict[str, Any], history: dict[str, list[float]], data: tuple, *,
    patience: int, fit_seconds: float, properties: dict[str, Any],
) -> None:
    """Writes a trained image network as a Model artifact, through ``train``'s own writer."""
    import numpy as np

    from flywheel.components.train import write_trained_model

    epochs_run = len(history["loss"])
    best_epoch = int(np.argmin(history["val_loss"])) + 1 if patience > 0 else epochs_run
    x_fit, y_fit, x_val, y_val = data
    write_trained_model(
        model, net, spec, history, best_epoch=best_epoch,
        final_train=net.evaluate(x_fit, y_fit, batch_size=256, verbose=0, return_dict=True),
        final_val=net.evaluate(x_val, y_val, batch_size=256, verbose=0, return_dict=True),
        fit_seconds=fit_seconds, train_rows=int(len(y_fit)), validation_rows=int(len(y_val)), properties=properties,
    )


def write_search_report(report: HTML, search: Any) -> None:
    """Writes ``candidates.json``, ``pareto.png`` and ``index.html`` of a fitted ArchitectureSearch."""
    on_params, on_latency = set(search.pareto_params_), set(search.pareto_latency_)
    candidates = [
        {"index": i, **t, "pareto_params": i in on_params, "pareto_latency": i in on_latency, "best": i == search.best_index_}
        for i, t in enumerate(search.trials_)
    ]
    summary = {
        "strategy": search.strategy, "n_trials": search.n_trials, "time_budget_s": search.time_budget_s,
        "trials_run": len(candidates), "stopped_by": search.stopped_by_, "elapsed_s": round(search.elapsed_s_, 3),
        "param_penalty": search.param_penalty, "max_params": search.max_params, "rejected": search.rejected_,
        "best_index": search.best_index_, "best_architecture": search.best_architecture_,
        "objective": f"val_accuracy - {search.param_penalty} * log10(params)"
                     + (f", params <= {search.max_params}" if search.max_params else ""),
    }
    features.write_json(report.path(CANDIDATES_FILE), {"summary": summary, "candidates": candidates})
    plot_pareto(candidates, report.path(PLOT_FILE))
    best = candidates[search.best_index_]
    rows = "".join(
        "<tr{cls}><td>{i}</td><td>{name}</td><td>{origin}</td><td class=num>{params:,}</td><td class=num>{flops:,}</td>"
        "<td class=num>{lat:.3f}</td><td class=num>{acc:.4f}</td><td class=num>{score:.4f}</td><td>{front}</td></tr>".format(
            cls=' class="best"' if c["best"] else (' class="front"' if c["pareto_params"] else ""),
            i=c["index"], name=html.escape(c["name"]), origin=html.escape(c["origin"]), params=c["params"], flops=c["flops"],
            lat=c["latency_ms"], acc=c["val_accuracy"], score=c["score"],
            front=", ".join(n for n, flag in (("params", c["pareto_params"]), ("latency", c["pareto_latency"])) if flag),
        )
        for c in sorted(candidates, key=lambda c: -c["score"])
    )
    page = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Architecture search</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:.9em}"
        "th,td{border:1px solid #ccc;padding:.2em .5em}.num{text-align:right}tr.best{background:#d8f0d8}"
        "tr.front{background:#eef6ff}img{max-width:100%}</style></head><body>"
        f"<h1>Architecture search</h1><p>Strategy <b>{html.escape(search.strategy)}</b>, "
        f"{len(candidates)} of {search.n_trials} trials in {search.elapsed_s_:.1f} s (budget {search.time_budget_s:g} s; "
        f"stopped by {search.stopped_by_}). Objective: {html.escape(summary['objective'])}. "
        f"Best: <b>{html.escape(best['name'])}</b> ({best['params']:,} parameters, validation accuracy "
        f"{best['val_accuracy']:.4f}).</p><img src=\"{PLOT_FILE}\" alt=\"Pareto fronts\">"
        "<h2>Candidates (best score first; green: chosen, blue: on the accuracy/parameters front)</h2><table><tr>"
        "<th>#</th><th>architecture</th><th>origin</th><th>params</th><th>FLOPs</th><th>latency ms/image</th>"
        f"<th>val accuracy</th><th>score</th><th>Pareto front</th></tr>{rows}</table></body></html>\n"
    )
    with open(report.path(REPORT_FILE), "w", encoding="utf-8") as handle:
        handle.write(page)
    report.properties.update(
        {"best_architecture": best["name"], "best_val_accuracy": best["val_accuracy"], "best_params": best["params"],
         "trials": len(candidates), "pareto_size": len(on_params), "stopped_by": search.stopped_by_,
         "elapsed_s": round(search.elapsed_s_, 3)}
    )


def plot_pareto(candidates: list[dict[str, Any]], path: str) -> None:
    """Two scatter plots, validation accuracy vs parameters and vs latency, fronts drawn as steps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, flag, label in (
        (axes[0], "params", "pareto_params", "parameters (log)"), (axes[1], "latency_ms", "pareto_latency", "latency, ms per image (log)")
    ):
        for kind, marker in (("cnn", "o"), ("mlp", "s")):
            group = [c for c in candidates if c["architecture"]["kind"] == kind]
            axis.scatter([c[key] for c in group], [c["val_accuracy"] for c in group], marker=marker, c="#999", label=kind)
        front = sorted((c for c in candidates if c[flag]), key=lambda c: c[key])
        axis.step([c[key] for c in front], [c["val_accuracy"] for c in front], where="post", c="#d62728", label="Pareto front")
        axis.scatter([c[key] for c in front], [c["val_accuracy"] for c in front], c="#d62728", zorder=3)
        best = [c for c in candidates if c["best"]]
        axis.scatter([c[key] for c in best], [c["val_accuracy"] for c in best], marker="*", s=220, c="#2ca02c", zorder=4, label="chosen")
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("validation accuracy")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)

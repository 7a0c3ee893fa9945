"""scale_model: EfficientNet-style compound scaling of a baseline CNN on image Examples -> a Model.

A separate component from ``search_architecture`` (not a ``mode`` of it):
the two take different parameters (a search space and trial budgets there; a
baseline, ``phi`` and a coefficient grid here) and write different reports,
so one signature holding both would mostly be parameters that the other mode
ignores. They share the data reading and the Model writing
(``search_architecture.image_training_data`` / ``write_image_model``).

Steps (``flywheel.techniques.scaling``): grid-search ``alpha, beta, gamma >= 1``
with ``alpha * beta**2 * gamma**2 ~= 2`` at ``phi = 1`` by validation accuracy
(on a stratified part of train; ``eval`` is never touched); with ``compare``,
also train the baseline and the network scaled by compound / depth-only /
width-only / resolution-only scaling to the same FLOPs budget ``2**phi``; then
train the compound-scaled network for ``final_epochs`` and write it like
``train`` does (resolution is a ``Resizing`` layer inside the model, so serving
takes raw pixels). The ``report`` (HTML) holds ``index.html``, ``scaling.png``
and ``scaling.json``.
"""

from __future__ import annotations

import html
import time
from typing import Annotated, Any

from flywheel.dsl.artifacts import HTML, Examples, Model, TransformGraph
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval

from flywheel.models import features
from flywheel.components.search_architecture import image_training_data, write_image_model

REPORT_JSON = "scaling.json"
PLOT_FILE = "scaling.png"
REPORT_FILE = "index.html"


def _print(line: str) -> None:
    print(line, flush=True)


@component
def scale_model(
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    model: Output[Model],
    report: Output[HTML],
    base: dict = {},  # noqa: B006 - component defaults are recorded, never mutated
    phi: Annotated[float, Interval(float, 0, None, closed="neither")] = 1.0,
    grid_values: list = [1.0, 1.2, 1.4, 1.6, 1.8, 2.0],  # noqa: B006
    tolerance: float = 0.1,
    compare: bool = True,
    search_epochs: int = 10,
    final_epochs: Annotated[int, Interval(int, 1, None)] = 30,
    early_stopping_patience: Annotated[int, Interval(int, 0, None)] = 5,
    batch_size: int = 32,
    learning_rate: float = 0.003,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> None:
    """Finds compound-scaling coefficients, scales the baseline by ``phi`` and trains it.

    Args:
        examples: Image Examples (square images) with a ``train`` split.
        transform_graph: Output of ``transform`` (its pixel preprocessing goes inside the model).
        model: Receives the compound-scaled network, trained (the files ``train`` writes).
        report: Receives ``index.html``, ``scaling.png`` and ``scaling.json``.
        base: Baseline CNN as a ``flywheel.techniques.nas`` architecture; ``{}``
            means ``scaling.BASELINE`` (two stages of two 3x3 convolutions, 8 and 16 filters, residual skips).
        phi: Compound coefficient (``d, w, r = alpha**phi, beta**phi, gamma**phi``).
        grid_values: Candidate values of alpha, beta and gamma (each >= 1).
        tolerance: Largest ``|alpha * beta**2 * gamma**2 - 2|`` of a grid point.
        compare: Also train depth-, width- and resolution-only scaling to the same FLOPs budget.
        search_epochs: Epochs of every network of the grid and the comparison.
        final_epochs: Most epochs of the final training.
        early_stopping_patience: Final training stops after this many epochs
            without validation-loss gain (0 disables it).
        batch_size: Examples per gradient step.
        learning_rate: Adam learning rate.
        validation_fraction: Share of train held out to score networks.
        seed: Seeds every training.

    Raises:
        ParameterError: a parameter breaks its rule.
        FlywheelError: the Examples are not (square) images, or no grid point meets the constraint.
    """
    from flywheel.models import layers as model_layers
    from flywheel.models import architectures
    from flywheel.techniques import nas, scaling

    spec, preprocess, data = image_training_data(examples, transform_graph, validation_fraction, seed)
    baseline = base or scaling.BASELINE
    search = scaling.CompoundScaling(
        base=baseline, grid_values=list(grid_values), tolerance=float(tolerance), epochs=search_epochs,
        batch_size=batch_size, learning_rate=float(learning_rate), random_state=seed,
    ).fit(*data, preprocess=preprocess, progress=_print)
    coefficients = (search.alpha_, search.beta_, search.gamma_)
    comparison = []
    if compare:
        comparison = scaling.compare_scaling(
            baseline, coefficients, [float(phi)], data, epochs=search_epochs, batch_size=batch_size,
            learning_rate=float(learning_rate), seed=seed, preprocess=preprocess, progress=_print,
        )
    arch = search.scaled(float(phi))
    shape, n_classes = spec["image_shape"], len(spec["label_vocabulary"])
    started = time.perf_counter()
    net = architectures.build_network(arch, shape, n_classes, preprocess=model_layers.load_model(
        transform_graph.path(features.PREPROCESS_FILE)), name="scaled")
    history = nas.train_network(
        net, *data, epochs=final_epochs, batch_size=batch_size, learning_rate=float(learning_rate), seed=seed,
        patience=early_stopping_patience,
    )
    params, flops = architectures.architecture_cost(arch, shape, n_classes)
    chosen = {"alpha": search.alpha_, "beta": search.beta_, "gamma": search.gamma_, "phi": float(phi),
              "architecture": arch, "name": architectures.describe(arch), "params": params, "flops": flops}
    write_image_model(
        model, net, spec, history, data, patience=early_stopping_patience, fit_seconds=time.perf_counter() - started,
        properties={"architecture": arch, "architecture_name": chosen["name"], "flops": flops, "searched_by": "scale_model",
                    "compound_scaling": {k: chosen[k] for k in ("alpha", "beta", "gamma", "phi")}},
    )
    _write_report(report, chosen, search.grid_, comparison)


def _write_report(report: HTML, chosen: dict[str, Any], grid: list[dict[str, Any]], comparison: list[dict[str, Any]]) -> None:
    features.write_json(report.path(REPORT_JSON), {"chosen": chosen, "grid": grid, "comparison": comparison})
    if comparison:
        _plot(comparison, report.path(PLOT_FILE))

    def table(header: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td class=num>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    grid_table = table(
        ["alpha", "beta", "gamma", "alpha*beta^2*gamma^2", "network", "params", "FLOPs", "val accuracy"],
        [[g["alpha"], g["beta"], g["gamma"], g["product"], g["name"], g["params"], g["flops"], g["val_accuracy"]] for g in grid],
    )
    parts = [
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Compound scaling</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:.9em}"
        "th,td{border:1px solid #ccc;padding:.2em .5em}.num{text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>Compound scaling</h1>",
        f"<p>Chosen alpha={chosen['alpha']:g}, beta={chosen['beta']:g}, gamma={chosen['gamma']:g} (best validation "
        f"accuracy at phi=1); scaled by phi={chosen['phi']:g}: <b>{html.escape(chosen['name'])}</b>, "
        f"{chosen['params']:,} parameters, {chosen['flops']:,} FLOPs per image.</p>",
        "<h2>Coefficient grid at phi=1</h2>", grid_table,
    ]
    if comparison:
        parts += [
            "<h2>Scaling methods at the same FLOPs budget</h2>",
            table(
                ["phi", "method", "d", "w", "r", "network", "params", "FLOPs", "FLOPs / baseline", "val accuracy"],
                [[r["phi"], r["method"], r["d"], r["w"], r["r"], r["name"], r["params"], r["flops"], r["flops_ratio"], r["val_accuracy"]]
                 for r in comparison],
            ),
            f'<img src="{PLOT_FILE}" alt="accuracy vs FLOPs">',
        ]
    with open(report.path(REPORT_FILE), "w", encoding="utf-8") as handle:
        handle.write("".join(parts) + "</body></html>\n")
    report.properties.update({k: chosen[k] for k in ("alpha", "beta", "gamma", "phi", "params", "flops")} | {"grid_points": len(grid)})


def _plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.2))
    base = [r for r in rows if r["method"] == "baseline"]
    # Compound last, dashed and larger: when the grid picks a one-knob point it coincides with that method's line.
    for method, marker in (("depth", "o"), ("width", "s"), ("resolution", "^"), ("compound", "*")):
        points = base + sorted((r for r in rows if r["method"] == method), key=lambda r: r["flops"])
        style = {"linestyle": "--", "markersize": 14} if method == "compound" else {}
        axis.plot([r["flops"] for r in points], [r["val_accuracy"] for r in points], marker=marker, label=method, **style)
    axis.set_xscale("log")
    axis.set_xlabel("FLOPs per image (log)")
    axis.set_ylabel("validation accuracy")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)

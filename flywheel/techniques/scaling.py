"""EfficientNet-style compound scaling (Tan & Le, ICML 2019) of a small baseline CNN.

A baseline is an architecture of ``flywheel.techniques.nas`` (a CNN with
stages of Conv2D layers; ``BASELINE`` has residual skips, without which the
16-layer depth-scaled network at ``phi = 2`` did not train on digits). Three
knobs scale it:

* depth ``d``: every stage gets ``ceil(d * layers)`` layers (EfficientNet's
  rounding of block repeats);
* width ``w``: every layer gets ``round(w * filters)`` filters;
* resolution ``r``: the input is resized to ``round(r * size)`` pixels inside
  the model (a Keras ``Resizing`` layer), so serving still takes raw pixels.

Compound scaling fixes ``alpha, beta, gamma >= 1`` with
``alpha * beta**2 * gamma**2 ~= 2`` (FLOPs grow about ``d * w**2 * r**2``, so
scaling by ``phi`` multiplies FLOPs by about ``2**phi``), found by a small grid
search at ``phi = 1`` picked by validation accuracy; then
``d, w, r = alpha**phi, beta**phi, gamma**phi``. ``compare_scaling`` sets it
against scaling one knob alone to the same FLOPs budget: depth ``2**phi``,
width ``sqrt(2)**phi`` or resolution ``sqrt(2)**phi``. FLOPs are counted
analytically (``architectures.network_cost``); at this size the integer rounding of
layers, filters and pixels moves real FLOPs away from ``2**phi``, so the
tables report the counted FLOPs, never the nominal ones.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.models import architectures
from flywheel.techniques import nas
from flywheel.techniques.base import Interval, Technique

BASELINE: dict[str, Any] = {"kind": "cnn", "stages": [[8, 8], [16, 16]], "kernel_size": 3, "skip": True, "dense_units": []}
GRID_VALUES = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
METHODS = ("compound", "depth", "width", "resolution")


def constraint_grid(values: Sequence[float] = GRID_VALUES, *, target: float = 2.0, tolerance: float = 0.1) -> list[tuple[float, float, float]]:
    """Every ``(alpha, beta, gamma)`` from ``values`` (each >= 1) with ``|alpha*beta**2*gamma**2 - target| <= tolerance``.

    Raises:
        FlywheelError: a value is below 1, or no combination meets the constraint.
    """
    values = sorted({float(v) for v in values})
    if not values or values[0] < 1.0:
        raise FlywheelError(f"Compound-scaling coefficients must be >= 1; got grid values {values}.")
    grid = [
        (a, b, g) for a, b, g in itertools.product(values, repeat=3)
        if abs(a * b * b * g * g - target) <= tolerance + 1e-12
    ]
    if not grid:
        raise FlywheelError(
            f"No (alpha, beta, gamma) from {values} has alpha*beta^2*gamma^2 within {tolerance} of {target}; "
            "use finer grid values or a larger tolerance."
        )
    return grid


def compound_multipliers(alpha: float, beta: float, gamma: float, phi: float) -> tuple[float, float, float]:
    """(depth, width, resolution) multipliers ``alpha**phi, beta**phi, gamma**phi``."""
    return float(alpha**phi), float(beta**phi), float(gamma**phi)


def method_multipliers(method: str, phi: float, coefficients: tuple[float, float, float], target: float = 2.0) -> tuple[float, float, float]:
    """(d, w, r) of a scaling method at ``phi``: compound, or one knob alone to FLOPs ``target**phi``.

    Raises:
        FlywheelError: the method is unknown.
    """
    if method == "compound":
        return compound_multipliers(*coefficients, phi)
    if method == "depth":
        return float(target**phi), 1.0, 1.0
    if method == "width":
        return 1.0, float(math.sqrt(target) ** phi), 1.0
    if method == "resolution":
        return 1.0, 1.0, float(math.sqrt(target) ** phi)
    raise FlywheelError(f"Scaling method must be one of {', '.join(METHODS)}; got {method!r}.")


def scale_architecture(base: dict[str, Any], input_size: int, *, depth: float, width: float, resolution: float) -> dict[str, Any]:
    """The baseline CNN scaled by (depth, width, resolution) multipliers (see the module docstring).

    Raises:
        FlywheelError: the baseline is not a CNN or a multiplier is below 1.
    """
    if base.get("kind") != "cnn" or not base.get("stages"):
        raise FlywheelError(f"Compound scaling needs a CNN baseline with 'stages'; got {base!r}.")
    if min(depth, width, resolution) < 1.0:
        raise FlywheelError(f"Scaling multipliers must be >= 1; got depth={depth}, width={width}, resolution={resolution}.")
    stages = []
    for stage in base["stages"]:
        layers = math.ceil(depth * len(stage) - 1e-9)
        widths = [max(1, int(round(width * w))) for w in stage]
        stages.append([widths[min(i, len(widths) - 1)] for i in range(layers)])
    base_resolution = int(base.get("resolution") or input_size)
    return {
        **base,
        "stages": stages,
        "dense_units": [max(1, int(round(width * u))) for u in base.get("dense_units", [])],
        "resolution": int(round(resolution * base_resolution)),
    }


def _train_and_score(
    arch: dict[str, Any], data: tuple, *, input_shape: tuple, n_classes: int, epochs: int, batch_size: int,
    learning_rate: float, seed: int, preprocess: Any, eval_data: tuple | None = None,
) -> dict[str, Any]:
    import keras

    began = time.perf_counter()
    keras.utils.set_random_seed(seed)
    net = architectures.build_network(arch, input_shape, n_classes, preprocess=preprocess, name="scaled")
    x_train, y_train, x_val, y_val = data
    history = nas.train_network(
        net, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
        validate=False,
    )
    params, flops = architectures.architecture_cost(arch, input_shape, n_classes)
    row = {
        "architecture": arch, "name": architectures.describe(arch), "params": params, "flops": flops,
        "val_accuracy": nas.accuracy_of(net, x_val, y_val), "val_loss": nas.log_loss_of(net, x_val, y_val), "epochs_run": len(history["loss"]),
        "seconds": round(time.perf_counter() - began, 3),
    }
    if eval_data is not None:
        row["eval_accuracy"] = nas.accuracy_of(net, *eval_data)
    keras.backend.clear_session()
    return row


class CompoundScaling(Technique):
    """Grid search of EfficientNet's (alpha, beta, gamma) under ``alpha*beta^2*gamma^2 ~= target``.

    ``fit`` trains the baseline scaled by every grid point at ``phi = 1`` and
    keeps the one with the best validation accuracy (ties: fewer FLOPs).
    ``scaled(phi)`` returns the baseline scaled by ``alpha**phi, beta**phi, gamma**phi``.

    Learned attributes: ``grid_`` (one dict per grid point: ``alpha``,
    ``beta``, ``gamma``, ``product``, ``name``, ``params``, ``flops``,
    ``val_accuracy``, ``val_loss``, ``seconds``), ``alpha_``, ``beta_``,
    ``gamma_``, ``best_index_``, ``input_size_``.
    """

    _parameter_constraints = {
        "base": [dict, None],
        "grid_values": [list, tuple],
        "target": [Interval(float, 1, None, closed="neither")],
        "tolerance": [Interval(float, 0, None)],
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        base: dict | None = None,
        grid_values: Sequence[float] = GRID_VALUES,
        target: float = 2.0,
        tolerance: float = 0.1,
        epochs: int = 10,
        batch_size: int = 32,
        learning_rate: float = 0.003,
        random_state: int | None = 0,
    ) -> None:
        self.base = base
        self.grid_values = grid_values
        self.target = target
        self.tolerance = tolerance
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(
        self, x_train: Any, y_train: Any, x_val: Any, y_val: Any, *, preprocess: Any = None,
        progress: Callable[[str], None] | None = None,
    ) -> CompoundScaling:
        """Scores every grid point at ``phi = 1`` on square images ``(N, S, S, C)``.

        ``progress`` is called with one line per scored grid point.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: images are not square 4-D arrays, labels do not match,
                or no grid point meets the constraint.
        """
        from flywheel.techniques._checks import check_features_labels

        self._validate_params()
        x_train, y_train = check_features_labels("CompoundScaling", x_train, y_train, min_dims=4)
        x_val, y_val = check_features_labels("CompoundScaling", x_val, y_val, min_dims=4, min_classes=1)
        if x_train.ndim != 4 or x_train.shape[1] != x_train.shape[2] or x_val.shape[1:] != x_train.shape[1:]:
            raise FlywheelError(
                f"CompoundScaling needs square images (N, S, S, C) of one shape; got {x_train.shape} and {x_val.shape}."
            )
        base = self.base or BASELINE
        self.input_size_ = int(x_train.shape[1])
        shape = tuple(int(v) for v in x_train.shape[1:])
        n_classes = int(max(y_train.max(), y_val.max())) + 1
        seed = 0 if self.random_state is None else int(self.random_state)
        self.grid_: list[dict[str, Any]] = []
        points = constraint_grid(self.grid_values, target=self.target, tolerance=self.tolerance)
        for alpha, beta, gamma in points:
            arch = scale_architecture(base, self.input_size_, depth=alpha, width=beta, resolution=gamma)
            row = _train_and_score(
                arch, (x_train, y_train, x_val, y_val), input_shape=shape, n_classes=n_classes, epochs=self.epochs,
                batch_size=self.batch_size, learning_rate=self.learning_rate, seed=seed, preprocess=preprocess,
            )
            self.grid_.append({"alpha": alpha, "beta": beta, "gamma": gamma, "product": alpha * beta**2 * gamma**2, **row})
            if progress is not None:
                progress(
                    f"grid point {len(self.grid_)}/{len(points)}: alpha {alpha:g}, beta {beta:g}, gamma {gamma:g}: "
                    f"val_accuracy {row['val_accuracy']:.4f}, {row['flops']:,} FLOPs"
                )
        self.best_index_ = min(range(len(self.grid_)), key=lambda i: (-self.grid_[i]["val_accuracy"], self.grid_[i]["flops"]))
        best = self.grid_[self.best_index_]
        self.alpha_, self.beta_, self.gamma_ = best["alpha"], best["beta"], best["gamma"]
        return self

    def scaled(self, phi: float) -> dict[str, Any]:
        """The baseline compound-scaled by ``phi`` with the fitted coefficients.

        Raises:
            FlywheelError: ``fit`` has not run.
        """
        if not hasattr(self, "alpha_"):
            raise FlywheelError("CompoundScaling.scaled needs fitted coefficients; call fit first.")
        d, w, r = compound_multipliers(self.alpha_, self.beta_, self.gamma_, phi)
        return scale_architecture(self.base or BASELINE, self.input_size_, depth=d, width=w, resolution=r)

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        X = rng.random((40, 6, 6, 1)).astype("float32")
        y = np.tile([0, 1], 20)
        X[y == 1, :3] += 1.0
        base = {"kind": "cnn", "stages": [[2]], "kernel_size": 3, "skip": False, "dense_units": []}

        def call(search: CompoundScaling) -> list[np.ndarray]:
            search.fit(X[:30], y[:30], X[30:], y[30:])
            return [np.array([g["flops"] for g in search.grid_]), np.array([g["val_loss"] for g in search.grid_])]

        def bad_input(search: CompoundScaling) -> None:
            search.fit(X[:, :5], y, X[:, :5], y)  # not square

        return {
            "params": {"base": base, "grid_values": [1.0, 2.0], "target": 2.0, "tolerance": 0.0, "epochs": 1, "random_state": 0},
            "bad_params": [{"target": 0.5}, {"tolerance": -0.1}, {"epochs": 0}, {"grid_values": "1,2"}],
            "call": call,
            "bad_input": bad_input,
        }


def compare_scaling(
    base: dict[str, Any],
    coefficients: tuple[float, float, float],
    phis: Sequence[float],
    data: tuple,
    *,
    eval_data: tuple | None = None,
    methods: Sequence[str] = METHODS,
    target: float = 2.0,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 0.003,
    seed: int = 0,
    preprocess: Any = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Trains the baseline and each method's scaled network at each ``phi``; one row per network.

    Args:
        base: The baseline CNN architecture.
        coefficients: (alpha, beta, gamma) of compound scaling.
        phis: Scaling exponents, e.g. (1, 2).
        data: (x_train, y_train, x_val, y_val), square images.
        eval_data: Optional (x_eval, y_eval) also scored.
        methods: Scaling methods (``METHODS``).
        target: FLOPs growth per unit of ``phi`` for the one-knob methods.
        epochs, batch_size, learning_rate, seed: Training of every network.
        preprocess: Optional frozen Keras model applied first.
        progress: Called with one line per trained network.

    Returns:
        Rows with ``phi``, ``method``, ``d``/``w``/``r`` multipliers, the scaled
        ``layers`` (conv layers), ``widths`` (first stage's filters),
        ``resolution``, ``params``, ``flops``, ``flops_ratio`` (to the baseline),
        ``val_accuracy`` (and ``eval_accuracy``), ``seconds``.
    """
    x_train = np.asarray(data[0])
    size = int(x_train.shape[1])
    shape = tuple(int(v) for v in x_train.shape[1:])
    n_classes = int(max(np.max(data[1]), np.max(data[3]))) + 1
    settings = {"input_shape": shape, "n_classes": n_classes, "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "seed": seed, "preprocess": preprocess, "eval_data": eval_data}
    plan = [(0.0, "baseline", (1.0, 1.0, 1.0))]
    plan += [(float(phi), method, method_multipliers(method, phi, coefficients, target)) for phi in phis for method in methods]
    rows = []
    base_flops = None
    for phi, method, (d, w, r) in plan:
        arch = scale_architecture(base, size, depth=d, width=w, resolution=r)
        row = _train_and_score(arch, data, **settings)
        base_flops = base_flops or row["flops"]
        rows.append({
            "phi": phi, "method": method, "d": round(d, 4), "w": round(w, 4), "r": round(r, 4),
            "layers": sum(len(s) for s in arch["stages"]), "widths": [s[0] for s in arch["stages"]],
            "resolution": arch["resolution"], "flops_ratio": round(row["flops"] / base_flops, 3), **row,
        })
        if progress is not None:
            progress(f"phi {phi:g} {method}: d {d:.3g} / w {w:.3g} / r {r:.3g}: val_accuracy {row['val_accuracy']:.4f}, "
                     f"{row['flops']:,} FLOPs ({rows[-1]['flops_ratio']}x)")
    return rows

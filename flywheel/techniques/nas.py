"""Neural architecture search over small image CNNs and MLPs, with a Pareto front.

An *architecture* is plain JSON data, so it can be declared in a pipeline
file, recorded in lineage and rebuilt later::

    {"kind": "cnn", "stages": [[16, 16], [32]], "kernel_size": 3, "skip": true,
     "dense_units": [32], "resolution": 8}
    {"kind": "mlp", "units": [64, 64], "skip": false, "resolution": 8}

A CNN stage is a list of Conv2D widths (one per layer, ``same`` padding, ReLU)
followed by a 2x2 max-pool while the map is at least 4 pixels wide (the rule of
``flywheel.models.images.build_cnn``). ``skip`` adds a residual connection around every
layer whose input already has its output's shape (layers after the first in a
stage; MLP layers of the same width as the one before). ``resolution`` resizes
the input inside the model (a Keras ``Resizing`` layer), so serving still takes
raw pixels. The *search space* is a dict of choices (see ``DEFAULT_SPACE``).

The space, sampling, mutation, ``layer_plan``, ``network_cost`` and ``build_network`` live in
the models layer (``flywheel.models.architectures``) and are re-exported here.

``ArchitectureSearch`` runs random search or regularized (aging) evolution
(Real et al., AAAI 2019) with a trial budget and a time budget. Objective:
``validation accuracy - param_penalty * log10(parameters)`` (a soft penalty),
with an optional hard constraint ``parameters <= max_params`` that is checked
analytically before a candidate is trained (infeasible samples are redrawn).
Every candidate's accuracy, parameters, FLOPs and measured latency are kept;
``pareto_front`` marks the non-dominated ones.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.techniques.base import Interval, Options, Technique
from flywheel.models.architectures import check_space, sample_architecture, mutate_architecture, architecture_cost, describe, build_network

STRATEGIES = ("random", "evolution")


def train_network(
    net: Any,
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    deadline: float | None = None,
    patience: int = 0,
    validate: bool = True,
) -> dict[str, list[float]]:
    """Compiles (Adam, sparse cross-entropy) and fits ``net``; returns the Keras history.

    Trains through the models layer's fit loop (``flywheel.models.fit.fit``) with Keras's own
    shuffling of the arrays (``Schedule(shuffle="keras")``), after seeding with ``seed``.
    ``deadline`` (a ``time.perf_counter()`` value) stops training after the
    batch during which it passes, so a time budget holds within one batch.
    ``patience`` > 0 stops early on validation loss and keeps the best epoch's
    weights (Keras ``EarlyStopping``). ``validate=False`` skips the per-epoch
    validation pass (and its graph tracing) when only the final model is scored;
    it cannot be combined with ``patience``.
    """
    from flywheel.models import fit as fit_loop

    validation = (np.asarray(x_val, dtype="float32"), np.asarray(y_val)) if validate or patience > 0 else None
    options = fit_loop.FitOptions(
        schedule=fit_loop.Schedule(
            epochs=epochs, batch_size=batch_size, early_stopping_patience=patience, seed=seed, shuffle="keras",
            deadline=deadline,
        ),
        optimizer=fit_loop.Optimizer(learning_rate),
    )
    fitted = fit_loop.fit(lambda: net, (np.asarray(x_train, dtype="float32"), np.asarray(y_train)), validation, options)
    return fitted.history


def predict_proba(net: Any, x: Any, *, batch: int = 1024) -> np.ndarray:
    """Class probabilities by direct (eager) calls in batches; no ``predict`` graph to trace for a one-off score."""
    x = np.asarray(x, dtype="float32")
    return np.concatenate([np.asarray(net(x[i:i + batch], training=False)) for i in range(0, len(x), batch)])


def accuracy_of(net: Any, x: Any, y: Any) -> float:
    """Share of ``x`` whose argmax prediction equals ``y``."""
    return float((predict_proba(net, x).argmax(axis=1) == np.asarray(y)).mean())


def log_loss_of(net: Any, x: Any, y: Any) -> float:
    """Mean cross-entropy of the predicted probabilities of the true classes."""
    proba = predict_proba(net, x)
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(proba)), np.asarray(y)], 1e-7, 1.0))))


def measure_latency_ms(net: Any, x: Any, *, batch: int = 32, repeats: int = 5) -> float:
    """Median milliseconds per image of a direct (eager) call on a batch of ``batch`` images."""
    sample = np.asarray(x[:batch], dtype="float32")
    net(sample, training=False)  # warm-up: first call builds the graph
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        net(sample, training=False)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000.0 / len(sample))


def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order.

    Args:
        points: One tuple of objective values per candidate.
        senses: ``"max"`` or ``"min"`` per objective.

    A point is dominated when another is at least as good in every objective
    and strictly better in one; equal points do not dominate each other, so
    duplicates on the front are all kept.

    Raises:
        FlywheelError: a point has another length than ``senses``, or a sense is unknown.
    """
    if any(s not in ("max", "min") for s in senses):
        raise FlywheelError(f"pareto_front senses must be 'max' or 'min' per objective; got {list(senses)}.")
    signs = np.array([1.0 if s == "max" else -1.0 for s in senses])
    values = [tuple(p) for p in points]
    if any(len(p) != len(senses) for p in values):
        raise FlywheelError(f"pareto_front needs {len(senses)} objective values per point; got lengths {sorted({len(p) for p in values})}.")
    if not values:
        return []
    array = np.asarray(values, dtype="float64") * signs
    front = []
    for i, point in enumerate(array):
        dominated = np.any(np.all(array >= point, axis=1) & np.any(array > point, axis=1))
        if not dominated:
            front.append(i)
    return front


class ArchitectureSearch(Technique):
    """Random search or aging evolution over a declared space of small CNNs and MLPs.

    Each trial builds a candidate, trains it ``epochs`` epochs on the train
    part, scores its validation accuracy and measures its latency. The score is
    ``val_accuracy - param_penalty * log10(params)``; with ``max_params`` set,
    candidates above it are rejected analytically before training and redrawn.
    The search stops after ``n_trials`` trials or when ``time_budget_s``
    seconds have passed (a running trial stops after its current batch).

    Aging evolution (Real et al. 2019): the first ``population_size`` trials
    are random; then each trial samples ``sample_size`` members of the
    population, mutates the best-scoring one, trains the child, adds it and
    removes the oldest member.

    Learned attributes: ``trials_`` (one dict per trial: ``architecture``,
    ``name``, ``params``, ``flops``, ``latency_ms``, ``val_accuracy``,
    ``score``, ``epochs_run``, ``seconds``, ``origin``), ``best_index_``,
    ``best_architecture_``, ``best_score_``, ``pareto_params_`` (indices of
    the front of accuracy vs parameters), ``pareto_latency_`` (accuracy vs
    latency), ``rejected_`` (infeasible samples redrawn), ``elapsed_s_``,
    ``stopped_by_`` (``"trials"`` or ``"time"``).
    """

    _parameter_constraints = {
        "search_space": [dict],
        "strategy": [Options(STRATEGIES)],
        "n_trials": [Interval(int, 1, None)],
        "time_budget_s": [Interval(float, 0, None, closed="neither")],
        "population_size": [Interval(int, 2, None)],
        "sample_size": [Interval(int, 1, None)],
        "param_penalty": [Interval(float, 0, None)],
        "max_params": [Interval(int, 1, None), None],
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        search_space: dict | None = None,
        strategy: str = "evolution",
        n_trials: int = 20,
        time_budget_s: float = 600.0,
        population_size: int = 8,
        sample_size: int = 3,
        param_penalty: float = 0.01,
        max_params: int | None = None,
        epochs: int = 5,
        batch_size: int = 32,
        learning_rate: float = 0.003,
        random_state: int | None = 0,
    ) -> None:
        self.search_space = search_space
        self.strategy = strategy
        self.n_trials = n_trials
        self.time_budget_s = time_budget_s
        self.population_size = population_size
        self.sample_size = sample_size
        self.param_penalty = param_penalty
        self.max_params = max_params
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def score(self, val_accuracy: float, params: int) -> float:
        """The objective: ``val_accuracy - param_penalty * log10(params)``."""
        return float(val_accuracy - self.param_penalty * math.log10(max(params, 1)))

    def fit(
        self, x_train: Any, y_train: Any, x_val: Any, y_val: Any, *, preprocess: Any = None,
        progress: Callable[[str], None] | None = None,
    ) -> ArchitectureSearch:
        """Runs the search on images ``(N, H, W, C)`` with integer class labels.

        Args:
            x_train, y_train: Images and labels the candidates train on.
            x_val, y_val: Held-out images and labels that score them.
            preprocess: Optional frozen Keras model applied first in every candidate.
            progress: Called with one line per evaluated candidate.

        Raises:
            ParameterError: a parameter breaks its rule (also the search space).
            FlywheelError: the images are not 4-D, labels do not match, or no
                candidate of the space satisfies ``max_params``.
        """
        from flywheel.techniques._checks import check_features_labels

        self._validate_params()
        space = check_space(self.search_space if self.search_space is not None else {})
        x_train, y_train = check_features_labels("ArchitectureSearch", x_train, y_train, min_dims=4)
        x_val, y_val = check_features_labels("ArchitectureSearch", x_val, y_val, min_dims=4, min_classes=1)
        if x_val.shape[1:] != x_train.shape[1:]:
            raise FlywheelError(f"ArchitectureSearch needs train and validation images of one shape; got {x_train.shape[1:]} and {x_val.shape[1:]}.")
        n_classes = int(max(y_train.max(), y_val.max())) + 1
        shape = tuple(int(v) for v in x_train.shape[1:])
        rng = np.random.default_rng(self.random_state)
        seed = 0 if self.random_state is None else int(self.random_state)
        started = time.perf_counter()
        deadline = started + float(self.time_budget_s)
        self.trials_: list[dict[str, Any]] = []
        self.rejected_ = 0
        population: list[int] = []
        self.stopped_by_ = "trials"
        while len(self.trials_) < self.n_trials:
            if time.perf_counter() >= deadline:
                self.stopped_by_ = "time"
                break
            arch, origin = self._propose(space, rng, population, shape, n_classes)
            trial = self._evaluate(arch, shape, n_classes, x_train, y_train, x_val, y_val, preprocess, seed + len(self.trials_), deadline)
            trial["origin"] = origin
            self.trials_.append(trial)
            if progress is not None:
                best = max(self.trials_, key=lambda t: t["score"])
                progress(
                    f"trial {len(self.trials_)}/{self.n_trials} ({origin}): {trial['name']}, "
                    f"val_accuracy {trial['val_accuracy']:.4f}, {trial['params']:,} params, score {trial['score']:.4f}; "
                    f"best {best['score']:.4f} ({best['name']}); {trial['seconds']:.1f} s"
                )
            population.append(len(self.trials_) - 1)
            if self.strategy == "evolution" and len(population) > self.population_size:
                population.pop(0)  # aging: the oldest member dies, whatever its score
        self.elapsed_s_ = time.perf_counter() - started
        scores = [t["score"] for t in self.trials_]
        self.best_index_ = int(np.argmax(scores))
        self.best_architecture_ = copy.deepcopy(self.trials_[self.best_index_]["architecture"])
        self.best_score_ = float(scores[self.best_index_])
        self.pareto_params_ = pareto_front([(t["val_accuracy"], t["params"]) for t in self.trials_], ("max", "min"))
        self.pareto_latency_ = pareto_front([(t["val_accuracy"], t["latency_ms"]) for t in self.trials_], ("max", "min"))
        return self

    def _propose(
        self, space: dict[str, list[Any]], rng: np.random.Generator, population: list[int], shape: tuple, n_classes: int
    ) -> tuple[dict[str, Any], str]:
        for _ in range(200):
            if self.strategy == "evolution" and len(population) >= self.population_size:
                picks = rng.choice(len(population), size=min(self.sample_size, len(population)), replace=False)
                parent = max((population[int(i)] for i in picks), key=lambda i: self.trials_[i]["score"])
                arch, origin = mutate_architecture(self.trials_[parent]["architecture"], space, rng), f"mutation of {parent}"
            else:
                arch, origin = sample_architecture(space, rng), "random"
            if self.max_params is None or architecture_cost(arch, shape, n_classes)[0] <= self.max_params:
                return arch, origin
            self.rejected_ += 1
        raise FlywheelError(
            f"ArchitectureSearch drew 200 candidates in a row above max_params={self.max_params}; "
            "raise max_params or give the search space smaller choices."
        )

    def _evaluate(
        self, arch: dict[str, Any], shape: tuple, n_classes: int, x_train: Any, y_train: Any, x_val: Any, y_val: Any,
        preprocess: Any, seed: int, deadline: float,
    ) -> dict[str, Any]:
        import keras

        began = time.perf_counter()
        keras.utils.set_random_seed(seed)
        net = build_network(arch, shape, n_classes, preprocess=preprocess)
        history = train_network(
            net, x_train, y_train, x_val, y_val, epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, seed=seed, deadline=deadline, validate=False,
        )
        val_accuracy = accuracy_of(net, x_val, y_val)
        params, flops = architecture_cost(arch, shape, n_classes)
        trial = {
            "architecture": arch, "name": describe(arch), "params": params, "flops": flops,
            "latency_ms": measure_latency_ms(net, x_val), "val_accuracy": val_accuracy,
            "score": self.score(val_accuracy, params), "epochs_run": len(history["loss"]),
            "seconds": round(time.perf_counter() - began, 3),
        }
        keras.backend.clear_session()  # candidates are independent; free their graphs
        return trial

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        X = rng.random((40, 6, 6, 1)).astype("float32")
        y = np.tile([0, 1], 20)
        X[y == 1, :3] += 1.0
        tiny = {"widths": [2, 4], "mlp_units": [4, 8], "dense_units": [0], "stages": [1], "layers_per_stage": [1], "mlp_layers": [1]}

        def call(search: ArchitectureSearch) -> list[np.ndarray]:
            search.fit(X[:30], y[:30], X[30:], y[30:])
            return [np.array([t["params"] for t in search.trials_]), np.array([t["flops"] for t in search.trials_])]

        def bad_input(search: ArchitectureSearch) -> None:
            search.fit(X[..., 0], y, X[..., 0], y)

        return {
            "params": {"search_space": tiny, "strategy": "random", "n_trials": 2, "epochs": 1, "random_state": 0},
            "bad_params": [{"n_trials": 0}, {"strategy": "grid"}, {"param_penalty": -1.0}, {"max_params": 0}],
            "call": call,
            "bad_input": bad_input,
        }

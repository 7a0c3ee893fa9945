"""The search loop of ``tune``: any objective, four strategies, a trial and a time budget.

``search`` runs trials one after another and returns one record per trial.
Random and grid search draw their configurations up front
(``tune_space.random_configs`` / ``grid_configs``, the very lists the Kubeflow
``ParallelFor`` fans out); Bayesian optimisation (a Gaussian-process surrogate
with an upper-confidence-bound acquisition, Snoek et al. 2012) and Hyperband
(Li et al. 2017) ask KerasTuner's oracles for each next trial, because each
suggestion depends on the results so far. The objective is any function
``(values, epochs) -> metrics``, not only a Keras model: the oracle is driven
through ``create_trial`` / ``update_trial`` / ``end_trial``.

Hyperband's later rounds train the promoted configurations from scratch for
their larger epoch budget (the objective does not resume earlier weights).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from typing import Any, Callable, Mapping

from flywheel.components.tune import space as tune_space
from flywheel.errors import ParameterError

STRATEGIES = ("random", "grid", "bayesian", "hyperband")
Objective = Callable[[dict[str, Any], int], Mapping[str, float]]


def direction(objective: str) -> str:
    """``"min"`` for losses and errors, else ``"max"``."""
    return "min" if ("loss" in objective or "error" in objective) else "max"


def search(
    objective_fn: Objective,
    space: Mapping[str, Mapping[str, Any]],
    *,
    strategy: str,
    objective: str,
    max_trials: int,
    max_seconds: float,
    epochs: int,
    seed: int,
    directory: str,
    grid_points: int = 3,
    initial_points: int = 0,
    hyperband_factor: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs a search and returns every trial, in the order they ran.

    Args:
        objective_fn: ``(values, epochs) -> metrics``; ``metrics[objective]`` is the score.
        space: A checked search space (``tune_space.check_space``).
        strategy: One of ``STRATEGIES``.
        objective: The metric to optimise; its direction comes from its name.
        max_trials: Most trials to run.
        max_seconds: Time budget: no trial starts once it is spent (0: none).
        epochs: Epochs per trial; Hyperband's most epochs per trial.
        seed: Seeds the oracle (same seed, same objective -> same trials).
        directory: Where KerasTuner writes its project (an empty directory).
        grid_points: Grid search: values per float range without a step.
        initial_points: Bayesian: random trials before the GP is fitted (0: KerasTuner's 3 x dimensions).
        hyperband_factor: Hyperband's reduction factor eta.
        clock: Seconds, for the time budget (a parameter so tests can drive it).
        progress: Called with one line per finished trial (``tune`` prints them to its log).

    Returns:
        Records ``{"trial_id", "hyperparameters", "score", "status", "seconds",
        "epochs", "metrics"}`` (plus ``"bracket"``, ``"round"`` for Hyperband).
    """
    if strategy not in STRATEGIES:
        raise ParameterError(f"The 'strategy' parameter of tune must be one of {STRATEGIES}. Got {strategy!r} instead.")
    import keras_tuner  # noqa: F401 - imports TensorFlow: before the clock starts, not inside the budget

    started = clock()

    def out_of_time() -> bool:
        return max_seconds > 0 and clock() - started >= max_seconds

    trials: list[dict[str, Any]] = []

    def finished(record: dict[str, Any]) -> None:
        trials.append(record)
        if progress is not None:
            progress(progress_line(trials, max_trials, objective))

    if strategy in ("random", "grid"):
        configs = (
            tune_space.iter_random_configs(space, max_trials, seed)
            if strategy == "random"
            else tune_space.grid_configs(space, max_trials, grid_points)
        )
        for i, values in enumerate(configs):
            if out_of_time():
                break
            # The oracle's id format: zero-padded to the width of max_trials.
            finished(run_trial(objective_fn, values, epochs, objective, trial_id=f"{i:0{len(str(max_trials))}d}"))
        return trials
    oracle = _oracle(space, strategy, objective, max_trials, epochs, seed, initial_points, hyperband_factor)
    oracle._set_project_dir(directory, "tune")  # noqa: SLF001 - what BaseTuner.__init__ does
    while len(trials) < max_trials and not out_of_time():
        with warnings.catch_warnings():
            # The GP's length scales hitting their bounds on a few points is expected, not actionable.
            warnings.simplefilter("ignore", category=UserWarning)
            trial = oracle.create_trial("tune")
        if trial.status != "RUNNING":  # STOPPED: the space or Hyperband's brackets are exhausted
            break
        kt_values = trial.hyperparameters.values
        trial_epochs = int(kt_values.get("tuner/epochs", epochs))
        record = run_trial(objective_fn, tune_space.decode(space, kt_values), trial_epochs, objective,
                           trial_id=trial.trial_id)
        if strategy == "hyperband":
            record["bracket"], record["round"] = int(kt_values["tuner/bracket"]), int(kt_values["tuner/round"])
        finished(record)
        if record["status"] == "COMPLETED":
            oracle.update_trial(trial.trial_id, {objective: record["score"]}, step=trial_epochs)
        trial.status = "COMPLETED" if record["status"] == "COMPLETED" else "FAILED"
        trial.message = None if record["status"] == "COMPLETED" else "the objective was not a finite number"
        oracle.end_trial(trial)
    return trials


def run_trial(objective_fn: Objective, values: dict[str, Any], epochs: int, objective: str, *, trial_id: str) -> dict[str, Any]:
    """Runs one trial and times it; a non-finite score marks it ``INVALID``."""
    started = time.perf_counter()
    metrics = {k: float(v) for k, v in objective_fn(dict(values), epochs).items()}
    if objective not in metrics:
        raise ParameterError(
            f"The 'objective' parameter of tune must be a metric the trial reports {sorted(metrics)}. "
            f"Got {objective!r} instead."
        )
    score = metrics[objective]
    return {
        "trial_id": trial_id,
        "hyperparameters": values,
        "score": score if math.isfinite(score) else None,
        "status": "COMPLETED" if math.isfinite(score) else "INVALID",
        "seconds": round(time.perf_counter() - started, 3),
        "epochs": epochs,
        "metrics": metrics,
    }


def progress_line(trials: list[dict[str, Any]], max_trials: int, objective: str) -> str:
    """``trial 3/12 (id 02): val_loss 0.2101, best 0.1803 (id 01); 5 epochs, 4.2 s; {values}``."""
    last, best = trials[-1], best_trial(trials, objective)
    score = "not a finite number" if last["score"] is None else f"{last['score']:.4f}"
    best_text = "none yet" if best is None else f"{best['score']:.4f} (id {best['trial_id']})"
    return (
        f"trial {len(trials)}/{max_trials} (id {last['trial_id']}): {objective} {score}, best {best_text}; "
        f"{last['epochs']} epochs, {last['seconds']:.1f} s; {json.dumps(last['hyperparameters'], sort_keys=True)}"
    )


def best_trial(trials: list[dict[str, Any]], objective: str) -> dict[str, Any] | None:
    """The completed trial with the best score (the earliest one on ties), or None."""
    done = [t for t in trials if t["status"] == "COMPLETED"]
    if not done:
        return None
    sign = 1 if direction(objective) == "max" else -1
    return max(done, key=lambda t: (sign * t["score"], -trials.index(t)))


def best_so_far(trials: list[dict[str, Any]], objective: str) -> list[float | None]:
    """The best score after each trial (None until a trial completes)."""
    best, curve = None, []
    better = max if direction(objective) == "max" else min
    for t in trials:
        if t["status"] == "COMPLETED":
            best = t["score"] if best is None else better(best, t["score"])
        curve.append(best)
    return curve


def _oracle(
    space: Mapping[str, Mapping[str, Any]], strategy: str, objective: str, max_trials: int, epochs: int,
    seed: int, initial_points: int, hyperband_factor: int,
) -> Any:
    import keras_tuner as kt

    common = {
        "objective": kt.Objective(objective, direction(objective)),
        "hyperparameters": tune_space.keras_tuner_space(space),
        "seed": tune_space.oracle_seed(seed),
        "tune_new_entries": False,
        "allow_new_entries": False,
        "max_consecutive_failed_trials": max_trials + 1,  # failed trials are recorded, not fatal
    }
    if strategy == "bayesian":
        oracle = kt.oracles.BayesianOptimizationOracle(
            max_trials=max_trials, num_initial_points=initial_points or None, **common
        )
    else:
        if hyperband_factor < 2:
            raise ParameterError(
                f"The 'hyperband_factor' parameter of tune must be an int >= 2. Got {hyperband_factor!r} instead."
            )
        oracle = kt.oracles.HyperbandOracle(max_epochs=epochs, factor=hyperband_factor, **common)
        oracle.max_trials = max_trials  # create_trial stops at this many trials
    oracle.verbose = 0
    return oracle

"""tune: search train's hyperparameters; the best values flow into ``train``.

Strategies: random search, grid search (for comparison), Bayesian
optimisation with a Gaussian-process surrogate, and Hyperband, all from
KerasTuner's oracles driven directly (``tune/search.py``), so a trial can be any
objective. KerasTuner rather than Optuna: it has all four strategies in one
library that depends only on Keras (already in the stack), and its Bayesian
oracle is a real GP (scikit-learn's ``GaussianProcessRegressor``, Matérn 5/2);
Optuna's GP sampler needs torch and its default TPE is not a GP.

A trial trains the network ``train`` would build with the trial's values
(``tune/objective.py``) and is scored on the validation split, never on eval.
Written to ``hyperparameters.uri``:

* ``best_hyperparameters.json``: train parameter name -> value of the best
  trial; wire the artifact into ``train(hyperparameters=...)``;
* ``trials.json``: every trial (hyperparameters, score, status, seconds, epochs);
* ``trials.png``: score per trial and best so far; ``index.html``: the report
  (the dashboard's artifact page shows both).

On Kubeflow, random and grid search compile to suggest -> ``ParallelFor``
(trial) -> select (``flywheel.kubeflow.compiler``, ``tune_trial`` and
``tune_select`` below); Bayesian and Hyperband stay one task, because each
suggestion depends on the earlier results.
"""

from __future__ import annotations

import json
import tempfile
import time
from typing import Annotated, Any

from flywheel.dsl.artifacts import Examples, HyperParameters, TransformGraph
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval, Options
from flywheel.errors import ParameterError

from flywheel.components import hyperparameters_io
from flywheel.components.tune import objective as train_objective
from flywheel.components.tune import report as tune_report
from flywheel.components.tune import search as tune_search
from flywheel.components.tune import space as tune_space

OBJECTIVES = ("val_accuracy", "val_loss")


# On Kubeflow, random and grid search compile to a ParallelFor of trials (tune/fanout.py: expansion).
@component(kfp_expansion="flywheel.components.tune.fanout:expansion")
def tune(
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    hyperparameters: Output[HyperParameters],
    search_space: dict,
    strategy: Annotated[str, Options(tune_search.STRATEGIES)] = "random",
    max_trials: Annotated[int, Interval(int, 1, None)] = 10,
    max_seconds: Annotated[float, Interval(float, 0, None)] = 0.0,
    epochs: Annotated[int, Interval(int, 1, None)] = 20,
    objective: Annotated[str, Options(OBJECTIVES)] = "val_accuracy",
    seed: int = 0,
    fixed: dict = {},  # noqa: B006 - component defaults are recorded, never mutated
    grid_points: Annotated[int, Interval(int, 1, None)] = 3,
    initial_points: Annotated[int, Interval(int, 0, None)] = 0,
    hyperband_factor: int = 3,
    validation_fraction: Annotated[float, Interval(float, 0, 1, closed="neither")] = 0.2,
    parallelism: Annotated[int, Interval(int, 0, None)] = 0,
) -> None:
    """Searches train's hyperparameters and records every trial.

    Args:
        examples: Examples with a ``train`` split (and optionally ``validation``).
        transform_graph: Output of ``transform``.
        hyperparameters: Receives the files listed in the module docstring.
        search_space: Name -> range or choice (``tune/space.py``); names are
            train parameters from ``train_objective.TUNABLE``.
        strategy: ``"random"``, ``"grid"``, ``"bayesian"`` or ``"hyperband"``.
        max_trials: Most trials to run.
        max_seconds: Time budget in seconds: no trial starts once it is spent
            (the running one finishes); 0 means no time budget.
        epochs: Epochs per trial (with train's early stopping); Hyperband's
            largest epoch budget per trial.
        objective: ``"val_accuracy"`` (maximised) or ``"val_loss"`` (minimised).
        seed: Seeds the search and every trial (same seed, same trials).
        fixed: Train parameters every trial uses, e.g. ``{"early_stopping_patience": 3}``;
            they are written into ``best_hyperparameters.json`` too, so train uses them.
        grid_points: Grid search: values per float range without a ``step``.
        initial_points: Bayesian: random trials before the GP is fitted
            (0: KerasTuner's default, 3 x the number of hyperparameters).
        hyperband_factor: Hyperband's reduction factor (>= 2).
        validation_fraction: Hold-out share of train when there is no ``validation`` split.
        parallelism: Kubeflow only: most trials running at once in the
            ``ParallelFor`` of a random or grid search (0: no limit); locally
            trials run one after another.

    Raises:
        ParameterError: a bad search space, strategy, budget or objective.
    """
    space = _check_search(search_space, fixed)
    started = time.perf_counter()
    trial_objective = train_objective.TrainObjective(
        examples, transform_graph, fixed=fixed, seed=seed, validation_fraction=validation_fraction
    )
    trial_objective.parameters({}, epochs)  # fixed values break train's rules -> fail before any trial
    with tempfile.TemporaryDirectory(prefix="flywheel-tune-") as project:
        trials = tune_search.search(
            trial_objective, space, strategy=strategy, objective=objective, max_trials=max_trials,
            max_seconds=max_seconds, epochs=epochs, seed=seed, directory=project, grid_points=grid_points,
            initial_points=initial_points, hyperband_factor=hyperband_factor,
            progress=lambda line: print(line, flush=True),
        )
    record_results(hyperparameters, trials, strategy=strategy, objective=objective,
                   seconds=time.perf_counter() - started, fixed=fixed)


def record_results(
    hyperparameters: HyperParameters, trials: list[dict[str, Any]], *, strategy: str, objective: str,
    seconds: float, fixed: dict[str, Any],
) -> None:
    """Writes the artifact's files and properties from finished trials.

    Raises:
        ParameterError: no trial completed (nothing to recommend).
    """
    best = tune_search.best_trial(trials, objective)
    if best is None:
        raise ParameterError(
            f"tune must finish at least one trial with a finite {objective}. Got {len(trials)} trial(s) "
            f"({[t['status'] for t in trials]}) instead; raise max_trials or max_seconds, or check the search space."
        )
    values = {**fixed, **best["hyperparameters"]}
    summary = {
        "strategy": strategy,
        "objective": objective,
        "trials_run": len(trials),
        "best_score": best["score"],
        "best_trial_id": best["trial_id"],
        "seconds": round(seconds, 3),
        "best_hyperparameters": values,
    }
    with open(hyperparameters.path(hyperparameters_io.BEST_FILE), "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2, sort_keys=True)
    with open(hyperparameters.path(hyperparameters_io.TRIALS_FILE), "w", encoding="utf-8") as handle:
        json.dump({"objective": objective, "strategy": strategy, "trials": trials}, handle, indent=2)
    tune_report.write_report(hyperparameters.uri, trials, summary)
    hyperparameters.properties.update(summary)
    # Every trial in lineage: compact rows (id, score, status, seconds) in the MLMD properties.
    hyperparameters.properties["trials"] = [
        {k: t[k] for k in ("trial_id", "score", "status", "seconds", "epochs")} for t in trials
    ]


def _check_search(search_space: dict, fixed: dict) -> dict[str, dict[str, Any]]:
    """The parsed search space; ``fixed`` may name only tunable train parameters. (The other
    parameters' rules are declared in the signature.)"""
    unknown = sorted(set(fixed) - set(train_objective.TUNABLE))
    if unknown:
        raise ParameterError(
            f"The 'fixed' parameter of tune must be a dict of train parameters from {list(train_objective.TUNABLE)} "
            f"(unknown {unknown}). Got {fixed!r} instead."
        )
    return tune_space.check_space(search_space, allowed=train_objective.TUNABLE)

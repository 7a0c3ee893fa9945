"""``tune`` on Kubeflow Pipelines: trials as parallel tasks (a ``ParallelFor``), then a fan-in.

For random and grid search the trial configurations do not depend on results,
so the compiler draws them when it compiles (``expansion``: the very lists the
local search runs, same seed, same trials) and emits::

    ParallelFor(configs, parallelism) -> tune_trial   # one task per trial
    tune_select(trials=dsl.Collected(tune_trial.result))

Bayesian optimisation and Hyperband stay one ``tune`` task: each suggestion
depends on the results before it. Katib is not used: it is a cluster add-on
with its own CRDs and no local equivalent, while ``ParallelFor`` is plain KFP.

``tune_select`` receives the collected trial artifacts: the executor folds a
fan-in into one input artifact whose property ``collected`` lists every
trial's location and metadata (``flywheel.kubeflow.entrypoint.COLLECTED_PROPERTY``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

from flywheel.dsl.artifacts import Examples, HyperParameters, TransformGraph
from flywheel.dsl.component import Input, Output, component

from flywheel.components.tune import objective as train_objective
from flywheel.components.tune import search as tune_search
from flywheel.components.tune import space as tune_space

TRIAL_FILE = "trial.json"
# Parameters the configurations depend on: they must be constants for a compile-time fan-out.
_PLAN_PARAMETERS = ("search_space", "strategy", "max_trials", "seed", "grid_points")


@component
def tune_trial(
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    result: Output[HyperParameters],
    config: dict,
    epochs: int = 20,
    objective: str = "val_accuracy",
    seed: int = 0,
    fixed: dict = {},  # noqa: B006 - component defaults are recorded, never mutated
    validation_fraction: float = 0.2,
) -> None:
    """Runs one trial of ``tune`` (``config`` = ``{"trial_id", "hyperparameters"}``).

    Writes ``trial.json`` (the trial record ``tune`` keeps in ``trials.json``)
    and sets the same fields as properties.
    """
    objective_fn = train_objective.TrainObjective(
        examples, transform_graph, fixed=fixed, seed=seed, validation_fraction=validation_fraction
    )
    record = tune_search.run_trial(
        objective_fn, dict(config["hyperparameters"]), epochs, objective, trial_id=str(config["trial_id"])
    )
    with open(result.path(TRIAL_FILE), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    result.properties.update(record)


@component
def tune_select(
    trials: Input[HyperParameters],
    hyperparameters: Output[HyperParameters],
    strategy: str = "random",
    objective: str = "val_accuracy",
    fixed: dict = {},  # noqa: B006
) -> None:
    """Picks the best of the collected trials; writes what ``tune`` writes."""
    from flywheel.components.tune import record_results
    from flywheel.kubeflow.uris import local_path

    started = time.perf_counter()
    from flywheel.kubeflow.entrypoint import COLLECTED_PROPERTY

    entries = trials.properties.get(COLLECTED_PROPERTY) or [{"uri": trials.uri, "metadata": {}}]
    records = []
    for entry in entries:
        with open(os.path.join(local_path(entry["uri"]), TRIAL_FILE), encoding="utf-8") as handle:
            records.append(json.load(handle))
    records.sort(key=lambda r: r["trial_id"])
    seconds = sum(r["seconds"] for r in records) + time.perf_counter() - started
    record_results(hyperparameters, records, strategy=strategy, objective=objective, seconds=seconds, fixed=fixed)
    hyperparameters.properties["parallel_trials"] = True


def trial_configs(parameters: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The trials of a random or grid search as ``{"trial_id", "hyperparameters"}``; None if adaptive.

    Args:
        parameters: ``tune``'s parameter values (defaults filled in), all constants.
    """
    if parameters["strategy"] not in ("random", "grid"):
        return None
    space = tune_space.check_space(parameters["search_space"], allowed=train_objective.TUNABLE)
    count = int(parameters["max_trials"])
    if parameters["strategy"] == "random":
        values = tune_space.random_configs(space, count, int(parameters["seed"]))
    else:
        values = tune_space.grid_configs(space, count, int(parameters["grid_points"]))
    width = len(str(count))
    return [{"trial_id": f"{i:0{width}d}", "hyperparameters": v} for i, v in enumerate(values)]


def expansion(task: Any) -> Any:
    """``tune``'s KFP expansion (see the module docstring), or None to compile it as one task.

    None when the strategy is adaptive (Bayesian, Hyperband) or a parameter
    the configurations depend on is a pipeline parameter (only known at run time).
    """
    from flywheel.dsl.pipeline import PipelineParam
    from flywheel.kubeflow.compiler import ParallelExpansion

    values = {name: spec.default for name, spec in task.component.parameters.items() if not spec.required}
    values.update(task.parameters)
    if any(isinstance(values.get(name), PipelineParam) for name in _PLAN_PARAMETERS):
        return None
    configs = trial_configs(values)
    if configs is None:
        return None
    shared = {name: task.parameters[name] for name in ("epochs", "objective", "seed", "fixed", "validation_fraction")
              if name in task.parameters}
    select = {name: task.parameters[name] for name in ("strategy", "objective", "fixed") if name in task.parameters}
    return ParallelExpansion(
        items=configs, item_parameter="config", trial=tune_trial, trial_parameters=shared, trial_output="result",
        select=tune_select, select_input="trials", select_parameters=select,
        outputs={"hyperparameters": "hyperparameters"}, parallelism=int(values.get("parallelism") or 0),
    )

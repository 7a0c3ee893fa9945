"""The search space of ``tune``: validation, KerasTuner hyperparameters, up-front configs.

A search space is a dict declared in the pipeline file, one entry per
hyperparameter::

    {"learning_rate": {"type": "float", "min": 1e-4, "max": 1e-1, "log": True},
     "hidden_units": {"type": "choice", "values": [[16], [32, 16], [64, 32]]},
     "dropout": {"type": "float", "min": 0, "max": 0.5},
     "batch_size": {"type": "int", "min": 16, "max": 128, "step": 16}}

Types: ``float`` (``min``, ``max``, optional ``log``, ``step``), ``int``
(``min``, ``max``, optional ``log``, ``step``) and ``choice`` (``values``: any
JSON values, lists included). Choices travel through KerasTuner as JSON strings
(its ``Choice`` takes only scalars of one type) and are decoded back.

keras_tuner is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any, Iterable, Iterator, Mapping

from flywheel.errors import ParameterError

TYPES = ("float", "int", "choice")
_KEYS = {
    "float": ({"type", "min", "max"}, {"log", "step"}),
    "int": ({"type", "min", "max"}, {"log", "step"}),
    "choice": ({"type", "values"}, set()),
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_space(space: Any, *, allowed: Iterable[str] | None = None, owner: str = "tune") -> dict[str, dict[str, Any]]:
    """Validates a search space; returns it unchanged.

    Args:
        space: The search-space dict (see the module docstring).
        allowed: Hyperparameter names that may be tuned; None allows any name.
        owner: The component named in error messages.

    Raises:
        ParameterError: the space is empty, names an untunable parameter, or an
            entry has an unknown type, a missing or unknown key, or bad bounds;
            the message names the hyperparameter and the fix.
    """

    def fail(name: str, rule: str, got: Any) -> None:
        raise ParameterError(
            f"The 'search_space' parameter of {owner}: hyperparameter {name!r} must be {rule}. Got {got!r} instead."
        )

    if not isinstance(space, Mapping) or not space:
        raise ParameterError(
            f"The 'search_space' parameter of {owner} must be a non-empty dict of name -> "
            f'{{"type": "float"|"int"|"choice", ...}}. Got {space!r} instead.'
        )
    valid = None if allowed is None else sorted(allowed)
    for name, entry in space.items():
        if valid is not None and name not in valid:
            raise ParameterError(
                f"The 'search_space' parameter of {owner} may only tune {valid}. Got {name!r} instead; "
                "remove it or rename it to one of those."
            )
        if not isinstance(entry, Mapping) or entry.get("type") not in TYPES:
            fail(name, f'a dict with "type" one of {TYPES}', entry)
        kind = entry["type"]
        required, optional = _KEYS[kind]
        missing = sorted(required - set(entry))
        if missing:
            fail(name, f"a {kind} entry with keys {sorted(required)} (missing {missing})", dict(entry))
        unknown = sorted(set(entry) - required - optional)
        if unknown:
            fail(name, f"a {kind} entry with only keys {sorted(required | optional)} (unknown {unknown})", dict(entry))
        if kind == "choice":
            values = entry["values"]
            if not isinstance(values, list) or not values:
                fail(name, 'a choice whose "values" is a non-empty list', values)
            encoded = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(encoded)) != len(encoded):
                fail(name, 'a choice whose "values" are distinct', values)
            continue
        low, high = entry["min"], entry["max"]
        if kind == "int" and not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            fail(name, 'an int range whose "min" and "max" are ints', [low, high])
        if not (_number(low) and _number(high) and low < high):
            fail(name, 'a range with numbers "min" < "max"', [low, high])
        if entry.get("log", False) not in (True, False):
            fail(name, 'a range whose "log" is true or false', entry.get("log"))
        if entry.get("log") and low <= 0:
            fail(name, 'a log-scale range with "min" > 0', low)
        if "step" in entry:
            step = entry["step"]
            if not _number(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
                fail(name, f'a range whose "step" is a positive {"int" if kind == "int" else "number"}', step)
            if entry.get("log") and step <= 1:
                fail(name, 'a log-scale range whose "step" (a factor) is > 1', step)
    return dict(space)


def grid_values(entry: Mapping[str, Any], points: int) -> list[Any]:
    """The values a grid search tries for one hyperparameter.

    A choice gives its values; a range with a ``step`` gives every step; a
    float range without one gives ``points`` values, evenly spaced (on a log
    scale when ``log``); an int range without one gives at most ``points``.
    """
    if entry["type"] == "choice":
        return list(entry["values"])
    low, high, log = entry["min"], entry["max"], bool(entry.get("log", False))
    if "step" in entry:
        values, value = [], low
        while value <= high * (1 + 1e-12):
            values.append(value)
            value = value * entry["step"] if log else value + entry["step"]
    elif points == 1:
        values = [low]
    elif log:
        values = [low * (high / low) ** (i / (points - 1)) for i in range(points)]
    else:
        values = [low + (high - low) * i / (points - 1) for i in range(points)]
    if entry["type"] == "int":
        return sorted({int(round(v)) for v in values})
    return [float(v) for v in values]


def keras_tuner_space(space: Mapping[str, Mapping[str, Any]]) -> Any:
    """A ``keras_tuner.HyperParameters`` with one entry per hyperparameter, in order."""
    import keras_tuner as kt

    hps = kt.HyperParameters()
    for name, entry in space.items():
        sampling = "log" if entry.get("log") else "linear"
        if entry["type"] == "choice":
            hps.Choice(name, [json.dumps(v, sort_keys=True) for v in entry["values"]], ordered=False)
        elif entry["type"] == "int":
            hps.Int(name, entry["min"], entry["max"], step=entry.get("step"), sampling=sampling)
        else:
            hps.Float(name, float(entry["min"]), float(entry["max"]), step=entry.get("step"), sampling=sampling)
    return hps


def decode(space: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    """KerasTuner trial values -> plain values (choices decoded; ``tuner/*`` keys dropped)."""
    plain: dict[str, Any] = {}
    for name, entry in space.items():
        value = values[name]
        if entry["type"] == "choice":
            value = json.loads(value)
        elif entry["type"] == "int":
            value = int(value)
        else:
            value = float(value)
        plain[name] = value
    return plain


def random_configs(space: Mapping[str, Mapping[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` distinct random configurations, drawn by KerasTuner's random-search oracle.

    The same (space, count, seed) always gives the same list; fewer come back
    when the space has fewer distinct points.
    """
    return list(iter_random_configs(space, count, seed))


def iter_random_configs(space: Mapping[str, Mapping[str, Any]], count: int, seed: int) -> Iterator[dict[str, Any]]:
    """``random_configs``, one at a time (so a time budget also bounds drawing them)."""
    import tempfile

    import keras_tuner as kt

    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"), max_trials=count, seed=oracle_seed(seed),
        hyperparameters=keras_tuner_space(space),
    )
    oracle.verbose = 0
    with tempfile.TemporaryDirectory(prefix="flywheel-tune-") as directory:
        oracle._set_project_dir(directory, "suggest")  # noqa: SLF001 - what BaseTuner does; the oracle saves there
        for i in range(count):
            # A new tuner id per call: the oracle hands out a new trial without waiting for results.
            trial = oracle.create_trial(f"suggest-{i}")
            if trial.status != "RUNNING":
                return
            yield decode(space, trial.hyperparameters.values)


def grid_configs(space: Mapping[str, Mapping[str, Any]], count: int, points: int) -> list[dict[str, Any]]:
    """The first ``count`` points of the grid, in KerasTuner's grid order (the last name varies fastest)."""
    axes = [grid_values(entry, points) for entry in space.values()]
    return [dict(zip(space, combo)) for combo in itertools.islice(itertools.product(*axes), count)]


def oracle_seed(seed: int) -> int:
    """KerasTuner reads seed 0 as "no seed" (``seed or random.randint``): shift every seed by one."""
    return int(seed) + 1

"""The HyperParameters artifact's file format: what ``tune`` writes and ``train`` reads.

It lives beside ``examples_io`` rather than in ``tune/`` so that ``train``'s code fingerprint does
not cover tune's search code: importing ``flywheel.components.tune.space`` would run
``tune/__init__`` too, and every edit to the search would invalidate every trained model.

Files of a HyperParameters artifact::

    best_hyperparameters.json   train parameter name -> tuned value (read by train)
    trials.json                 every trial: values, objective, epochs, state
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from flywheel.errors import ParameterError

BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.json"


def read_best(path: str) -> dict[str, Any]:
    """Reads ``best_hyperparameters.json`` (train parameter name -> value)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def overrides(hyperparameters: Any, valid: Iterable[str], *, owner: str = "train") -> dict[str, Any]:
    """The tuned values of a HyperParameters artifact, checked against ``owner``'s parameters.

    Raises:
        ParameterError: the file is missing or names a parameter ``owner`` does not have.
    """
    path = hyperparameters.path(BEST_FILE)
    if not os.path.isfile(path):
        raise ParameterError(
            f"The 'hyperparameters' input of {owner} must hold {BEST_FILE} (written by tune). "
            f"Got an artifact at {hyperparameters.uri!r} without it instead."
        )
    values = read_best(path)
    names = sorted(valid)
    unknown = sorted(set(values) - set(names)) if isinstance(values, dict) else [values]
    if unknown:
        raise ParameterError(
            f"The 'hyperparameters' input of {owner} may only set its parameters {names}. Got unknown "
            f"name(s) {unknown} in {path} instead; tune only parameters {owner} has."
        )
    return values

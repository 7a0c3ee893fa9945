"""Parameter values as text: what ``--param NAME=VALUE`` means for a parameter's type, and back.

``coerce_parameter`` reads a ``-p`` string (or a value) as the declared type (JSON for dict and
list, true/false for bool); ``param_argument`` writes a value so that it reads back the same
(the scheduler and the monitor's retrain pass parameters to ``flywheel run`` this way).
"""

from __future__ import annotations

import json
from typing import Any

from flywheel.dsl.component import ParameterSpec, value_matches_type
from flywheel.errors import ParameterError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def coerce_parameter(pipeline_name: str, spec: ParameterSpec, raw: Any) -> Any:
    """Converts a ``--param`` string (or a value) to the parameter's type."""
    if not isinstance(raw, str) or spec.type is str:
        if raw is None and not spec.required and spec.default is None:
            return None
        if value_matches_type(raw, spec.type):
            return float(raw) if spec.type is float else raw
        raise ParameterError(
            f"Parameter '{spec.name}' of pipeline '{pipeline_name}' is {_article(spec.type)}; "
            f"got {type(raw).__name__} {raw!r}."
        )
    text = raw.strip()
    try:
        if spec.type is int:
            return int(text)
        if spec.type is float:
            return float(text)
        if spec.type is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        value = json.loads(text)
        if not isinstance(value, spec.type):
            raise ValueError(text)
        return value
    except ValueError:
        hint = {
            int: "an integer such as 10",
            float: "a number such as 0.5",
            bool: "true or false",
            dict: 'a JSON object such as {"a": 1}',
            list: "a JSON list such as [1, 2]",
        }[spec.type]
        raise ParameterError(
            f"Parameter '{spec.name}' of pipeline '{pipeline_name}' is {_article(spec.type)}; "
            f"got {raw!r}. Pass {hint}."
        ) from None


def param_argument(name: str, value: Any) -> str:
    """The ``--param NAME=VALUE`` text that ``coerce_parameter`` reads back as ``value``.

    A string goes as it is, anything else as JSON: Python's ``str()`` of a
    list (``['island', 'sex']``) is not JSON and would not parse.
    """
    return f"{name}={value if isinstance(value, str) else json.dumps(value)}"


def _article(kind: type) -> str:
    name = kind.__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"

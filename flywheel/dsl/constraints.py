"""Parameter rules, declared once: ``Interval``, ``Options`` and predicate functions.

Techniques declare them in ``_parameter_constraints``; components declare them in their
signature, ``dropout: Annotated[float, Interval(float, 0, 1, closed="left")] = 0.1``, and the
DSL checks a component's parameter values against them when a pipeline is built (constants and
pipeline-parameter defaults), when a run's or a compile's parameter values are bound, and again
when the component runs (a value given at run time on Kubeflow). One message style everywhere::

    The 'dropout' parameter of train must be a float in [0, 1). Got 1.5 instead.

A predicate rule is a function ``value -> bool`` whose docstring says what it accepts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from flywheel.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class Interval:
    """A numeric range rule: ``Interval(float, 0, 1, closed="neither")`` is (0, 1)."""

    kind: type  # int or float
    low: float | None
    high: float | None
    closed: str = "both"  # "both" | "left" | "right" | "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'an int' if self.kind is int else 'a float'} in {left}{low}, {high}{right}"


@dataclasses.dataclass(frozen=True)
class Options:
    """A choice rule: ``Options({"entropy", "margin"})``."""

    values: frozenset[Any]

    def __init__(self, values: Any) -> None:
        object.__setattr__(self, "values", frozenset(values))

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in sorted(self.values, key=str))


def _describe(rule: Any) -> str:
    if rule is None:
        return "None"
    if isinstance(rule, type):
        return {bool: "a bool", int: "an int", float: "a float", str: "a str"}.get(rule, f"a {rule.__name__}")
    if rule == "random_state":
        return "an int >= 0 or None"
    if callable(rule) and not isinstance(rule, (Interval, Options)):
        return getattr(rule, "__doc__", None) or rule.__name__
    return str(rule)


def _accepts(rule: Any, value: Any) -> bool:
    if rule is None:
        return value is None
    if rule == "random_state":
        return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    if isinstance(rule, (Interval, Options)):
        return rule.accepts(value)
    if isinstance(rule, type):
        if rule is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if rule is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, rule)
    if callable(rule):
        return bool(rule(value))
    raise TypeError(f"unsupported parameter rule {rule!r}")


def validate_parameter(owner: str, name: str, value: Any, rules: list[Any]) -> None:
    """Raises ParameterError with the uniform message unless one rule accepts ``value``."""
    if any(_accepts(rule, value) for rule in rules):
        return
    wanted = " or ".join(_describe(r) for r in rules)
    raise ParameterError(f"The '{name}' parameter of {owner} must be {wanted}. Got {value!r} instead.")


def is_rule(value: Any) -> bool:
    """Whether ``value`` is a parameter rule that may appear in a component's ``Annotated`` metadata."""
    return isinstance(value, (Interval, Options)) or getattr(value, "__flywheel_rule__", False)


def rule(fn: Any) -> Any:
    """Marks a predicate ``value -> bool`` (its docstring says what it accepts) as a parameter rule."""
    fn.__flywheel_rule__ = True
    return fn


@rule
def positive_int_list(value: Any) -> bool:
    """a list of positive ints (e.g. [16, 8])"""
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)


@rule
def nonempty_positive_int_list(value: Any) -> bool:
    """a non-empty list of positive ints (e.g. [16, 32])"""
    return bool(value) and positive_int_list(value)

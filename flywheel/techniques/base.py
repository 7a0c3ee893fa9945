"""What every technique (sampler, augmenter, label model, query strategy, ...) shares.

Stateful techniques are estimators in scikit-learn's style: a keyword-only
``__init__`` that only stores its arguments, validation in ``fit`` (or the
first call), learned attributes ending in ``_``. Their parameter rules are
declared as data in ``_parameter_constraints`` and checked by
``_validate_params`` with one uniform message::

    The 'alpha' parameter of MixUp must be a float in (0, inf). Got -1 instead.

``catalog()`` finds every ``Technique`` subclass in ``flywheel.techniques`` by
importing its modules (no registration side effects), so one contract test
suite (tests/techniques/test_contract.py) runs over all of them. Each class
gives that suite a tiny problem through its ``_contract_case()`` classmethod.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import pkgutil
from typing import Any, ClassVar

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


class Technique:
    """Base of every technique estimator (see the module docstring).

    Every concrete subclass must define a classmethod ``_contract_case()``
    returning a dict with ``params`` (valid, seeded constructor arguments),
    ``bad_params`` (a list of {name: invalid value}), ``call`` (a function
    ``technique -> result`` that fits/applies it on tiny data and returns
    arrays to compare for determinism) and ``bad_input`` (a function
    ``technique -> None`` that must raise a FlywheelError on malformed data).
    The contract suite fails any technique that lacks it.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored."""
        signature = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name)
            for name, p in signature.parameters.items()
            if name != "self" and p.kind == p.KEYWORD_ONLY
        }

    def set_params(self, **params: Any) -> Technique:
        known = self.get_params()
        for name, value in params.items():
            if name not in known:
                raise ParameterError(
                    f"{type(self).__name__} has no parameter '{name}'; its parameters are: {', '.join(known)}."
                )
            setattr(self, name, value)
        return self

    def _validate_params(self) -> None:
        """Checks every constructor argument against ``_parameter_constraints``."""
        for name, value in self.get_params().items():
            rules = self._parameter_constraints.get(name)
            if rules is not None:
                validate_parameter(type(self).__name__, name, value, rules)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def catalog() -> list[type[Technique]]:
    """Every concrete Technique subclass in the flywheel.techniques package."""
    import flywheel.techniques as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    found: list[type[Technique]] = []
    stack = list(Technique.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if not inspect.isabstract(cls) and not cls.__name__.startswith("_") and cls.__module__.startswith(package.__name__):
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)

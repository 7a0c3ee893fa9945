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

import importlib
import inspect
import pkgutil
from typing import Any, ClassVar

# The rules live with the DSL (components declare them in their signatures too); techniques
# import them from here as before.
from flywheel.dsl.constraints import Interval, Options, validate_parameter  # noqa: F401 - re-exported
from flywheel.errors import ParameterError


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

"""The contract every technique in ``flywheel.techniques`` keeps (scikit-learn's test_common style).

Runs over ``catalog()``; each technique supplies its tiny problem through
``_contract_case()`` (see ``flywheel.techniques.base.Technique``):

* keyword-only ``__init__`` that only stores: ``get_params()`` returns the
  arguments as given, and constructing with bad values raises nothing;
* every bad parameter raises ``ParameterError`` with the uniform message
  ``The 'x' parameter of Cls must be ... Got ... instead.`` when the technique
  is used (validation in fit/transform, not in ``__init__``);
* determinism: the same seed gives identical outputs; where the parameters
  hold a ``random_state``, another seed gives different outputs;
* outputs are arrays of consistent shapes (and match the case's optional
  ``shapes`` predicate);
* malformed input is refused with a ``FlywheelError``.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from flywheel.errors import FlywheelError, ParameterError
from flywheel.techniques.base import Technique, catalog

TECHNIQUES = catalog()
UNIFORM = re.compile(r"^The '(?P<name>\w+)' parameter of (?P<owner>\w+) must be .+\. Got .+ instead\.$", re.DOTALL)


def _ids(classes: list[type]) -> list[str]:
    return [cls.__name__ for cls in classes]


def _arrays(result: object) -> list[np.ndarray]:
    items = result if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(item) for item in items]


def test_catalog_is_not_empty_and_every_technique_has_a_contract_case():
    assert TECHNIQUES, "catalog() found no techniques: the contract suite would test nothing"
    lacking = [cls.__name__ for cls in TECHNIQUES if not callable(getattr(cls, "_contract_case", None))]
    assert not lacking, f"techniques without a _contract_case(): {lacking}"


def test_catalog_holds_the_image_and_imbalance_techniques():
    names = set(_ids(TECHNIQUES))
    assert {"SMOTEOversampler", "RandomUndersampler", "MixUp", "RandAugment", "CoTeaching"} <= names


@pytest.fixture(params=TECHNIQUES, ids=_ids(TECHNIQUES))
def case(request):
    cls = request.param
    spec = cls._contract_case()
    missing = {"params", "bad_params", "call", "bad_input"} - set(spec)
    assert not missing, f"{cls.__name__}._contract_case() lacks {sorted(missing)}"
    return cls, spec


def test_init_is_keyword_only_and_only_stores(case):
    cls, spec = case
    signature = inspect.signature(cls.__init__)
    positional = [n for n, p in signature.parameters.items() if n != "self" and p.kind != p.KEYWORD_ONLY]
    assert not positional, f"{cls.__name__}.__init__ takes {positional} positionally; make them keyword-only"
    technique = cls(**spec["params"])
    stored = technique.get_params()
    assert all(stored[name] is value for name, value in spec["params"].items())
    assert not [name for name in vars(technique) if name.endswith("_")], "learned attributes before fitting"
    for bad in spec["bad_params"]:
        cls(**{**spec["params"], **bad})  # construction never validates


def test_every_bad_parameter_raises_the_uniform_message_on_use(case):
    cls, spec = case
    assert spec["bad_params"], f"{cls.__name__} declares no bad parameter to test"
    for bad in spec["bad_params"]:
        technique = cls(**{**spec["params"], **bad})
        with pytest.raises(ParameterError) as info:
            spec["call"](technique)
        message = str(info.value)
        match = UNIFORM.match(message)
        assert match, f"not the uniform message: {message!r}"
        assert match["owner"] == cls.__name__
        assert match["name"] in bad, f"{message!r} names another parameter than {bad}"
        assert f"Got {bad[match['name']]!r} instead." in message


def test_same_seed_same_output_other_seed_other_output(case):
    cls, spec = case
    first = _arrays(spec["call"](cls(**spec["params"])))
    second = _arrays(spec["call"](cls(**spec["params"])))
    assert len(first) == len(second) and first
    for a, b in zip(first, second):
        assert a.shape == b.shape
        assert np.array_equal(a, b), f"{cls.__name__} is not deterministic under a fixed seed"
    if spec["params"].get("random_state") is not None:
        other = _arrays(spec["call"](cls(**{**spec["params"], "random_state": spec["params"]["random_state"] + 1})))
        assert any(
            a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, other)
        ), f"{cls.__name__} ignores random_state"


def test_outputs_have_the_declared_shapes(case):
    cls, spec = case
    result = spec["call"](cls(**spec["params"]))
    arrays = _arrays(result)
    assert all(a.size > 0 for a in arrays), f"{cls.__name__} returned an empty output"
    numeric = [a for a in arrays if np.issubdtype(a.dtype, np.floating)]
    assert all(np.isfinite(a).all() for a in numeric), f"{cls.__name__} returned NaN or inf"
    if "shapes" in spec:
        assert spec["shapes"](result), f"{cls.__name__} outputs have unexpected shapes: {[a.shape for a in arrays]}"


def test_bad_input_is_refused_with_a_flywheel_error(case):
    cls, spec = case
    with pytest.raises(FlywheelError) as info:
        spec["bad_input"](cls(**spec["params"]))
    assert len(str(info.value)) > 20


def test_technique_base_is_shared():
    assert all(issubclass(cls, Technique) for cls in TECHNIQUES)

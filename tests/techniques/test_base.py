"""Parameter rules as data, and the one uniform message (scikit-learn's _param_validation style)."""

from __future__ import annotations

import pytest

from flywheel.errors import ParameterError
from flywheel.techniques.base import Interval, Options, Technique


class Sampler(Technique):
    _parameter_constraints = {
        "ratio": [Interval(float, 0, 1, closed="right")],
        "k": [Interval(int, 1, None)],
        "strategy": [Options({"entropy", "margin"})],
        "random_state": ["random_state"],
        "weights": [dict, None],
    }

    def __init__(self, *, ratio=0.5, k=3, strategy="entropy", random_state=None, weights=None):
        self.ratio = ratio
        self.k = k
        self.strategy = strategy
        self.random_state = random_state
        self.weights = weights


@pytest.mark.parametrize(
    "params, message",
    [
        ({"ratio": 0}, "The 'ratio' parameter of Sampler must be a float in (0, 1]. Got 0 instead."),
        ({"ratio": float("nan")}, "The 'ratio' parameter of Sampler must be a float in (0, 1]. Got nan instead."),
        ({"k": 2.5}, "The 'k' parameter of Sampler must be an int in [1, inf). Got 2.5 instead."),
        ({"k": True}, "The 'k' parameter of Sampler must be an int in [1, inf). Got True instead."),
        ({"strategy": "random"}, "The 'strategy' parameter of Sampler must be one of 'entropy', 'margin'. Got 'random' instead."),
        ({"random_state": -1}, "The 'random_state' parameter of Sampler must be an int >= 0 or None. Got -1 instead."),
        ({"weights": [1]}, "The 'weights' parameter of Sampler must be a dict or None. Got [1] instead."),
    ],
)
def test_invalid_parameters_get_the_uniform_message(params, message):
    with pytest.raises(ParameterError) as info:
        Sampler(**params)._validate_params()
    assert str(info.value) == message


def test_valid_parameters_pass_and_params_round_trip():
    sampler = Sampler(ratio=1.0, k=1, strategy="margin", random_state=0, weights={"a": 1})
    sampler._validate_params()
    assert sampler.get_params() == {"ratio": 1.0, "k": 1, "strategy": "margin", "random_state": 0, "weights": {"a": 1}}
    assert sampler.set_params(k=5).k == 5
    with pytest.raises(ParameterError, match="has no parameter 'kk'"):
        sampler.set_params(kk=1)

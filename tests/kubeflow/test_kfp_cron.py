"""Cron expressions: Kubeflow's 6-field format, standard 5-field accepted, the rest rejected."""

from __future__ import annotations

import pytest

from flywheel.errors import ParameterError
from flywheel.kubeflow.cron import to_kfp_cron
from flywheel.kubeflow.errors import CronExpressionError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0 0 3 * * *", "0 0 3 * * *"),
        ("0 3 * * *", "0 0 3 * * *"),
        ("*/15 * * * *", "0 */15 * * * *"),
        ("0 9 * * MON-FRI", "0 0 9 * * MON-FRI"),
        ("30 0 9 ? JAN,jul 1-5", "30 0 9 ? JAN,jul 1-5"),
        ("0  0   12 1 */2 *", "0 0 12 1 */2 *"),
        ("0 0 0 1-31/2 * ?", "0 0 0 1-31/2 * ?"),
    ],
)
def test_valid_expressions(given, expected):
    assert to_kfp_cron(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("* * *", "has 3 field"),
        ("0 0 0 0 * * * *", "has 8 field"),
        ("", "has 0 field"),
        ("@daily", "has 1 field"),
        ("60 * * * * *", "second must be between 0 and 59; got 60"),
        ("0 0 24 * * *", "hour must be between 0 and 23; got 24"),
        ("0 0 0 0 * *", "day of month must be between 1 and 31; got 0"),
        ("0 0 0 * 13 *", "month must be between 1 and 12; got 13"),
        ("0 0 0 * * 7", "day of week must be between 0 and 6; got 7"),
        ("0 0 0 * FOO *", "month field has 'FOO'"),
        ("0 ? * * * *", "'?' is only allowed"),
        ("0 */0 * * * *", "step 0"),
        ("0 30-10 * * * *", "runs backwards"),
        ("0 1,,2 * * * *", "is not valid"),
        ("0 L * * * *", "minute field has 'L'"),
    ],
)
def test_invalid_expressions(given, message):
    with pytest.raises(CronExpressionError, match=message.replace("?", r"\?").replace("*", r"\*")) as info:
        to_kfp_cron(given)
    assert isinstance(info.value, ParameterError)  # a user-input error, printed as one line by the CLI
    assert "\n" not in str(info.value)

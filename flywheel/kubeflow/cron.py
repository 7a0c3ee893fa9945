"""Cron expressions as Kubeflow Pipelines recurring runs accept them.

KFP's scheduler parses cron with robfig/cron and SIX fields, seconds first:
``SEC MIN HOUR DOM MONTH DOW`` (``0 0 9 * * 1-5`` is 09:00 on weekdays). A
standard five-field expression would be misread there (its minute taken as
seconds), so five fields are accepted and turned into six by prefixing
``"0 "`` (second 0). Anything else is rejected before any request is sent.
"""

from __future__ import annotations

import re

from flywheel.kubeflow.errors import CronExpressionError

_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}

# name, lowest, highest, names, whether '?' is allowed
_FIELDS: tuple[tuple[str, int, int, dict[str, int], bool], ...] = (
    ("second", 0, 59, {}, False),
    ("minute", 0, 59, {}, False),
    ("hour", 0, 23, {}, False),
    ("day of month", 1, 31, {}, True),
    ("month", 1, 12, _MONTHS, False),
    ("day of week", 0, 6, _DAYS, True),
)

_ATOM = re.compile(r"^(?P<range>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")

_FORMAT_HINT = (
    "Use 6 fields 'SEC MIN HOUR DOM MONTH DOW' (Kubeflow's format, e.g. '0 0 3 * * *' "
    "for 03:00 daily) or standard 5-field cron 'MIN HOUR DOM MONTH DOW' (e.g. '0 3 * * *')."
)


def _value(text: str, field: tuple[str, int, int, dict[str, int], bool], expr: str) -> int:
    name, low, high, names, _ = field
    if text.isdigit():
        value = int(text)
    elif text.upper() in names:
        value = names[text.upper()]
    else:
        raise CronExpressionError(
            f"Cron expression {expr!r}: {name} field has {text!r}, which is not a number"
            f"{' or a name' if names else ''}. {_FORMAT_HINT}"
        )
    if not low <= value <= high:
        raise CronExpressionError(
            f"Cron expression {expr!r}: {name} must be between {low} and {high}; got {value}."
        )
    return value


def _check_field(text: str, field: tuple[str, int, int, dict[str, int], bool], expr: str) -> None:
    name, _, _, _, question_ok = field
    if text == "?":
        if not question_ok:
            raise CronExpressionError(
                f"Cron expression {expr!r}: '?' is only allowed in the day-of-month and "
                f"day-of-week fields, not in the {name} field."
            )
        return
    for part in text.split(","):
        match = _ATOM.match(part)
        if match is None:
            raise CronExpressionError(
                f"Cron expression {expr!r}: {name} field {text!r} is not valid "
                f"(use *, N, N-M, */S, N-M/S or comma lists). {_FORMAT_HINT}"
            )
        step = match.group("step")
        if step is not None and int(step) == 0:
            raise CronExpressionError(f"Cron expression {expr!r}: step 0 in the {name} field is not allowed.")
        span = match.group("range")
        if span == "*":
            continue
        bounds = [_value(v, field, expr) for v in span.split("-")]
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise CronExpressionError(
                f"Cron expression {expr!r}: {name} range {span!r} runs backwards; write the low value first."
            )


def to_kfp_cron(expression: str) -> str:
    """Validates a cron expression and returns it in Kubeflow's 6-field form.

    Args:
        expression: 6 fields (seconds first, KFP's format) or 5 fields
            (standard cron; second 0 is prefixed).

    Returns:
        The 6-field expression, fields separated by single spaces.

    Raises:
        CronExpressionError: wrong number of fields, or a field that is out of
            range or malformed.
    """
    if not isinstance(expression, str):
        raise CronExpressionError(f"A cron expression must be a string; got {expression!r}.")
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronExpressionError(
            f"Cron expression {expression!r} has {len(fields)} field(s). {_FORMAT_HINT}"
        )
    for text, field in zip(fields, _FIELDS, strict=True):
        _check_field(text, field, expression)
    return " ".join(fields)

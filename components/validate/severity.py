"""Which anomalies stop a run and which are recorded (TFX's per-anomaly-kind severity).

An anomaly *kind* is TFDV's ``AnomalyInfo.Type`` name (``SCHEMA_MISSING_COLUMN``,
``ENUM_TYPE_UNEXPECTED_STRING_VALUES``, ...), or ``skew`` / ``drift`` for every
distribution comparison of that scope, or ``COLUMN_EMPTY_IN_SPLIT`` for a column
that exists but holds no value in one split (TFDV reports it as missing).

By default only what breaks training or serving is an ``error`` (blocks the run):
a missing or retyped column (the label included), and values outside a domain
the user curated (``schema_path``). Everything else is a ``warning``: rare
categories the train split never saw (the model's lookup has an out-of-vocabulary
bucket for them), a column empty in one split, skew and drift. Warnings are
recorded in the anomalies artifact, the report and the run summary.
"""

from __future__ import annotations

import re
from typing import Any

from flywheel.errors import ParameterError

ERROR, WARNING = "error", "warning"
SEVERITIES = (ERROR, WARNING)
COLUMN_EMPTY_IN_SPLIT = "COLUMN_EMPTY_IN_SPLIT"
MISSING_COLUMN = "SCHEMA_MISSING_COLUMN"
UNSEEN_VALUES = "ENUM_TYPE_UNEXPECTED_STRING_VALUES"
# Kinds that say a value has another type than the schema's (a retyped column).
_RETYPED = re.compile(r"^(UNEXPECTED_DATA_TYPE|(BOOL|INT|FLOAT|STRING|ENUM)_TYPE_\w*(NOT|NON)_\w*)$")


def check_overrides(severity: dict[str, Any]) -> dict[str, str]:
    """Validates the ``severity`` parameter of validate.

    Raises:
        ParameterError: a value is not "error" or "warning", or a key is not a string.
    """
    for kind, level in severity.items():
        if not isinstance(kind, str) or level not in SEVERITIES:
            raise ParameterError(
                "The 'severity' parameter of validate must map anomaly kinds (TFDV AnomalyInfo.Type names "
                "such as 'SCHEMA_MISSING_COLUMN', or 'skew', 'drift', 'COLUMN_EMPTY_IN_SPLIT') to 'error' or "
                f"'warning'. Got {kind!r}: {level!r} instead."
            )
    return dict(severity)


def default_severity(kind: str, scope: str, *, curated_domain: bool) -> str:
    """The severity of one anomaly kind when the user set none."""
    if scope in ("skew", "drift"):
        return WARNING
    if kind == MISSING_COLUMN or _RETYPED.match(kind):
        return ERROR
    if kind == UNSEEN_VALUES and curated_domain:
        return ERROR
    return WARNING


def classify(
    kinds: dict[str, dict[str, list[str]]],
    *,
    overrides: dict[str, str],
    curated_domain: bool,
    split_columns: dict[str, set[str]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{scope: {feature: {"severity", "kinds"}}}`` for every anomaly found.

    A feature's severity is the strictest of its kinds'. A column TFDV calls
    missing but that is in the split's data (all values empty) is
    ``COLUMN_EMPTY_IN_SPLIT``.
    """
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for scope, by_feature in kinds.items():
        for feature, names in by_feature.items():
            adjusted = [
                COLUMN_EMPTY_IN_SPLIT if n == MISSING_COLUMN and feature in split_columns.get(scope, set()) else n
                for n in names
            ]
            levels = [
                overrides.get(n) or overrides.get(scope if scope in ("skew", "drift") else "")
                or default_severity(n, scope, curated_domain=curated_domain)
                for n in adjusted
            ]
            result.setdefault(scope, {})[feature] = {
                "severity": ERROR if ERROR in levels else WARNING,
                "kinds": adjusted,
            }
    return result

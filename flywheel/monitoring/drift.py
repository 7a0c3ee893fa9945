"""Two-sample drift tests, one column at a time, in NumPy.

Every test returns a :class:`DriftResult` whose ``statistic`` is the number
compared with ``threshold``: a p-value for the hypothesis tests (drift when
it is *below* the threshold) or a distance (drift when it is *at or above*
the threshold). The raw test statistic (K-S D, chi-squared) goes in
``details``.

Tests (names as stored in ``DriftCheck.test``):

========================  ============  =====================================  ===========
test                      kind          statistic (drift when)                 default
========================  ============  =====================================  ===========
``ks``                    numeric       two-sample Kolmogorov-Smirnov p-value  p <= 0.05
``wasserstein``           numeric       Wasserstein-1 distance / std(ref)      d >= 0.1
``chi2``                  categorical   Pearson chi-squared p-value, expected  p < 0.05
                                        counts from the reference shares
``z``                     binary        two-proportion z-test p-value          p < 0.05
``jensen_shannon``        both          Jensen-Shannon distance (natural log)  d >= 0.1
``psi``                   both          population stability index             v >= 0.2
========================  ============  =====================================  ===========

``choose_test`` is Evidently's default rule (``DataDriftPreset`` with no
method): with at most 1000 reference rows K-S for numeric columns with more
than 5 values, chi-squared (more than 2 values) or z (2 values) otherwise;
with more reference rows Wasserstein for numeric columns with more than 5
values, Jensen-Shannon otherwise. Thresholds, binning (Sturges bins over both
samples for numeric Jensen-Shannon) and NaN handling (dropped) match
Evidently 0.7's, so detections agree column for column (benchmarks/drift.py).

The monitor's live checks use K-S and chi-squared at 0.01 instead (see
``flywheel.monitoring.reference``): a live window is small (hundreds of rows),
and a per-feature false-alarm rate of 1% keeps a 7-feature model quiet on
unchanged traffic (measured in tests/monitoring/test_drift.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from flywheel.errors import FlywheelError

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)

# test -> (default threshold, drift when the statistic is "below" or "above" it)
TESTS: dict[str, tuple[float, str]] = {
    "ks": (0.05, "below_or_equal"),
    "chi2": (0.05, "below"),
    "z": (0.05, "below"),
    "wasserstein": (0.1, "above_or_equal"),
    "jensen_shannon": (0.1, "above_or_equal"),
    "psi": (0.2, "above_or_equal"),
}
NUMERIC_TESTS = ("ks", "wasserstein", "jensen_shannon", "psi")
CATEGORICAL_TESTS = ("chi2", "z", "jensen_shannon", "psi")


class DriftTestError(FlywheelError):
    """A drift test was asked for something it cannot do (unknown test, wrong kind, no data)."""


@dataclasses.dataclass(frozen=True)
class DriftResult:
    """The outcome of one column's test."""

    feature: str
    kind: str
    test: str
    statistic: float
    threshold: float
    drifted: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def is_drift(test: str, statistic: float, threshold: float) -> bool:
    """Whether ``statistic`` of ``test`` means drift at ``threshold``."""
    direction = TESTS[test][1]
    if direction == "below":
        return statistic < threshold
    if direction == "below_or_equal":
        return statistic <= threshold
    return statistic >= threshold


def check_test(test: str, kind: str, threshold: float | None = None) -> float:
    """Validates a (test, kind, threshold) choice; returns the threshold to use.

    Raises:
        DriftTestError: unknown test, a test that does not apply to the kind,
            or a threshold out of range.
    """
    if kind not in KINDS:
        raise DriftTestError(f"A feature kind must be one of {list(KINDS)}. Got {kind!r} instead.")
    allowed = NUMERIC_TESTS if kind == NUMERIC else CATEGORICAL_TESTS
    if test not in allowed:
        raise DriftTestError(
            f"The drift test for a {kind} feature must be one of {list(allowed)}. Got {test!r} instead."
        )
    if threshold is None:
        return TESTS[test][0]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise DriftTestError(f"The threshold of test '{test}' must be a finite number. Got {threshold!r} instead.")
    if TESTS[test][1].startswith("below") and not 0 < threshold < 1:
        raise DriftTestError(
            f"The threshold of test '{test}' is a p-value and must lie in (0, 1). Got {threshold!r} instead."
        )
    if threshold <= 0:
        raise DriftTestError(
            f"The threshold of test '{test}' is a distance and must be > 0. Got {threshold!r} instead."
        )
    return float(threshold)


# -- numeric tests -------------------------------------------------------------------------------


def clean_numeric(values: Any) -> np.ndarray:
    """Float array without NaN and +-inf (dropped, as Evidently does)."""
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def ks_statistic(reference_sorted: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Two-sample K-S D of one or many current samples against a sorted reference.

    Args:
        reference_sorted: 1-D reference sample, sorted ascending.
        current: 1-D sample, or 2-D (windows x n) for many windows at once.

    Returns:
        D (a scalar array for 1-D input, one value per row for 2-D).
    """
    current = np.sort(np.atleast_2d(current), axis=1)
    n_ref, n_cur = reference_sorted.shape[0], current.shape[1]
    # The sup of |F_ref - F_cur| is reached at a data point of either sample.
    points = np.concatenate([np.broadcast_to(reference_sorted, (current.shape[0], n_ref)), current], axis=1)
    ref_cdf = np.searchsorted(reference_sorted, points, side="right") / n_ref
    cur_cdf = np.stack([np.searchsorted(row, pts, side="right") for row, pts in zip(current, points)]) / n_cur
    return np.abs(ref_cdf - cur_cdf).max(axis=1).squeeze()


def ks_pvalue(d: Any, n_ref: int, n_cur: int) -> np.ndarray:
    """Two-sided K-S p-value for D (SciPy's ``ks_2samp(method='asymp')``)."""
    from scipy.stats import kstwo

    effective = round(n_ref * n_cur / (n_ref + n_cur))
    return np.clip(kstwo.sf(np.asarray(d, dtype=np.float64), max(effective, 1)), 0.0, 1.0)


def wasserstein_normed(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> tuple[float, int]:
    """Wasserstein-1 distance between two sorted samples divided by std(reference).

    Linear after the sorts: a stable argsort of two sorted runs is one merge.
    Also returns the number of distinct values of both samples together.
    """
    merged = np.concatenate([reference_sorted, current_sorted])
    order = np.argsort(merged, kind="stable")
    values = merged[order]
    from_reference = order < reference_sorted.shape[0]
    ref_cdf = np.cumsum(from_reference)[:-1] / reference_sorted.shape[0]
    cur_cdf = np.cumsum(~from_reference)[:-1] / current_sorted.shape[0]
    deltas = np.diff(values)
    distance = float(np.sum(np.abs(ref_cdf - cur_cdf) * deltas))
    norm = max(float(np.std(reference_sorted)), 0.001)
    return distance / norm, int(np.count_nonzero(deltas)) + 1


def _sturges_shares(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    return np.histogram(reference, edges)[0] / reference.shape[0], np.histogram(current, edges)[0] / current.shape[0]


# -- distribution tests (counts) -----------------------------------------------------------------


def align_counts(
    reference: Mapping[Any, float], current: Mapping[Any, float]
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Categories of both samples and their counts in each (0 where absent)."""
    keys = list(dict.fromkeys([*reference, *current]))
    return (
        keys,
        np.array([float(reference.get(k, 0)) for k in keys]),
        np.array([float(current.get(k, 0)) for k in keys]),
    )


def chi2_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Pearson chi-squared goodness of fit of current counts to the reference shares.

    A category the reference never saw but the current sample has gives
    p = 0 (its expected count is 0): a new category is drift.

    Returns:
        (p-value, chi-squared statistic).
    """
    from scipy.stats import chi2

    n_cur = current_counts.sum()
    expected = reference_counts / reference_counts.sum() * n_cur
    if np.any((expected == 0) & (current_counts > 0)):
        return 0.0, math.inf
    seen = expected > 0
    statistic = float(np.sum((current_counts[seen] - expected[seen]) ** 2 / expected[seen]))
    dof = int(seen.sum()) - 1
    if dof < 1:
        return 1.0, statistic
    return float(chi2.sf(statistic, dof)), statistic


def z_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Two-proportion z-test on the share of the first category (Evidently's ``z``)."""
    from scipy.stats import norm

    n1, n2 = reference_counts.sum(), current_counts.sum()
    p1, p2 = reference_counts[0] / n1, current_counts[0] / n2
    pooled = (reference_counts[0] + current_counts[0]) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(2 * norm.sf(abs(p1 - p2) / spread))


def jensen_shannon(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, natural log) of two distributions."""
    p = reference_shares / reference_shares.sum()
    q = current_shares / current_shares.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index, empty bins floored at 1e-4."""
    p = np.maximum(reference_shares / reference_shares.sum(), 1e-4)
    q = np.maximum(current_shares / current_shares.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def counts_drift(
    feature: str,
    reference: Mapping[Any, float],
    current: Mapping[Any, float],
    *,
    test: str = "chi2",
    threshold: float | None = None,
    kind: str = CATEGORICAL,
) -> DriftResult:
    """Drift of a categorical distribution given as counts per category.

    Used where the reference is TFDV statistics (category counts) and for
    prediction drift (predicted classes against training labels).
    """
    threshold = check_test(test, kind, threshold)
    keys, ref, cur = align_counts(reference, current)
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise DriftTestError(
            f"Feature '{feature}': both samples need at least one value (reference {ref.sum():.0f}, current {cur.sum():.0f})."
        )
    details: dict[str, Any] = {
        "reference_shares": {str(k): round(float(v / ref.sum()), 6) for k, v in zip(keys, ref)},
        "current_shares": {str(k): round(float(v / cur.sum()), 6) for k, v in zip(keys, cur)},
        "reference_rows": int(ref.sum()),
        "current_rows": int(cur.sum()),
    }
    if test == "chi2":
        statistic, chi = chi2_pvalue(ref, cur)
        details["chi2"] = chi if math.isfinite(chi) else "inf"
        unseen = [str(k) for k, r, c in zip(keys, ref, cur) if r == 0 and c > 0]
        if unseen:
            details["unseen_categories"] = unseen
    elif test == "z":
        statistic = z_pvalue(ref, cur)
    elif test == "jensen_shannon":
        statistic = jensen_shannon(ref, cur)
    else:
        statistic = psi(ref, cur)
    return DriftResult(feature, kind, test, float(statistic), threshold, is_drift(test, statistic, threshold), details)


def value_counts(values: Any) -> dict[Any, int]:
    """Counts per non-missing value (pandas' hash-based ``value_counts``)."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values)
    return {k: int(v) for k, v in series.value_counts(dropna=True).items()}


# -- one column, one call -------------------------------------------------------------------------


def choose_test(kind: str, n_reference: int, n_unique: int) -> str:
    """Evidently's default test for a column (see the module docstring)."""
    if n_reference <= 1000:
        if kind == NUMERIC and n_unique > 5:
            return "ks"
        return "chi2" if n_unique > 2 else "z"
    if kind == NUMERIC and n_unique > 5:
        return "wasserstein"
    return "jensen_shannon"


def numeric_drift(
    feature: str,
    reference: Any,
    current: Any,
    *,
    test: str = "ks",
    threshold: float | None = None,
    reference_sorted: np.ndarray | None = None,
) -> DriftResult:
    """Drift of a numeric column from samples.

    Args:
        feature: Column name (recorded).
        reference: Reference sample (NaN dropped).
        current: Current sample (NaN dropped).
        test: A numeric test, or "auto" for Evidently's choice.
        threshold: Default: the test's default.
        reference_sorted: The reference, cleaned and sorted, if the caller has
            it already (the monitor caches it per model version).

    Raises:
        DriftTestError: unknown test, bad threshold, or an empty sample.
    """
    ref = reference_sorted if reference_sorted is not None else np.sort(clean_numeric(reference))
    cur = np.sort(clean_numeric(current))
    if ref.shape[0] == 0 or cur.shape[0] == 0:
        raise DriftTestError(
            f"Feature '{feature}': both samples need at least one value (reference {ref.shape[0]}, current {cur.shape[0]})."
        )
    details: dict[str, Any] = {
        "reference_rows": int(ref.shape[0]),
        "current_rows": int(cur.shape[0]),
        "reference_mean": float(ref.mean()),
        "current_mean": float(cur.mean()),
        "reference_std": float(ref.std()),
    }
    if test == "auto" or test == "wasserstein":
        distance, n_unique = wasserstein_normed(ref, cur)
        if test == "auto":
            test = choose_test(NUMERIC, ref.shape[0], n_unique)
        if test == "wasserstein":
            threshold = check_test(test, NUMERIC, threshold)
            return DriftResult(
                feature, NUMERIC, test, distance, threshold, is_drift(test, distance, threshold), details
            )
        if test in ("chi2", "z"):  # few distinct values: a numeric column treated as categories
            result = counts_drift(feature, value_counts(ref), value_counts(cur), test=test, threshold=threshold)
            return dataclasses.replace(result, kind=NUMERIC, details={**details, **result.details})
    threshold = check_test(test, NUMERIC, threshold)
    if test == "ks":
        d = float(ks_statistic(ref, cur))
        statistic = float(ks_pvalue(d, ref.shape[0], cur.shape[0]))
        details["ks_d"] = d
    elif test == "jensen_shannon":
        if np.unique(ref).shape[0] > 20:
            ref_shares, cur_shares = _sturges_shares(ref, cur)
        else:
            _, ref_shares, cur_shares = align_counts(value_counts(ref), value_counts(cur))
        statistic = jensen_shannon(ref_shares, cur_shares)
    else:
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
        edges[0], edges[-1] = -np.inf, np.inf
        statistic = psi(np.histogram(ref, edges)[0].astype(float), np.histogram(cur, edges)[0].astype(float))
    return DriftResult(feature, NUMERIC, test, statistic, threshold, is_drift(test, statistic, threshold), details)


def categorical_drift(
    feature: str, reference: Any, current: Any, *, test: str = "chi2", threshold: float | None = None
) -> DriftResult:
    """Drift of a categorical column from samples (``test="auto"``: Evidently's choice)."""
    ref_counts, cur_counts = value_counts(reference), value_counts(current)
    if test == "auto":
        n_reference = int(sum(ref_counts.values()))
        test = choose_test(CATEGORICAL, n_reference, len(set(ref_counts) | set(cur_counts)))
    return counts_drift(feature, ref_counts, cur_counts, test=test, threshold=threshold)


def dataset_drift(
    reference: Any,
    current: Any,
    kinds: Mapping[str, str],
    *,
    tests: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    columns: Sequence[str] | None = None,
) -> list[DriftResult]:
    """Per-column drift of two DataFrames.

    Args:
        reference: Reference DataFrame.
        current: Current DataFrame.
        kinds: Column -> "numeric" | "categorical".
        tests: Kind or column -> test name ("auto" = Evidently's choice,
            the default).
        thresholds: Kind or column -> threshold (default: the test's).
        columns: Which columns (default: every column in ``kinds``).
    """
    tests = tests or {}
    thresholds = thresholds or {}
    results = []
    for column in columns or list(kinds):
        kind = kinds[column]
        test = tests.get(column, tests.get(kind, "auto"))
        threshold = thresholds.get(column, thresholds.get(kind))
        if kind == NUMERIC:
            results.append(numeric_drift(column, reference[column], current[column], test=test, threshold=threshold))
        else:
            results.append(
                categorical_drift(column, reference[column], current[column], test=test, threshold=threshold)
            )
    return results

"""Drift tests: power and false-alarm rate at stated sizes, parity with SciPy, Evidently's test choice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from flywheel.monitoring import drift

REPS, N_REF, N_WINDOW, ALPHA = 100, 1000, 500, 0.01


def _ks_rejections(reference: np.ndarray, windows: np.ndarray) -> float:
    d = np.array([drift.ks_statistic(np.sort(r), w) for r, w in zip(reference, windows)])
    return float(np.mean(drift.ks_pvalue(d, reference.shape[1], windows.shape[1]) <= ALPHA))


def test_ks_false_alarms_and_power_at_n500():
    """100 repetitions, each a fresh 1000-row reference and a 500-row window, K-S at p <= 0.01."""
    rng = np.random.default_rng(20261128)
    references = rng.normal(size=(REPS, N_REF))
    same = rng.normal(size=(REPS, N_WINDOW))
    shifted = rng.normal(loc=0.5, size=(REPS, N_WINDOW))  # +0.5 std
    false_alarms = _ks_rejections(references, same)
    power = _ks_rejections(references, shifted)
    assert false_alarms <= 0.05, false_alarms
    assert power >= 0.95, power
    # A smaller shift (0.2 std) at the same size is still mostly detected, a sanity bound on power.
    assert _ks_rejections(references, rng.normal(loc=0.2, size=(REPS, N_WINDOW))) >= 0.5


def test_chi2_false_alarms_and_power_at_n500():
    """Categorical: shares (0.5, 0.3, 0.2) against (0.38, 0.34, 0.28) (total variation 0.12), 100 windows of 500, p < 0.01."""
    rng = np.random.default_rng(7)
    base, moved = np.array([0.5, 0.3, 0.2]), np.array([0.38, 0.34, 0.28])
    reference = dict(enumerate(rng.multinomial(5000, base)))  # TFDV-style counts of the train split

    def rate(p):
        return np.mean(
            [
                drift.counts_drift(
                    "c", reference, dict(enumerate(rng.multinomial(N_WINDOW, p))), threshold=ALPHA
                ).drifted
                for _ in range(REPS)
            ]
        )

    assert rate(base) <= 0.05
    assert rate(moved) >= 0.95


def test_statistics_match_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=3000), rng.normal(0.1, 1.2, size=700)
    d = float(drift.ks_statistic(np.sort(a), b))
    reference = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(reference.statistic)
    assert float(drift.ks_pvalue(d, 3000, 700)) == pytest.approx(reference.pvalue)
    w, n_unique = drift.wasserstein_normed(np.sort(a), np.sort(b))
    assert w == pytest.approx(stats.wasserstein_distance(a, b) / np.std(a))
    assert n_unique == 3700
    c1 = rng.choice(list("abc"), 1000, p=[0.5, 0.3, 0.2])
    c2 = rng.choice(list("abc"), 500, p=[0.4, 0.4, 0.2])
    chi = drift.categorical_drift("c", c1, c2, test="chi2")
    expected = stats.chisquare([np.sum(c2 == k) for k in "abc"], [np.sum(c1 == k) * 0.5 for k in "abc"])
    assert chi.statistic == pytest.approx(expected.pvalue)
    js = drift.categorical_drift("c", c1, c2, test="jensen_shannon")
    assert js.statistic == pytest.approx(
        distance.jensenshannon([np.mean(c1 == k) for k in "abc"], [np.mean(c2 == k) for k in "abc"])
    )


def test_unseen_category_is_drift():
    result = drift.counts_drift("island", {"Biscoe": 100, "Dream": 80}, {"Biscoe": 50, "Mars": 3})
    assert result.drifted and result.statistic == 0.0
    assert result.details["unseen_categories"] == ["Mars"]


@pytest.mark.parametrize(
    ("kind", "n_ref", "n_unique", "test"),
    [
        ("numeric", 1000, 6, "ks"),
        ("numeric", 1000, 4, "chi2"),
        ("numeric", 1000, 2, "z"),
        ("categorical", 500, 3, "chi2"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1001, 5, "jensen_shannon"),
        ("categorical", 5000, 30, "jensen_shannon"),
    ],
)
def test_auto_test_follows_evidentlys_rule(kind, n_ref, n_unique, test):
    assert drift.choose_test(kind, n_ref, n_unique) == test


def test_auto_on_a_large_frame_detects_the_shifted_columns_only():
    import pandas as pd

    rng = np.random.default_rng(11)
    n = 5000
    ref = pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n), "c": rng.choice(list("abcd"), n)})
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.3, 1, size=n),
            "y": rng.normal(size=n),
            "c": rng.choice(list("abcd"), n, p=[0.1, 0.2, 0.3, 0.4]),
        }
    )
    results = {
        r.feature: r for r in drift.dataset_drift(ref, cur, {"x": "numeric", "y": "numeric", "c": "categorical"})
    }
    assert {f for f, r in results.items() if r.drifted} == {"x", "c"}
    assert results["x"].test == "wasserstein" and results["c"].test == "jensen_shannon"


def test_bad_test_and_threshold_are_explained():
    with pytest.raises(drift.DriftTestError, match="numeric feature must be one of"):
        drift.check_test("chi2", "numeric")
    with pytest.raises(drift.DriftTestError, match=r"p-value and must lie in \(0, 1\). Got 5"):
        drift.check_test("ks", "numeric", 5)
    with pytest.raises(drift.DriftTestError, match="at least one value"):
        drift.numeric_drift("x", [1.0, 2.0], [float("nan")])

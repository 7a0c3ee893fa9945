"""A generator of tabular data with what real exports have (tests only; nothing here ships).

``realistic_frame`` makes tens of thousands of rows with: a high-cardinality
string column whose tail values occur once or twice (``merchant``), a mid-size
categorical with missing values (``city``), heavy-tailed numbers
(``distance_km``: Pareto, ``amount``: log-normal), a numeric column with gaps
(``age``), a column that is almost always empty (``referral_code``), a
timestamp (``signup_time``, ISO 8601) and a binary label that depends on
several of them (``label``), so a model can learn it. Deterministic per seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def realistic_frame(rows: int = 20_000, *, seed: int = 0, start: str = "2026-01-01") -> pd.DataFrame:
    """The frame described in the module docstring."""
    rng = np.random.default_rng(seed)
    merchant_ids = rng.zipf(1.3, rows) % 20_000  # a few giants, thousands seen once
    cities = np.array([f"city-{i:03d}" for i in range(150)], dtype=object)
    city_weights = 1.0 / np.arange(1, 151)
    city = rng.choice(cities, size=rows, p=city_weights / city_weights.sum())
    city[rng.random(rows) < 0.05] = None
    distance = (rng.pareto(1.1, rows) + 1.0) * 2.0
    amount = rng.lognormal(mean=3.0, sigma=1.2, size=rows)
    age = rng.normal(40, 12, rows).round().clip(18, 90)
    age[rng.random(rows) < 0.12] = np.nan
    referral = np.full(rows, None, dtype=object)
    filled = rng.random(rows) < 0.01
    referral[filled] = [f"REF{n:05d}" for n in rng.integers(0, 99_999, filled.sum())]
    signup = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, 365 * 24 * 3600, rows), unit="s")
    channel = rng.choice(np.array(["web", "app", "store", "partner"], dtype=object), size=rows, p=[0.5, 0.3, 0.15, 0.05])
    score = (
        0.8 * (np.log(distance) - 1.5)
        + 0.5 * (np.log(amount) - 3.0)
        - 0.03 * (np.nan_to_num(age, nan=40.0) - 40)
        + np.where(channel == "partner", 1.5, 0.0)
        + rng.normal(0, 0.3, rows)
    )
    label = np.where(score > 0.3, "churn", "stay")
    return pd.DataFrame(
        {
            "merchant": [f"m-{i:05d}" for i in merchant_ids],
            "city": city,
            "distance_km": distance.round(3),
            "amount": amount.round(2),
            "age": age,
            "referral_code": referral,
            "signup_time": signup.strftime("%Y-%m-%dT%H:%M:%S"),
            "channel": channel,
            "label": label,
        }
    )


def write_realistic_csv(path: str, rows: int = 20_000, *, seed: int = 0) -> str:
    """Writes ``realistic_frame(rows, seed)`` as CSV; returns the path."""
    realistic_frame(rows, seed=seed).to_csv(path, index=False)
    return path

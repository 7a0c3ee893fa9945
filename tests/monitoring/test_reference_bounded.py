"""The monitor's training reference is bounded: all values up to NUMERIC_POINTS, else a reservoir sample."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from flywheel.components import examples_io
from flywheel.dsl.artifacts import Examples
from flywheel.monitoring import drift, reference

CONTRACT = {
    "label": "y",
    "label_vocabulary": ["p", "q"],
    "features": {"x": {"kind": "numeric"}, "c": {"kind": "categorical"}},
}


def _split(tmp_path, rows: int, shard_rows: int, monkeypatch) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "x": np.where(rng.random(rows) < 0.02, np.nan, rng.lognormal(0, 1, rows)),
        "c": rng.choice(["a", "b", "c", "d"], size=rows, p=[0.4, 0.3, 0.2, 0.1]),
        "y": rng.choice(["p", "q"], size=rows),
    })
    monkeypatch.setattr(examples_io, "SHARD_ROWS", shard_rows)
    examples = Examples(uri=str(tmp_path / "examples"))
    os.makedirs(examples.uri)
    examples_io.write_split(examples, "train", frame)
    assert len(examples_io.shard_paths(examples, "train")) == -(-rows // shard_rows)
    return frame


def _ecdf_distance(sample: np.ndarray, population: np.ndarray) -> float:
    grid = np.sort(population)
    return float(np.max(np.abs(np.searchsorted(np.sort(sample), grid, side="right") / sample.shape[0]
                               - np.arange(1, grid.shape[0] + 1) / grid.shape[0])))


def test_the_reservoir_is_uniform_within_its_stated_error_and_the_same_for_a_seed():
    stream = np.random.default_rng(1).normal(size=200_000)
    samples = []
    for _ in range(2):
        sample = reference.Reservoir(5_000, seed=[0, 7])
        for start in range(0, stream.shape[0], 30_000):
            sample.add(stream[start:start + 30_000])
        samples.append(sample.sorted())
    assert samples[0].shape == (5_000,) and np.array_equal(samples[0], samples[1])
    assert _ecdf_distance(samples[0], stream) <= reference.reservoir_cdf_error(5_000)
    # the late part of the stream is in the sample as often as the early part
    late = np.isin(samples[0], stream[100_000:]).mean()
    assert 0.45 < late < 0.55
    short = reference.Reservoir(5_000, seed=0)
    short.add(stream[:300])
    assert np.array_equal(short.sorted(), np.sort(stream[:300]))


def test_a_small_train_split_gives_every_value_and_exact_counts(tmp_path, monkeypatch):
    frame = _split(tmp_path, 3_000, 700, monkeypatch)
    ref = reference.reference_from_files("m", 1, CONTRACT, None, str(tmp_path / "examples"))
    assert np.array_equal(ref.numeric_sorted["x"], np.sort(drift.clean_numeric(frame["x"])))
    assert ref.categorical_counts["c"] == {str(k): float(v) for k, v in frame["c"].value_counts().items()}
    assert ref.label_counts == {str(k): float(v) for k, v in frame["y"].value_counts().items()}
    assert ref.describe()["numeric"] == {"method": "all train values", "max_points": reference.NUMERIC_POINTS}


def test_a_large_train_split_gives_a_bounded_sample_with_its_error_stated_in_the_bundle(tmp_path, monkeypatch):
    frame = _split(tmp_path, 40_000, 9_000, monkeypatch)
    monkeypatch.setattr(reference, "NUMERIC_POINTS", 2_000)
    monkeypatch.setattr(reference, "BATCH_ROWS", 3_000)
    ref = reference.reference_from_files("m", 1, CONTRACT, None, str(tmp_path / "examples"))
    values = drift.clean_numeric(frame["x"])
    assert ref.numeric_sorted["x"].shape == (2_000,) and ref.numeric_rows["x"] == values.shape[0]
    assert _ecdf_distance(ref.numeric_sorted["x"], values) <= reference.reservoir_cdf_error(2_000)
    assert ref.categorical_counts["c"] == {str(k): float(v) for k, v in frame["c"].value_counts().items()}
    stated = ref.describe()["numeric"]
    assert stated == {"method": "uniform sample", "points": 2_000, "train_values": values.shape[0],
                      "cdf_error": pytest.approx(reference.reservoir_cdf_error(2_000), abs=1e-6), "confidence": 0.99}
    document = reference.write_bundle(str(tmp_path / "bundle"), CONTRACT, statistics_dir=None,
                                      examples_dir=str(tmp_path / "examples"))
    assert document["numeric_reference"]["method"] == "uniform sample"
    assert document["numeric_points"] == {"x": 2_000} and document["numeric_rows"] == {"x": values.shape[0]}

"""validate's statistics on Beam: the same as the in-memory path over sharded data; options reach Beam.

beam_args as the training pipeline's parameter, for validate and transform, locally and in the
Kubeflow IR: tests/components/test_transform_beam.py."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from flywheel.components import examples_io
from flywheel.components.data import beam as beam_options
from flywheel.components.validate import beam as validate_beam
from flywheel.components.validate import tfdv as validate_tfdv
from flywheel.dsl.artifacts import Examples
from flywheel.errors import ParameterError


def _sharded(tmp_path, monkeypatch, rows: int = 900) -> Examples:
    monkeypatch.setattr(examples_io, "SHARD_ROWS", 250)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "count": rng.integers(0, 9, rows),
            "fare": np.where(rng.random(rows) < 0.1, np.nan, rng.pareto(2.0, rows)),
            "company": np.where(rng.random(rows) < 0.2, None, rng.choice(["a", "b", "c", "rare"], rows, p=[0.5, 0.3, 0.19, 0.01])),
            "flag": pd.array(rng.random(rows) < 0.3, dtype="boolean"),
            "label": rng.choice(["x", "y"], rows),
        }
    )
    examples = Examples(uri=str(tmp_path / "ex"))
    os.makedirs(examples.uri)
    examples_io.write_split(examples, "train", frame)
    assert len(examples_io.shard_paths(examples, "train")) == -(-rows // 250)  # 250-row shards
    return examples


def _by_name(stats) -> dict:
    return {f.path.step[0]: f for f in stats.datasets[0].features}


def test_beam_statistics_over_shards_equal_the_in_memory_ones(tmp_path, monkeypatch):
    examples = _sharded(tmp_path, monkeypatch)
    in_memory = validate_tfdv.compute_statistics(examples_io.read_split(examples, "train"), "train")
    on_beam = validate_beam.compute_statistics(examples, "train", [])

    assert on_beam.datasets[0].num_examples == in_memory.datasets[0].num_examples == 900
    assert on_beam.datasets[0].name == "train"
    beam_features, memory_features = _by_name(on_beam), _by_name(in_memory)
    assert set(beam_features) == set(memory_features) == {"count", "fare", "company", "flag", "label"}
    for name, expected in memory_features.items():
        got = beam_features[name]
        assert got.type == expected.type, name
        if expected.HasField("num_stats"):
            # exact counts; sums in another order: 1e-9 relative
            assert got.num_stats.common_stats.num_non_missing == expected.num_stats.common_stats.num_non_missing, name
            assert got.num_stats.common_stats.num_missing == expected.num_stats.common_stats.num_missing, name
            for field in ("mean", "std_dev", "min", "max", "num_zeros"):
                assert getattr(got.num_stats, field) == pytest.approx(getattr(expected.num_stats, field), rel=1e-9), (name, field)
        else:
            assert got.string_stats.common_stats.num_non_missing == expected.string_stats.common_stats.num_non_missing, name
            assert got.string_stats.unique == expected.string_stats.unique, name
            assert [(v.value, v.frequency) for v in got.string_stats.top_values] == [
                (v.value, v.frequency) for v in expected.string_stats.top_values
            ], name


def test_user_beam_args_reach_the_pipeline_options_unchanged(tmp_path, monkeypatch, beam_pipeline_options):
    examples = _sharded(tmp_path, monkeypatch)
    seen = beam_pipeline_options
    args = ["--runner=DirectRunner", "--direct_num_workers=1", "--experiments=flywheel_marker", "--job_name=taxi-stats"]
    validate_beam.compute_statistics(examples, "train", args)

    options = seen[0].get_all_options()
    assert options["runner"] == "DirectRunner" and options["direct_num_workers"] == 1
    assert "flywheel_marker" in options["experiments"] and options["job_name"] == "taxi-stats"


@pytest.mark.parametrize("bad", ["--runner=DirectRunner", ["runner=DirectRunner"], [3]])
def test_beam_args_that_are_not_a_list_of_options_are_refused(bad):
    with pytest.raises(ParameterError, match="'beam_args' parameter of validate must be a list of Beam options"):
        beam_options.check_beam_args(bad, "validate")


def test_validate_runs_statistics_on_beam_when_given_beam_args(tmp_path, monkeypatch):
    from flywheel.components.validate import validate
    from flywheel.dsl.artifacts import HTML, ExampleAnomalies, ExampleStatistics, Schema
    from flywheel.component_call import call_component

    examples = _sharded(tmp_path, monkeypatch, rows=300)
    examples.properties["label"] = "label"
    calls = []
    real = validate_beam.compute_statistics
    monkeypatch.setattr(validate_beam, "compute_statistics", lambda *a: calls.append(a[1:]) or real(*a))
    outputs = {
        name: kind(uri=str(tmp_path / name))
        for name, kind in (("statistics", ExampleStatistics), ("schema", Schema), ("anomalies", ExampleAnomalies), ("report", HTML))
    }
    for artifact in outputs.values():
        os.makedirs(artifact.uri)
    call_component(validate, {"examples": examples}, outputs, {"beam_args": ["--direct_num_workers=1"]})
    assert calls == [("train", ["--direct_num_workers=1"])]
    stats = validate_tfdv.load_statistics(outputs["statistics"], "train")
    assert stats.datasets[0].num_examples == 300
    assert "count" in outputs["schema"].properties["features"]


def test_the_beam_stats_options_are_tfdvs_defaults_with_the_sketch_based_top_k():
    from flywheel.components.validate.tfdv import tfdv_module

    tfdv = tfdv_module()
    ours, default = validate_beam.stats_options(tfdv), tfdv.StatsOptions()
    assert ours.use_sketch_based_topk_uniques and not default.use_sketch_based_topk_uniques
    for field in ("num_top_values", "num_rank_histogram_buckets", "num_values_histogram_buckets",
                  "num_histogram_buckets", "num_quantiles_histogram_buckets", "enable_semantic_domain_stats",
                  "generators", "feature_allowlist", "weight_feature", "label_feature", "sample_rate"):
        assert getattr(ours, field) == getattr(default, field), field

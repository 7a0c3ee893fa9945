"""Pieces of the closed loop with no local store: ``newest:`` on a bucket, a damaged reference.

The loop itself, with a KFP API that runs the retraining pipeline, is tests/e2e/test_cluster_loop.py.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd

from flywheel import storage
from flywheel.monitoring import reference
from flywheel.registry import ModelRegistry
from tests.test_registry import fake_model

CONTRACT = {
    "features": {"x": {"kind": "numeric"}, "colour": {"kind": "categorical"}},
    "label": "y",
    "label_vocabulary": ["a", "b"],
}


def _model_with_reference(tmp_path, tag: str) -> tuple[str, str]:
    model_dir = fake_model(tmp_path / f"model-{tag}", tag)
    with open(os.path.join(model_dir, "model.json"), "w") as handle:
        json.dump(CONTRACT, handle)
    examples = tmp_path / f"examples-{tag}" / "Split-train"
    examples.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"x": rng.normal(0, 0.6, 400), "colour": rng.choice(["red", "blue"], 400), "y": rng.choice(["a", "b"], 400)}
    ).to_parquet(examples / "data.parquet")
    bundle = str(tmp_path / f"reference-{tag}")
    reference.write_bundle(bundle, CONTRACT, statistics_dir=None, examples_dir=str(examples.parent))
    return model_dir, bundle


def test_newest_resolves_globs_and_spans_on_a_bucket_and_refuses_local_paths_for_kubeflow(s3_bucket, tmp_path):
    import pytest

    from flywheel.errors import FlywheelError
    from flywheel.monitoring.retrain import resolve_parameters

    storage.write_bytes(f"{s3_bucket}/incoming/a.csv", b"x\n1\n")
    time.sleep(1.1)  # S3 mtimes have one-second resolution
    storage.write_bytes(f"{s3_bucket}/incoming/b.csv", b"x\n2\n")
    resolved = resolve_parameters({"data_path": f"newest:{s3_bucket}/incoming/*.csv", "epochs": 3}, pods_read=True)
    assert resolved == {"data_path": f"{s3_bucket}/incoming/b.csv", "epochs": 3}
    (tmp_path / "local.csv").write_text("x\n1\n")
    with pytest.raises(FlywheelError, match="Kubeflow pods cannot read; point it at object storage"):
        resolve_parameters({"data_path": f"newest:{tmp_path}/*.csv"}, pods_read=True)
    assert resolve_parameters({"data_path": f"newest:{tmp_path}/*.csv"}) == {"data_path": str(tmp_path / "local.csv")}


def test_a_damaged_reference_is_a_clear_reason_not_a_crash(s3_bucket, tmp_path):
    import pytest

    from flywheel.monitoring.reference import ReferenceNotFoundError, load_reference

    registry = ModelRegistry(f"{s3_bucket}/registry")
    model_dir, bundle = _model_with_reference(tmp_path, "one")
    registry.publish("m", model_dir, extra_trees={"reference": bundle})
    assert set(load_reference(registry, None, "m", 1).numeric_sorted) == {"x"}
    storage.write_bytes(registry.version_file("m", 1, "reference/reference.json"), b'{"label": "y"}')
    with pytest.raises(ReferenceNotFoundError, match="cannot be read .*push that model again"):
        load_reference(registry, None, "m", 1)

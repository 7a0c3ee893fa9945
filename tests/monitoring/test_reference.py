"""The training reference of a real pushed version, found through ML Metadata lineage."""

from __future__ import annotations

import subprocess
import time

import numpy as np

from flywheel.monitoring.monitor import Monitor
from flywheel.monitoring.reference import load_reference
from flywheel.monitoring.rules import parse_rules
from flywheel.registry import ModelRegistry
from flywheel.serving.logs import REQUESTS, JsonlWriter, log_dir
from tests.conftest import REPO


def test_reference_through_lineage_and_a_shifted_feature_is_the_one_flagged(home, flywheel_cmd):
    trained = subprocess.run(
        [*flywheel_cmd, "run", "pipelines/training.py"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    registry = ModelRegistry(home.registry)
    assert registry.serving_version("penguins") == 1
    ref = load_reference(registry, home, "penguins", 1)
    assert ref.statistics_uri.endswith("validate/statistics") and ref.examples_uri.endswith("ingest/examples")
    assert set(ref.categorical_counts) == {"island", "sex"} and sum(ref.categorical_counts["island"].values()) > 200
    assert set(ref.numeric_sorted) == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"}
    assert set(ref.label_counts) == {"Adelie", "Chinstrap", "Gentoo"}

    from palmerpenguins import load_penguins

    rows = load_penguins().sample(400, replace=True, random_state=0)
    now, records = time.time(), []
    for i, (_, row) in enumerate(rows.iterrows()):
        features = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items() if k != "species"}
        if features["body_mass_g"] is not None:
            features["body_mass_g"] += 600.0  # ~0.75 std
        records.append(
            {
                "request_id": f"r{i}",
                "index": 0,
                "ts": now,
                "model": "penguins",
                "version": 1,
                "features": features,
                "prediction": row["species"],
                "probabilities": [],
            }
        )
    writer = JsonlWriter(log_dir(home.root, "penguins", REQUESTS))
    writer.write(records)
    writer.close()
    [report] = Monitor(home, registry, parse_rules({}), log=lambda _: None).run_once()
    checks = report.windows[3600.0].checks
    assert [c.feature for c in checks if c.drifted] == ["body_mass_g"]
    assert {c.feature: c.test for c in checks}["island"] == "chi2" and {c.feature: c.test for c in checks}[
        "bill_length_mm"
    ] == "ks"

"""The training reference of a real pushed version: carried by the registry, else found through lineage."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np

from flywheel.monitoring.monitor import Monitor
from flywheel.monitoring.reference import load_reference
from flywheel.monitoring.rules import parse_rules
from flywheel.registry import ModelRegistry
from flywheel.serving.logs import REQUESTS, JsonlWriter, log_dir
from tests.conftest import REPO


def _assert_penguin_reference(ref):
    assert set(ref.categorical_counts) == {"island", "sex"} and sum(ref.categorical_counts["island"].values()) > 200
    assert set(ref.numeric_sorted) == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"}
    assert set(ref.label_counts) == {"Adelie", "Chinstrap", "Gentoo"}


def test_the_version_carries_its_reference_and_drift_is_checked_with_no_metadata_store(home, flywheel_cmd):
    trained = subprocess.run(
        [*flywheel_cmd, "run", "pipelines/training.py"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    registry = ModelRegistry(home.registry)
    assert registry.serving_version("penguins") == 1
    info = registry.version_info("penguins", 1)["metadata"]
    assert info["lineage"] == {"kind": "mlmd", "home": home.root} and info["run_id"]
    assert info["blessing"]["blessed"] is True and info["data"]["sha256"]
    version_dir = registry.version_dir("penguins", 1)
    for name in ("reference.json", "numeric.npz", "statistics/FeatureStats.pb", "schema/schema.pbtxt"):
        assert os.path.isfile(os.path.join(version_dir, "reference", name)), name

    lineage_ref = load_reference(registry, home, "penguins", 1)  # the bundle: same content as lineage gives
    _assert_penguin_reference(lineage_ref)
    assert lineage_ref.statistics_uri == os.path.join(version_dir, "reference", "statistics")
    shutil.copytree(os.path.join(version_dir, "reference"), str(home.root) + "-reference")
    shutil.rmtree(os.path.join(version_dir, "reference"))  # a version pushed before the bundle: lineage still finds it
    old_style = load_reference(registry, home, "penguins", 1)
    assert old_style.statistics_uri.endswith("validate/statistics") and old_style.examples_uri.endswith("ingest/examples")
    _assert_penguin_reference(old_style)
    shutil.copytree(str(home.root) + "-reference", os.path.join(version_dir, "reference"))
    os.remove(home.metadata_db)  # the loop must not need the metadata store
    ref = load_reference(registry, None, "penguins", 1)
    _assert_penguin_reference(ref)
    assert np.array_equal(ref.numeric_sorted["body_mass_g"], old_style.numeric_sorted["body_mass_g"])

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

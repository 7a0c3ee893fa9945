"""`flywheel demo drift`: the closed loop, end to end, checked against what the stores recorded."""

from __future__ import annotations

import subprocess
import sys

from flywheel.home import Home
from flywheel.metadata import MetadataStore
from flywheel.monitoring.store import MonitorStore
from flywheel.registry import ModelRegistry
from tests.conftest import REPO


def test_drift_retrains_by_itself_and_a_bad_version_is_rolled_back(tmp_path):
    home = Home(str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", home.root, "demo", "drift"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    registry = ModelRegistry(home.registry)
    assert registry.versions("penguins") == [1, 2, 3]
    assert registry.serving_version("penguins") == 2  # v3 was rolled back

    alerts = MonitorStore(home).alerts(model="penguins")
    drift = next(a for a in alerts if a.rule == "feature-drift")
    assert drift.action == "retrain" and drift.version == 1 and drift.run_id
    drifted = {check["feature"] for check in drift.evidence["drifted"]}
    assert {"bill_length_mm", "body_mass_g", "flipper_length_mm"} <= drifted and "island" not in drifted
    run = MetadataStore(home).get_run(drift.run_id)
    assert run.state == "COMPLETE" and run.trigger == "alert" and "feature-drift" in run.trigger_reason

    (rollback,) = MonitorStore(home).rollbacks(model="penguins")
    assert (rollback.from_version, rollback.to_version, rollback.automatic) == (3, 2, True)
    assert any(a.rule == "auto-rollback" and a.version == 3 for a in alerts)
    assert "live accuracy back to" in result.stdout

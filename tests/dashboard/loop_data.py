"""Fills the monitor's store, the serving logs and the schedule store through their own APIs.

The dashboard only reads these; the monitor, serving and the scheduler write
them in production. Values are deterministic so tests can check what the
pages show against what was written.
"""

from __future__ import annotations

import time
from typing import Any

from flywheel.home import Home
from flywheel.monitoring.store import Alert, DriftCheck, MonitorStore, Rollback
from flywheel.scheduling import ScheduleStore
from flywheel.serving.logs import FEEDBACK, REQUESTS, JsonlWriter, log_dir

FEATURES = ("bill_length_mm", "island")


def fill_monitoring(home: Home, model: str, *, retrain_run: str | None, now: float | None = None) -> dict[str, Any]:
    """Six drift windows (the last ones drifting on bill_length_mm), one retrain alert, one rollback.

    Returns what was written, for assertions.
    """
    now = time.time() if now is None else now
    store = MonitorStore(home)
    checks = []
    for window in range(6):
        ts = now - (6 - window) * 600
        for feature in FEATURES:
            statistic = 0.02 + (0.05 * window if feature == "bill_length_mm" else 0.01 * (window % 2))
            checks.append(DriftCheck(ts=ts, model=model, version=1, window_rows=200, feature=feature,
                                     kind="numeric" if feature.endswith("mm") else "categorical",
                                     test="jensen_shannon", statistic=statistic, threshold=0.2, drifted=statistic > 0.2,
                                     details={"bins": 10}))
        checks.append(DriftCheck(ts=ts, model=model, version=1, window_rows=200, feature="__prediction__",
                                 kind="categorical", test="psi", statistic=0.01 * window, threshold=0.25, drifted=False))
    store.add_drift_checks(checks)
    alert = Alert(ts=now - 500, rule="bill_length_drift", model=model, version=1, metric="drift.bill_length_mm",
                  value=0.27, threshold=0.2, action="retrain",
                  message="bill_length_mm drifted (jensen_shannon 0.27 > 0.2)",
                  evidence={"feature": "bill_length_mm", "statistic": 0.27, "window_rows": 200})
    alert_id = store.add_alert(alert)
    if retrain_run:
        store.set_alert_run(alert_id, retrain_run)
    rollback = Rollback(ts=now - 300, model=model, from_version=2, to_version=1, automatic=True,
                        reason="live accuracy 0.61 < 0.80 after the push of version 2")
    store.add_rollback(rollback)
    return {"checks": checks, "alert_id": alert_id, "alert": alert, "rollback": rollback}


def fill_serving_logs(home: Home, model: str, *, now: float | None = None) -> dict[str, Any]:
    """40 logged predictions of version 1 (30 Adelie, 10 Gentoo); 20 get feedback, 15 of them right."""
    now = time.time() if now is None else now
    requests = JsonlWriter(log_dir(home.root, model, REQUESTS))
    feedback = JsonlWriter(log_dir(home.root, model, FEEDBACK))
    rows, labels = [], []
    for i in range(40):
        prediction = "Adelie" if i < 30 else "Gentoo"
        ts = now - 3000 + i * 60
        rows.append({"request_id": f"r{i}", "index": 0, "ts": ts, "model": model, "version": 1,
                     "features": {"island": "Biscoe"}, "prediction": prediction, "probabilities": [0.9, 0.05, 0.05]})
        if i % 2 == 0:
            right = i % 8 != 0  # i = 0, 8, 16, 24, 32 are wrong: 5 of 20
            labels.append({"request_id": f"r{i}", "index": 0, "ts": ts + 30, "label": prediction if right else "Chinstrap"})
    requests.write(rows)
    feedback.write(labels)
    requests.close()
    feedback.close()
    return {"predictions": {"Adelie": 30, "Gentoo": 10}, "labeled": 20, "correct": 15}


def fill_schedules(home: Home, pipeline_file: str, *, fired_run: str) -> ScheduleStore:
    """Two schedules: 'nightly' (active, fired once as ``fired_run``) and 'weekly' (paused)."""
    store = ScheduleStore(home)
    store.create("nightly", "0 3 * * *", pipeline_file, pipeline_name="training", parameters={"epochs": "5"})
    store.create("weekly", "30 4 * * 1", pipeline_file, pipeline_name="training")
    store.set_paused("weekly", True)
    store.claim_slot("nightly", time.time() - 3600, fired_run)
    return store

"""The monitor's history store, read by the CLI and the dashboard."""

from __future__ import annotations

from flywheel.monitoring.store import Alert, DriftCheck, MonitorStore, Rollback


def test_drift_alerts_and_rollbacks_round_trip(home):
    store = MonitorStore(home)
    store.add_drift_checks(
        [
            DriftCheck(ts=10.0, model="m", version=1, window_rows=500, feature=f, kind="numeric", test="ks",
                       statistic=s, threshold=0.1, drifted=s > 0.1, details={"p_value": 0.01})
            for f, s in (("a", 0.3), ("b", 0.05))
        ]
    )
    first = store.add_alert(Alert(ts=11.0, rule="drift", model="m", version=1, metric="drift_share", value=0.5,
                                  threshold=0.3, action="retrain", message="drift", evidence={"features": ["a"]}))
    store.add_alert(Alert(ts=12.0, rule="acc", model="m", version=1, metric="accuracy", value=0.6,
                          threshold=0.8, action="log", message="low"))
    store.set_alert_run(first, "training-1")
    store.add_rollback(Rollback(ts=13.0, model="m", from_version=2, to_version=1, automatic=True, reason="worse"))

    history = store.drift_history("m")
    assert [(c.feature, c.drifted, c.details["p_value"]) for c in history] == [("a", True, 0.01), ("b", False, 0.01)]
    assert [a.rule for a in store.alerts()] == ["acc", "drift"]
    assert store.alerts(rule="drift")[0].run_id == "training-1"
    assert store.alerts(rule="drift")[0].evidence == {"features": ["a"]}
    assert store.last_alert_ts("drift", "m") == 11.0 and store.last_alert_ts("drift", "other") is None
    assert store.count_retrains("m", since=0) == 1 and store.count_retrains("m", since=11.5) == 0
    assert [(r.from_version, r.to_version, r.automatic) for r in store.rollbacks(model="m")] == [(2, 1, True)]

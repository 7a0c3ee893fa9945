"""The Monitoring and Schedules pages.

Monitoring reads the monitor's store (drift checks, alerts with the runs they
started, rollbacks) and the serving logs (prediction distribution, and live
performance by joining late feedback labels onto logged predictions).
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from typing import Any

from flywheel.dashboard import charts
from flywheel.dashboard.sources import Sources, model_name, run_state, serving_version
from flywheel.errors import FlywheelError

PREDICTION_FEATURE = "__prediction__"
DEFAULT_DAYS = 7.0
MAX_BUCKETS = 24


def _serving_models(sources: Sources) -> list[str]:
    root = os.path.join(sources.home.root, "serving")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def monitoring_index(sources: Sources) -> dict[str, Any]:
    """Models that are registered, served or monitored, with alert counts."""
    monitor = sources.monitor()
    names = set(sources.registry().models()) | set(_serving_models(sources))
    alerts = monitor.alerts(limit=1000) if monitor else []
    names |= {a.model for a in alerts}
    counts = Counter(a.model for a in alerts)
    models = []
    for name in sorted(names):
        checks = monitor.drift_history(name, limit=500) if monitor else []
        last = checks[-1].ts if checks else None
        drifted = sorted({c.feature for c in checks if c.ts == last and c.drifted})
        models.append({"name": name, "alerts": counts.get(name, 0), "last_check": last, "drifted": drifted})
    return {"models": models, "has_monitor": monitor is not None}


def _buckets(start: float, end: float) -> float:
    span = max(end - start, 1.0)
    for size in (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400):
        if span / size <= MAX_BUCKETS:
            return float(size)
    return span / MAX_BUCKETS


def drift_charts(checks: list[Any]) -> list[dict[str, Any]]:
    """One chart per feature: the drift statistic over time, its threshold, drifted checks in red."""
    by_feature: dict[str, list[Any]] = defaultdict(list)
    for check in checks:
        by_feature[check.feature].append(check)
    out = []
    ordered = sorted(by_feature, key=lambda f: (f == PREDICTION_FEATURE, f))
    for feature in ordered:
        rows = by_feature[feature]
        last = rows[-1]
        label = "prediction" if feature == PREDICTION_FEATURE else feature
        chart = charts.line_chart(
            [charts.Series(f"{last.test}", [c.ts for c in rows], [c.statistic for c in rows], flagged=[c.drifted for c in rows])],
            title=f"{label} — {last.test}",
            x_time=True,
            hlines=[(last.threshold, f"threshold {last.threshold:g}")],
            width=420,
            height=220,
            show_points=len(rows) <= 60,
        )
        out.append({
            "feature": feature,
            "label": label,
            "test": last.test,
            "kind": last.kind,
            "last": last.statistic,
            "threshold": last.threshold,
            "drifted": last.drifted,
            "checks": len(rows),
            "drifted_checks": sum(1 for c in rows if c.drifted),
            "chart": chart,
        })
    return out


def prediction_distribution(sources: Sources, model: str, since: float) -> dict[str, Any]:
    """Counts of logged predictions per class (and per version) since ``since``."""
    from flywheel.serving.logs import REQUESTS, log_dir, read_records

    counts: Counter[str] = Counter()
    by_version: dict[Any, Counter[str]] = defaultdict(Counter)
    total = 0
    for record in read_records(log_dir(sources.home.root, model, REQUESTS), since=since):
        prediction = str(record.get("prediction"))
        counts[prediction] += 1
        by_version[record.get("version")][prediction] += 1
        total += 1
    labels = sorted(counts)
    return {
        "total": total,
        "classes": [{"label": k, "count": counts[k], "share": counts[k] / total} for k in labels],
        "versions": [{"version": v, "total": sum(c.values()), "counts": dict(c)} for v, c in sorted(by_version.items(), key=lambda kv: str(kv[0]))],
        "chart": charts.bar_chart(labels, [counts[k] for k in labels], title="predicted class", value_format="{:.0f}"),
    }


def live_performance(sources: Sources, model: str, since: float) -> dict[str, Any]:
    """Accuracy of logged predictions against feedback labels, per version and over time."""
    from flywheel.serving.logs import join_feedback

    joined = join_feedback(sources.home.root, model, since=since)
    if not joined:
        return {"labeled": 0, "versions": [], "chart": charts.empty_chart("no feedback labels yet")}
    per_version: dict[int, list[bool]] = defaultdict(list)
    for item in joined:
        per_version[item.version].append(item.prediction == item.label)
    start, end = min(j.ts for j in joined), max(j.ts for j in joined)
    size = _buckets(start, end)
    series = []
    for version in sorted(per_version):
        buckets: dict[int, list[bool]] = defaultdict(list)
        for item in joined:
            if item.version == version:
                buckets[int((item.ts - start) // size)].append(item.prediction == item.label)
        keys = sorted(buckets)
        series.append(charts.Series(f"version {version}", [start + (k + 0.5) * size for k in keys],
                                    [sum(buckets[k]) / len(buckets[k]) for k in keys]))
    versions = [{"version": v, "labeled": len(hits), "correct": sum(hits), "accuracy": sum(hits) / len(hits)}
                for v, hits in sorted(per_version.items())]
    return {
        "labeled": len(joined),
        "versions": versions,
        "chart": charts.line_chart(series, title="accuracy on feedback", x_time=True, y_range=(0.0, 1.02), show_points=True,
                                   width=560, height=260),
    }


def monitoring_page(sources: Sources, model: str, args: dict[str, str]) -> dict[str, Any]:
    """One model's drift, predictions, live performance, alerts (with their runs) and rollbacks."""
    model_name(sources, model)  # the logs are read from <home>/serving/<model>: no '..' may reach that path
    try:
        days = float(args.get("days") or DEFAULT_DAYS)
    except ValueError:
        days = DEFAULT_DAYS
    since = time.time() - days * 86400
    monitor = sources.monitor()
    checks = monitor.drift_history(model, since=since) if monitor else []
    alerts = monitor.alerts(model=model, limit=200) if monitor else []
    rollbacks = monitor.rollbacks(model=model, limit=100) if monitor else []
    run_states: dict[str, str] = {}
    if sources.has_metadata:
        with sources.lock:
            store = sources.metadata()
            for alert in alerts:
                if alert.run_id and alert.run_id not in run_states:
                    try:
                        run_states[alert.run_id] = run_state(store.get_run(alert.run_id))
                    except FlywheelError:
                        run_states[alert.run_id] = "UNKNOWN"
    serving = serving_version(sources.registry(), model)[0]
    return {
        "model": model,
        "days": days,
        "serving": serving,
        "has_monitor": monitor is not None,
        "drift": drift_charts(checks),
        "predictions": prediction_distribution(sources, model, since),
        "performance": live_performance(sources, model, since),
        "alerts": alerts,
        "run_states": run_states,
        "rollbacks": rollbacks,
    }


def schedules_page(sources: Sources) -> dict[str, Any]:
    """Local schedules with their next slot and last firings (and those runs' states)."""
    store = sources.schedules()
    if store is None:
        return {"schedules": []}
    rows = []
    for schedule in store.list():
        firings = []
        for slot, run_id in store.firings(schedule.name, limit=5):
            state = "UNKNOWN"
            if sources.has_metadata:
                with sources.lock:
                    try:
                        state = run_state(sources.metadata().get_run(run_id))
                    except FlywheelError:
                        state = "PENDING"
            firings.append({"slot": slot, "run_id": run_id, "state": state})
        rows.append({
            "schedule": schedule,
            "next": None if schedule.paused else store.next_slot(schedule),
            "firings": firings,
            "parameters": sorted(schedule.parameters.items()),
        })
    return {"schedules": rows}

"""What the monitor found and did: drift checks, fired alerts, retraining triggers, rollbacks.

Kept in ``<home>/monitor.sqlite`` (stdlib sqlite3, WAL) so the CLI (``flywheel
alerts``), the dashboard and the monitor itself read the same history. Evidence
and details are JSON. Timestamps are epoch seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from typing import Any

from flywheel import localdb
from flywheel.home import Home

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, model TEXT NOT NULL, version INTEGER,
    window_rows INTEGER NOT NULL, feature TEXT NOT NULL, kind TEXT NOT NULL, test TEXT NOT NULL,
    statistic REAL NOT NULL, threshold REAL NOT NULL, drifted INTEGER NOT NULL, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS drift_checks_model_ts ON drift_checks (model, ts);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, rule TEXT NOT NULL, model TEXT NOT NULL,
    version INTEGER, metric TEXT NOT NULL, value REAL NOT NULL, threshold REAL NOT NULL,
    action TEXT NOT NULL, message TEXT NOT NULL, evidence TEXT NOT NULL, run_id TEXT);
CREATE INDEX IF NOT EXISTS alerts_rule_ts ON alerts (rule, ts);
CREATE TABLE IF NOT EXISTS rollbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, model TEXT NOT NULL,
    from_version INTEGER NOT NULL, to_version INTEGER NOT NULL, automatic INTEGER NOT NULL,
    reason TEXT NOT NULL);
"""


@dataclasses.dataclass
class DriftCheck:
    """One feature's (or the prediction's) drift test over one live window."""

    ts: float
    model: str
    version: int | None
    window_rows: int
    feature: str  # a feature name, or "__prediction__" for prediction drift
    kind: str  # "numeric" | "categorical"
    test: str  # e.g. "ks", "chi2", "psi", "jensen_shannon", "wasserstein"
    statistic: float
    threshold: float
    drifted: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    id: int | None = None


@dataclasses.dataclass
class Alert:
    """A fired alert rule with its evidence and the action taken."""

    ts: float
    rule: str
    model: str
    version: int | None
    metric: str
    value: float
    threshold: float
    action: str  # "log" | "file" | "webhook" | "retrain" | "rollback"
    message: str
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_id: str | None = None  # the retraining run it started, if any
    id: int | None = None


@dataclasses.dataclass
class Rollback:
    ts: float
    model: str
    from_version: int
    to_version: int
    automatic: bool
    reason: str
    id: int | None = None


class MonitorStore:
    """Reads and appends monitoring history in ``<home>/monitor.sqlite``."""

    def __init__(self, home: Home) -> None:
        self.path = os.path.join(home.ensure().root, "monitor.sqlite")
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return localdb.connect(self.path)

    # -- writes ---------------------------------------------------------------

    def add_drift_checks(self, checks: list[DriftCheck]) -> None:
        with self._db() as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO drift_checks (ts, model, version, window_rows, feature, kind, test, statistic, "
                "threshold, drifted, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (c.ts, c.model, c.version, c.window_rows, c.feature, c.kind, c.test, float(c.statistic),
                     float(c.threshold), int(c.drifted), json.dumps(c.details, default=str))
                    for c in checks
                ],
            )
            db.execute("COMMIT")

    def add_alert(self, alert: Alert) -> int:
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO alerts (ts, rule, model, version, metric, value, threshold, action, message, "
                "evidence, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (alert.ts, alert.rule, alert.model, alert.version, alert.metric, float(alert.value),
                 float(alert.threshold), alert.action, alert.message, json.dumps(alert.evidence, default=str),
                 alert.run_id),
            )
            return int(cursor.lastrowid)

    def set_alert_run(self, alert_id: int, run_id: str) -> None:
        """Records the retraining run an alert started."""
        with self._db() as db:
            db.execute("UPDATE alerts SET run_id = ? WHERE id = ?", (run_id, alert_id))

    def merge_alert_evidence(self, alert_id: int, extra: dict[str, Any]) -> None:
        """Adds keys to an alert's evidence (what its actions and sinks did, known only after it is stored)."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT evidence FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is not None:
                evidence = {**json.loads(row[0]), **extra}
                db.execute("UPDATE alerts SET evidence = ? WHERE id = ?", (json.dumps(evidence, default=str), alert_id))
            db.execute("COMMIT")

    def add_rollback(self, rollback: Rollback) -> int:
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO rollbacks (ts, model, from_version, to_version, automatic, reason) VALUES (?,?,?,?,?,?)",
                (rollback.ts, rollback.model, rollback.from_version, rollback.to_version, int(rollback.automatic),
                 rollback.reason),
            )
            return int(cursor.lastrowid)

    # -- reads ----------------------------------------------------------------

    def drift_history(self, model: str, *, since: float | None = None, limit: int = 5000) -> list[DriftCheck]:
        """Drift checks of a model, oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, ts, model, version, window_rows, feature, kind, test, statistic, threshold, drifted, "
                "details FROM drift_checks WHERE model = ? AND ts >= ? ORDER BY ts DESC, id DESC LIMIT ?",
                (model, since or 0.0, limit),
            ).fetchall()
        return [
            DriftCheck(id=r[0], ts=r[1], model=r[2], version=r[3], window_rows=r[4], feature=r[5], kind=r[6],
                       test=r[7], statistic=r[8], threshold=r[9], drifted=bool(r[10]), details=json.loads(r[11]))
            for r in reversed(rows)
        ]

    def alerts(self, *, model: str | None = None, rule: str | None = None, limit: int = 100) -> list[Alert]:
        """Fired alerts, newest first."""
        query = "SELECT id, ts, rule, model, version, metric, value, threshold, action, message, evidence, run_id FROM alerts"
        clauses, args = [], []
        if model:
            clauses.append("model = ?")
            args.append(model)
        if rule:
            clauses.append("rule = ?")
            args.append(rule)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY ts DESC, id DESC LIMIT ?"
        with self._db() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [
            Alert(id=r[0], ts=r[1], rule=r[2], model=r[3], version=r[4], metric=r[5], value=r[6], threshold=r[7],
                  action=r[8], message=r[9], evidence=json.loads(r[10]), run_id=r[11])
            for r in rows
        ]

    def last_alert_ts(self, rule: str, model: str) -> float | None:
        """When ``rule`` last fired for ``model`` (for cool-downs)."""
        with self._db() as db:
            row = db.execute("SELECT MAX(ts) FROM alerts WHERE rule = ? AND model = ?", (rule, model)).fetchone()
        return row[0]

    def count_retrains(self, model: str, since: float) -> int:
        """Retraining runs started by alerts for ``model`` since ``since`` (for rate limits)."""
        with self._db() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM alerts WHERE model = ? AND action = 'retrain' AND run_id IS NOT NULL AND ts >= ?",
                (model, since),
            ).fetchone()
        return int(row[0])

    def rollbacks(self, *, model: str | None = None, limit: int = 100) -> list[Rollback]:
        """Rollbacks, newest first."""
        query = "SELECT id, ts, model, from_version, to_version, automatic, reason FROM rollbacks"
        args: tuple[Any, ...] = ()
        if model:
            query += " WHERE model = ?"
            args = (model,)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY ts DESC, id DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            Rollback(id=r[0], ts=r[1], model=r[2], from_version=r[3], to_version=r[4], automatic=bool(r[5]), reason=r[6])
            for r in rows
        ]


def now() -> float:
    return time.time()

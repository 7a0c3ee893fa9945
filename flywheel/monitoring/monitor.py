"""One monitoring pass: read the live window, check drift and performance, fire rules, act.

For each model of the registry (or the one asked for), a pass

1. reads the request log (``flywheel.serving.logs``) of the last window, keeps
   the rows the serving version predicted, and joins feedback labels;
2. tests every feature against that version's training reference
   (``reference``) and the predicted classes against the training labels,
   and stores the checks (``MonitorStore.add_drift_checks``);
3. computes live accuracy / balanced accuracy from feedback and their drop
   against the blessed evaluation in ``version.json``;
4. evaluates the rules (cool-down per rule and model), stores each fired
   alert with its evidence, acts (retrain, rollback) and notifies the sinks;
5. watches a newly pushed version and rolls it back when it degrades.

With ``endpoint`` the logs are read over HTTP instead of from the home:
``GET <endpoint>/v1/models/<model>/logs/requests?since=<epoch s>`` and
``.../logs/feedback?since=...``, each answering JSON lines in the log format.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any, Callable, Iterable

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.home import Home
from flywheel.monitoring import drift, retrain, rollback
from flywheel.monitoring.reference import ReferenceNotFoundError, TrainingReference, load_reference
from flywheel.monitoring.rules import FEATURE_METRIC_PREFIX, SINKS, Rule, RulesConfig, notify
from flywheel.monitoring.store import Alert, DriftCheck, MonitorStore
from flywheel.registry import ModelRegistry
from flywheel.serving import logs

PREDICTION_FEATURE = "__prediction__"


class LogSourceError(FlywheelError):
    """The request or feedback log cannot be read."""


class DirectoryLogSource:
    """Reads the logs that serving writes: every replica's files under the home, a mount or a URI.

    Args:
        home_root: The home, or the shared log root (``$FLYWHEEL_SERVING_LOG_URI``, ``--logs``).
    """

    def __init__(self, home_root: str) -> None:
        self.home_root = home_root

    def requests(self, model: str, since: float) -> list[dict[str, Any]]:
        return list(logs.read_records(logs.log_dir(self.home_root, model, logs.REQUESTS), since=since))

    def labeled(self, model: str, since: float) -> list[logs.LabeledPrediction]:
        return logs.join_feedback(self.home_root, model, since=since)


class HttpLogSource:
    """Reads the logs from the serving endpoint (the CronJob's ``--endpoint``)."""

    def __init__(self, endpoint: str, *, timeout_s: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s

    def _fetch(self, model: str, kind: str, since: float) -> list[dict[str, Any]]:
        url = f"{self.endpoint}/v1/models/{urllib.parse.quote(model)}/logs/{kind}?since={since:.3f}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:  # noqa: S310 - operator's endpoint
                lines = response.read().decode("utf-8", errors="replace").splitlines()
        except urllib.error.HTTPError as exc:  # the server says why (e.g. its logs endpoint is off)
            detail = exc.read().decode("utf-8", errors="replace")[:300]
            raise LogSourceError(f"Cannot read the {kind} log of '{model}' from {url}: {exc}: {detail}") from exc
        except OSError as exc:
            raise LogSourceError(f"Cannot read the {kind} log of '{model}' from {url}: {exc}") from exc
        return list(logs.parse_lines(lines))

    def requests(self, model: str, since: float) -> list[dict[str, Any]]:
        return self._fetch(model, logs.REQUESTS, since)

    def labeled(self, model: str, since: float) -> list[logs.LabeledPrediction]:
        return logs.join_records(self._fetch(model, logs.FEEDBACK, since), self.requests(model, since))


@dataclasses.dataclass
class WindowResult:
    """Metrics and drift checks of one model version over one window."""

    window_s: float
    version: int | None
    metrics: dict[str, float | None]
    checks: list[DriftCheck]
    notes: list[str]


@dataclasses.dataclass
class ModelReport:
    """What one pass found and did for one model."""

    model: str
    version: int | None
    windows: dict[float, WindowResult] = dataclasses.field(default_factory=dict)
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    rollback: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _float_or_nan(value: Any) -> float:
    try:
        return float(value) if value is not None and value != "" else math.nan
    except (TypeError, ValueError):
        return math.nan


class Monitor:
    """Runs monitoring passes over a registry's models.

    Args:
        home: Project home (logs, ML Metadata of the training runs, monitor.sqlite).
        registry: The model registry.
        config: Parsed rules.
        models: Only these models (default: every model in the registry).
        window_s: The drift window when no rule names one (default: the config's).
        launcher: Starts a retraining run (tests inject a fake); default: a
            local subprocess, or Kubeflow when ``config.retrain.host`` is set.
        source: Where logs come from (default: ``$FLYWHEEL_SERVING_LOG_URI``, else the home's log directories).
        clock: Current epoch time (tests inject a fake).
        log: Where progress lines go (default: stderr).
    """

    def __init__(
        self,
        home: Home,
        registry: ModelRegistry,
        config: RulesConfig,
        *,
        models: list[str] | None = None,
        window_s: float | None = None,
        launcher: retrain.Launcher | None = None,
        source: Any = None,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        self.home = home
        self.registry = registry
        self.config = config
        self.models = models
        self.window_s = window_s or config.window_s
        self.store = MonitorStore(home)
        self.source = source or DirectoryLogSource(logs.log_root(home.root))
        self.clock = clock
        self.log = log
        host = config.retrain.host if config.retrain else None
        self.launcher = launcher or (retrain.kubeflow_launcher(host) if host else retrain.local_launcher(home))
        self._references: dict[tuple[str, int], TrainingReference | str] = {}

    # -- reference ---------------------------------------------------------------------------------

    def reference(self, model: str, version: int) -> TrainingReference | str:
        """The version's training reference (cached), or why there is none."""
        key = (model, version)
        if key not in self._references:
            try:
                self._references[key] = load_reference(self.registry, self.home, model, version)
            except (ReferenceNotFoundError, FlywheelError, OSError) as exc:
                self._references[key] = str(exc)
        return self._references[key]

    def use_reference(self, reference: TrainingReference) -> None:
        """Uses ``reference`` for its model version instead of looking it up (tests, custom references)."""
        self._references[(reference.model, reference.version)] = reference

    # -- one window --------------------------------------------------------------------------------

    def _feature_check(
        self, ref: TrainingReference, feature: str, kind: str, values: list[Any]
    ) -> drift.DriftResult | None:
        test, threshold = self.config.drift.for_feature(feature, kind)
        min_rows = self.config.drift.min_rows
        if kind == drift.NUMERIC:
            current = drift.clean_numeric([_float_or_nan(v) for v in values])
            if current.shape[0] < min_rows:
                return None
            if feature in ref.numeric_sorted:
                return drift.numeric_drift(
                    feature, None, current, test=test, threshold=threshold, reference_sorted=ref.numeric_sorted[feature]
                )
            if feature in ref.quantile_buckets:  # no train split: chi-squared on TFDV's quantile buckets
                edges, counts = ref.quantile_buckets[feature]
                inner = edges.copy()
                inner[0], inner[-1] = -math.inf, math.inf
                live = np.histogram(current, inner)[0]
                result = drift.counts_drift(
                    feature,
                    dict(enumerate(counts)),
                    dict(enumerate(live)),
                    test="chi2",
                    threshold=0.01,
                    kind=drift.NUMERIC,
                )
                return dataclasses.replace(result, details={**result.details, "binned_on": "tfdv_quantiles"})
            return None
        current_values = [str(v) for v in values if v is not None and v != ""]
        if len(current_values) < min_rows or feature not in ref.categorical_counts:
            return None
        return drift.counts_drift(
            feature, ref.categorical_counts[feature], drift.value_counts(current_values), test=test, threshold=threshold
        )

    def evaluate_window(
        self,
        model: str,
        version: int | None,
        rows: list[dict[str, Any]],
        labeled: list[logs.LabeledPrediction],
        window_s: float,
        now: float,
    ) -> WindowResult:
        """Drift checks and metrics of one version's rows in one window."""
        metrics: dict[str, float | None] = {"window_rows": float(len(rows)), "feedback_labels": float(len(labeled))}
        checks: list[DriftCheck] = []
        notes: list[str] = []
        ref = self.reference(model, version) if version is not None else "no version serves"
        if isinstance(ref, str):
            notes.append(f"drift not checked: {ref}")
        elif len(rows) < self.config.drift.min_rows:
            notes.append(
                f"drift not checked: {len(rows)} logged predictions in the window (drift.min_rows = {self.config.drift.min_rows})"
            )
        else:
            results = []
            for feature, kind in ref.features.items():
                try:
                    result = self._feature_check(ref, feature, kind, [r.get("features", {}).get(feature) for r in rows])
                except drift.DriftTestError as exc:
                    notes.append(str(exc))
                    continue
                if result is not None:
                    results.append(result)
                    metrics[FEATURE_METRIC_PREFIX + feature] = float(result.drifted)
            if results:
                metrics["drifted_features"] = float(sum(r.drifted for r in results))
                metrics["drifted_share"] = metrics["drifted_features"] / len(results)
            predictions = [str(r["prediction"]) for r in rows if r.get("prediction") is not None]
            if ref.label_counts and len(predictions) >= self.config.drift.min_rows:
                test, threshold = self.config.drift.prediction
                result = drift.counts_drift(
                    PREDICTION_FEATURE,
                    ref.label_counts,
                    drift.value_counts(predictions),
                    test=test,
                    threshold=threshold,
                )
                results.append(result)
                metrics["prediction_drift"] = float(result.drifted)
            checks = [
                DriftCheck(
                    ts=now,
                    model=model,
                    version=version,
                    window_rows=len(rows),
                    feature=r.feature,
                    kind=r.kind,
                    test=r.test,
                    statistic=r.statistic,
                    threshold=r.threshold,
                    drifted=r.drifted,
                    details={**r.details, "window_s": window_s, "reference": ref.describe()},
                )
                for r in results
            ]
        if labeled:
            for name in ("accuracy", "balanced_accuracy"):
                metrics[name] = rollback.live_metric(labeled, name)
                blessed = (
                    self.registry.version_info(model, version).get("metrics", {}).get(name)
                    if version is not None
                    else None
                )
                if blessed is not None:
                    metrics[f"{name}_drop"] = float(blessed) - metrics[name]
        return WindowResult(window_s, version, metrics, checks, notes)

    # -- rules ---------------------------------------------------------------------------------------

    def _fire(self, rule: Rule, model: str, result: WindowResult, value: float, now: float) -> Alert:
        drifted = [
            {"feature": c.feature, "test": c.test, "statistic": round(c.statistic, 6), "threshold": c.threshold}
            for c in result.checks
            if c.drifted
        ]
        rows = int(result.metrics.get("window_rows") or 0)
        message = f"{rule.describe(value)} over {rows} predictions in the last {_human(result.window_s)}"
        if drifted:
            message += "; drifted: " + ", ".join(d["feature"] for d in drifted)
        evidence = {
            "comparison": rule.comparison,
            "window_s": result.window_s,
            "metrics": result.metrics,
            "drifted": drifted,
            "notes": result.notes,
        }
        alert = Alert(
            ts=now,
            rule=rule.name,
            model=model,
            version=result.version,
            metric=rule.metric,
            value=value,
            threshold=rule.threshold,
            action=rule.action,
            message=message,
            evidence=evidence,
        )
        alert.id = self.store.add_alert(alert)
        outcome: dict[str, Any] = {}
        if rule.action == "retrain" and self.config.retrain is not None:
            outcome["retrain"] = retrain.trigger_retrain(self.store, alert, self.config.retrain, self.launcher, now=now)
            alert.run_id = outcome["retrain"].get("started")
            self.log(f"  alert #{alert.id} {rule.name}: retrain {json.dumps(outcome['retrain'], default=str)}")
        elif rule.action == "rollback":
            try:
                record = rollback.rollback(
                    self.registry,
                    self.store,
                    model,
                    automatic=True,
                    reason=f"alert #{alert.id} {rule.name}: {message}",
                    now=now,
                )
                outcome["rollback"] = {
                    "from_version": record.from_version,
                    "to_version": record.to_version,
                    "rollback_id": record.id,
                }
            except FlywheelError as exc:
                outcome["rollback"] = {"failed": str(exc)}
        sinks = tuple(s for s in (rule.action, *rule.notify) if s in SINKS)
        outcome["sinks"] = notify(alert, sinks, self.config, self.home.root)
        self.store.merge_alert_evidence(alert.id, outcome)
        alert.evidence.update(outcome)
        return alert

    def check_model(self, model: str) -> ModelReport:
        """One pass for one model."""
        now = self.clock()
        version = self.registry.serving_version(model)
        report = ModelReport(model=model, version=version)
        windows = sorted({self.window_s, *(r.window_s for r in self.config.rules)})
        alias = self.registry.serving_info(model) or {}
        served_since = rollback.parse_iso(alias.get("updated_at")) or now
        records = self.source.requests(model, now - max(windows))
        labeled_all = self.source.labeled(model, min(now - max(windows), served_since))
        if version is None and records:  # no alias: judge the version that answered most
            version = Counter(int(r.get("version", 0)) for r in records).most_common(1)[0][0]
            report.version = version
        for window_s in windows:
            start = now - window_s
            rows = [r for r in records if float(r.get("ts", 0)) >= start and int(r.get("version", -1)) == version]
            labeled = [p for p in labeled_all if p.ts >= start and p.version == version]
            result = self.evaluate_window(model, version, rows, labeled, window_s, now)
            report.windows[window_s] = result
            if result.checks:
                self.store.add_drift_checks(result.checks)
            drifted = [c.feature for c in result.checks if c.drifted]
            self.log(
                f"{model} v{version} last {_human(window_s)}: {len(rows)} predictions, {len(labeled)} labels, "
                f"{len(result.checks)} drift checks, drifted: {', '.join(drifted) or 'none'}"
                + "".join(f"\n  note: {n}" for n in result.notes)
            )
        for rule in self.config.rules:
            result = report.windows[rule.window_s]
            value = result.metrics.get(rule.metric)
            basis = "feedback_labels" if "accuracy" in rule.metric else "window_rows"
            if value is None or (result.metrics.get(basis) or 0) < rule.min_rows or not rule.fires(value):
                continue
            last = self.store.last_alert_ts(rule.name, model)
            if last is not None and now - last < rule.cooldown_s:
                self.log(
                    f"  rule {rule.name}: {rule.describe(value)} but in cool-down ({_human(rule.cooldown_s)} "
                    f"since the alert at {time.strftime('%H:%M:%S', time.localtime(last))})"
                )
                continue
            report.alerts.append(self._fire(rule, model, result, value, now))
        if self.config.rollback is not None and not any(a.action == "rollback" for a in report.alerts):
            record, details = rollback.watch_new_version(
                self.registry, self.store, model, labeled_all, self.config.rollback, now=now
            )
            report.rollback = details
            if record is not None:
                self.log(f"  rolled back {model} v{record.from_version} -> v{record.to_version}: {record.reason}")
                for alert in self.store.alerts(model=model, rule=rollback.AUTO_ROLLBACK_RULE, limit=1):
                    notify(alert, (), self.config, self.home.root)
                    report.alerts.append(alert)
        return report

    def run_once(self) -> list[ModelReport]:
        """One pass over the models; a model that fails is reported, the others still run."""
        reports = []
        for model in self.models or self.registry.models():
            try:
                reports.append(self.check_model(model))
            except (FlywheelError, OSError) as exc:
                self.log(f"{model}: monitoring failed: {exc}")
                reports.append(ModelReport(model=model, version=None, error=str(exc)))
        return reports

    def run_forever(
        self, interval_s: float, *, passes: int | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> Iterable[list[ModelReport]]:
        """Runs a pass every ``interval_s`` seconds (``passes`` bounds it, for tests)."""
        done = 0
        while passes is None or done < passes:
            started = self.clock()
            yield self.run_once()
            done += 1
            if passes is None or done < passes:
                sleep(max(0.0, interval_s - (self.clock() - started)))

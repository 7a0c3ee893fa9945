"""Alert rules: the YAML file, its validation, rule evaluation, and the alert sinks.

A rules file (documented example: ``examples/alerts.yaml``)::

    window: 1h                    # default live window of every rule
    drift:                        # per-feature tests on the live window
      numeric: {test: ks, threshold: 0.01}
      categorical: {test: chi2, threshold: 0.01}
      prediction: {test: chi2, threshold: 0.01}
      features: {year: {test: jensen_shannon, threshold: 0.2}}
      min_rows: 100
    sinks:
      file: {path: alerts.jsonl}            # relative paths are under the home
      webhook: {url: "http://127.0.0.1:9000/hook", timeout_s: 5}   # allow_link_local: false
    retrain:
      pipeline: pipelines/training.py
      parameters: {data_path: "newest:/data/incoming/*.csv"}
      max_runs: 2
      period: 24h
    rollback: {metric: accuracy, margin: 0.05, min_labels: 50}
    rules:
      - name: feature-drift
        metric: drifted_share
        comparison: ">="
        threshold: 0.3
        window: 1h
        cooldown: 6h
        action: retrain
        notify: [file, webhook]

Every fired alert is also written to the log sink (one stderr line).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from typing import Any, Callable, Mapping

from flywheel.errors import FlywheelError
from flywheel.monitoring import drift
from flywheel.monitoring.webhook import WebhookError, check_url, post_json

ACTIONS = ("log", "file", "webhook", "retrain", "rollback")
SINKS = ("log", "file", "webhook")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}
# metric -> (what it is, the comparison used when a rule names none)
METRICS: dict[str, tuple[str, str]] = {
    "drifted_features": ("number of features whose drift test fired", ">="),
    "drifted_share": ("drifted features / features checked", ">="),
    "prediction_drift": ("1 if the predicted-class distribution drifted from the training labels, else 0", ">="),
    "accuracy": ("live accuracy from feedback labels", "<"),
    "balanced_accuracy": ("live balanced accuracy from feedback labels", "<"),
    "accuracy_drop": ("blessed accuracy - live accuracy", ">="),
    "balanced_accuracy_drop": ("blessed balanced accuracy - live balanced accuracy", ">="),
    "window_rows": ("logged predictions in the window", ">="),
    "feedback_labels": ("feedback labels in the window", ">="),
}
FEATURE_METRIC_PREFIX = "drift."  # drift.<feature>: 1 if that feature drifted, else 0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class RuleError(FlywheelError):
    """An alert rules file is missing, unreadable or invalid."""


def parse_duration(value: Any, *, field: str = "duration") -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` or a number of seconds -> seconds.

    Raises:
        RuleError: anything else, or a duration that is not > 0.
    """
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else None
    if seconds is None or not seconds > 0 or not math.isfinite(seconds):
        raise RuleError(
            f"The '{field}' must be a positive duration such as 90s, 15m, 1h or 2d (or seconds). Got {value!r} instead."
        )
    return seconds


@dataclasses.dataclass(frozen=True)
class Rule:
    """One alert rule."""

    name: str
    metric: str
    threshold: float
    comparison: str
    window_s: float
    cooldown_s: float
    action: str
    notify: tuple[str, ...] = ()
    min_rows: int = 0

    def fires(self, value: float | None) -> bool:
        """Whether ``value`` breaks the rule (None, a metric not computed, never does)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return COMPARISONS[self.comparison](float(value), self.threshold)

    def describe(self, value: float) -> str:
        return f"{self.metric} = {value:.4g} {self.comparison} {self.threshold:g}"


@dataclasses.dataclass(frozen=True)
class DriftSettings:
    """Which test and threshold the live drift checks use, per kind and per feature."""

    numeric: tuple[str, float] = ("ks", 0.01)
    categorical: tuple[str, float] = ("chi2", 0.01)
    prediction: tuple[str, float] = ("chi2", 0.01)
    features: Mapping[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    min_rows: int = 100

    def for_feature(self, feature: str, kind: str) -> tuple[str, float]:
        if feature in self.features:
            return self.features[feature]
        return self.numeric if kind == drift.NUMERIC else self.categorical


@dataclasses.dataclass(frozen=True)
class RetrainSettings:
    """What a ``retrain`` action starts and how often it may."""

    pipeline: str
    pipeline_name: str | None = None
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    max_runs: int = 1
    period_s: float = 86400.0
    host: str | None = None
    namespace: str | None = None
    experiment: str | None = None
    service_account: str | None = None
    pipeline_root: str | None = None
    image: str | None = None
    registry_pvc: str | None = None
    object_store_secret: str | None = None  # Secret every task of the KFP run gets as env (task_env)
    object_store_endpoint: str | None = None  # FLYWHEEL_S3_ENDPOINT_URL of every task


@dataclasses.dataclass(frozen=True)
class RollbackSettings:
    """When a newly pushed version is rolled back automatically."""

    metric: str = "accuracy"
    margin: float = 0.05
    min_labels: int = 50


@dataclasses.dataclass(frozen=True)
class RulesConfig:
    """A parsed rules file."""

    rules: tuple[Rule, ...] = ()
    window_s: float = 3600.0
    drift: DriftSettings = DriftSettings()
    file_sink: str | None = None
    webhook_url: str | None = None
    webhook_allow_link_local: bool = False
    webhook_timeout_s: float = 5.0
    retrain: RetrainSettings | None = None
    rollback: RollbackSettings | None = None
    source: str = "<defaults>"


# -- loading --------------------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RuleError(f"'{where}' must be a mapping. Got {type(value).__name__} {value!r} instead.")
    return value


def _known_keys(section: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted((k for k in section if k not in allowed), key=str)
    if unknown:
        raise RuleError(f"Unknown key(s) {unknown} in '{where}'; allowed: {list(allowed)}.")


def _number(value: Any, where: str, *, minimum: float | None = None, integer: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        what = "an integer" if integer else "a finite number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise RuleError(f"'{where}' must be {what}{bound}. Got {value!r} instead.")
    return float(value)


def _text(value: Any, where: str, *, example: str) -> str | None:
    """An optional non-empty string setting (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"'{where}' must be a non-empty string such as {example}. Got {value!r} instead.")
    return value


def _choice(value: Any, allowed: Any, where: str) -> Any:
    if not isinstance(value, str) or value not in allowed:
        raise RuleError(f"'{where}' must be one of {list(allowed)}. Got {value!r} instead.")
    return value


def _test_choice(value: Any, kind: str, where: str) -> tuple[str, float]:
    section = _mapping(value, where)
    _known_keys(section, ("test", "threshold"), where)
    test = str(section.get("test", "ks" if kind == drift.NUMERIC else "chi2"))
    default_threshold = 0.01 if test in ("ks", "chi2", "z") else None  # the monitor's live default
    try:
        threshold = drift.check_test(test, kind, section.get("threshold", default_threshold))
    except drift.DriftTestError as exc:
        raise RuleError(f"In '{where}': {exc}") from None
    return str(test), threshold


def _feature_test(value: Any, where: str) -> tuple[str, float]:
    # The feature's kind is known only with the model, so its kind is checked there; here: name and range.
    section = _mapping(value, where)
    test = str(section.get("test", ""))
    if test not in drift.TESTS:
        raise RuleError(f"'{where}.test' must be one of {sorted(drift.TESTS)}. Got {test!r} instead.")
    kind = drift.NUMERIC if test in drift.NUMERIC_TESTS else drift.CATEGORICAL
    return _test_choice(section, kind, where)


def _parse_rule(raw: Any, index: int, default_window: float) -> Rule:
    where = f"rules[{index}]"
    section = _mapping(raw, where)
    _known_keys(
        section,
        ("name", "metric", "threshold", "comparison", "window", "cooldown", "action", "notify", "min_rows"),
        where,
    )
    name = section.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"'{where}.name' must be a non-empty string. Got {name!r} instead.")
    where = f"rule '{name}'"
    metric = section.get("metric")
    if not isinstance(metric, str):
        raise RuleError(f"'{where}.metric' must be a string: one of {sorted(METRICS)} or 'drift.<feature>'. Got {metric!r} instead.")
    is_feature = (
        isinstance(metric, str)
        and metric.startswith(FEATURE_METRIC_PREFIX)
        and len(metric) > len(FEATURE_METRIC_PREFIX)
    )
    if metric not in METRICS and not is_feature:
        raise RuleError(f"Unknown metric {metric!r} in {where}; use one of {sorted(METRICS)} or 'drift.<feature>'.")
    if "threshold" not in section:
        raise RuleError(f"{where} needs a 'threshold' (a number), e.g. threshold: 0.3.")
    threshold = _number(section["threshold"], f"{where}.threshold")
    comparison = _choice(
        section.get("comparison", ">=" if is_feature else METRICS[metric][1]), COMPARISONS, f"{where}.comparison"
    )
    action = section.get("action", "log")
    if not isinstance(action, str) or action not in ACTIONS:
        raise RuleError(f"Unknown action {action!r} in {where}; use one of {list(ACTIONS)}.")
    notify = section.get("notify", [])
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, list) or any(not isinstance(n, str) or n not in SINKS for n in notify):
        raise RuleError(f"'{where}.notify' must be a list of sinks from {list(SINKS)}. Got {notify!r} instead.")
    return Rule(
        name=name.strip(),
        metric=metric,
        threshold=threshold,
        comparison=comparison,
        window_s=parse_duration(section.get("window", default_window), field=f"{where}.window"),
        cooldown_s=parse_duration(section["cooldown"], field=f"{where}.cooldown") if "cooldown" in section else 0.0,
        action=action,
        notify=tuple(dict.fromkeys(notify)),
        min_rows=int(_number(section.get("min_rows", 0), f"{where}.min_rows", minimum=0, integer=True)),
    )


def parse_rules(data: Any, *, source: str = "<dict>") -> RulesConfig:
    """Validates a rules document (the parsed YAML).

    Raises:
        RuleError: naming the key, the value received and what is allowed.
    """
    top = _mapping(data, "the rules file")
    _known_keys(top, ("window", "drift", "sinks", "retrain", "rollback", "rules"), "the rules file")
    window_s = parse_duration(top.get("window", "1h"), field="window")

    drift_raw = _mapping(top.get("drift"), "drift")
    _known_keys(drift_raw, ("numeric", "categorical", "prediction", "features", "min_rows"), "drift")
    features_raw = _mapping(drift_raw.get("features"), "drift.features")
    for name in features_raw:
        if not isinstance(name, str):
            raise RuleError(f"'drift.features' keys must be feature names (strings). Got {name!r} instead.")
    drift_settings = DriftSettings(
        numeric=_test_choice(drift_raw.get("numeric"), drift.NUMERIC, "drift.numeric"),
        categorical=_test_choice(drift_raw.get("categorical"), drift.CATEGORICAL, "drift.categorical"),
        prediction=_test_choice(drift_raw.get("prediction"), drift.CATEGORICAL, "drift.prediction"),
        # A per-feature test must suit the feature's kind; that is checked when the model is known.
        features={name: _feature_test(v, f"drift.features.{name}") for name, v in features_raw.items()},
        min_rows=int(_number(drift_raw.get("min_rows", 100), "drift.min_rows", minimum=1, integer=True)),
    )

    sinks = _mapping(top.get("sinks"), "sinks")
    _known_keys(sinks, ("file", "webhook"), "sinks")
    file_section = _mapping(sinks.get("file"), "sinks.file")
    _known_keys(file_section, ("path",), "sinks.file")
    file_sink = _text(file_section.get("path"), "sinks.file.path", example="alerts.jsonl")
    if file_sink is not None and "\x00" in file_sink:
        raise RuleError(f"'sinks.file.path' must not contain a NUL character. Got {file_sink!r} instead.")
    webhook = _mapping(sinks.get("webhook"), "sinks.webhook")
    _known_keys(webhook, ("url", "timeout_s", "allow_link_local"), "sinks.webhook")
    allow_link_local = webhook.get("allow_link_local", False)
    if not isinstance(allow_link_local, bool):
        raise RuleError(f"'sinks.webhook.allow_link_local' must be true or false. Got {allow_link_local!r} instead.")
    url = webhook.get("url")
    if url is not None:
        try:
            url = check_url(url, allow_link_local=allow_link_local)
        except WebhookError as exc:
            raise RuleError(str(exc)) from None

    retrain = None
    if top.get("retrain") is not None:
        raw = _mapping(top["retrain"], "retrain")
        fields = (
            "pipeline",
            "pipeline_name",
            "parameters",
            "max_runs",
            "period",
            "host",
            "namespace",
            "experiment",
            "service_account",
            "pipeline_root",
            "image",
            "registry_pvc",
            "object_store_secret",
            "object_store_endpoint",
        )
        _known_keys(raw, fields, "retrain")
        if not isinstance(raw.get("pipeline"), str) or not raw["pipeline"]:
            raise RuleError(
                f"'retrain.pipeline' must name a pipeline file, e.g. pipelines/training.py. Got {raw.get('pipeline')!r} instead."
            )
        parameters = _mapping(raw.get("parameters"), "retrain.parameters")
        for key in parameters:
            if not isinstance(key, str) or not key:
                raise RuleError(f"'retrain.parameters' keys must be parameter names (strings). Got {key!r} instead.")
        examples = {
            "pipeline_name": "training",
            "host": "https://kfp.example.com",
            "namespace": "kubeflow",
            "experiment": "retraining",
            "service_account": "pipeline-runner",
            "pipeline_root": "s3://bucket/root",
            "image": "registry.example.com/flywheel:1.0",
            "registry_pvc": "flywheel-registry",
            "object_store_secret": "flywheel-object-store",
            "object_store_endpoint": "http://minio-service.kubeflow:9000",
        }
        retrain = RetrainSettings(
            pipeline=raw["pipeline"],
            parameters=parameters,
            max_runs=int(_number(raw.get("max_runs", 1), "retrain.max_runs", minimum=1, integer=True)),
            period_s=parse_duration(raw.get("period", "24h"), field="retrain.period"),
            **{key: _text(raw.get(key), f"retrain.{key}", example=example) for key, example in examples.items()},
        )
        if retrain.object_store_secret or retrain.object_store_endpoint:
            from flywheel.kubeflow.errors import KubeflowCompileError
            from flywheel.kubeflow.task_env import ObjectStoreEnv

            try:  # checked when the rules are read, not when an alert fires
                ObjectStoreEnv(retrain.object_store_secret, retrain.object_store_endpoint)
            except KubeflowCompileError as exc:
                raise RuleError(f"'retrain.object_store_*': {exc}") from None

    rollback = None
    if top.get("rollback") is not None:
        raw = _mapping(top["rollback"], "rollback")
        _known_keys(raw, ("metric", "margin", "min_labels"), "rollback")
        metric = _choice(raw.get("metric", "accuracy"), ("accuracy", "balanced_accuracy"), "rollback.metric")
        rollback = RollbackSettings(
            metric=metric,
            margin=_number(raw.get("margin", 0.05), "rollback.margin", minimum=0),
            min_labels=int(_number(raw.get("min_labels", 50), "rollback.min_labels", minimum=1, integer=True)),
        )

    raw_rules = top.get("rules") or []
    if not isinstance(raw_rules, list):
        raise RuleError(f"'rules' must be a list of rules. Got {type(raw_rules).__name__} instead.")
    rules = tuple(_parse_rule(r, i, window_s) for i, r in enumerate(raw_rules))
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleError(f"Rule names must be unique (cool-downs are kept per name); repeated: {duplicates}.")
    for rule in rules:
        if rule.action == "retrain" and retrain is None:
            raise RuleError(
                f"Rule '{rule.name}' has action 'retrain' but the file has no 'retrain:' section (pipeline, parameters)."
            )
        needed = [s for s in (rule.action, *rule.notify) if s in ("file", "webhook")]
        if "webhook" in needed and not url:
            raise RuleError(f"Rule '{rule.name}' sends to the webhook sink but 'sinks.webhook.url' is not set.")
    return RulesConfig(
        rules=rules,
        window_s=window_s,
        drift=drift_settings,
        file_sink=file_sink,
        webhook_url=url,
        webhook_allow_link_local=allow_link_local,
        webhook_timeout_s=_number(webhook.get("timeout_s", 5.0), "sinks.webhook.timeout_s", minimum=0.1),
        retrain=retrain,
        rollback=rollback,
        source=source,
    )


def load_rules(path: str) -> RulesConfig:
    """Reads and validates a rules YAML file.

    Raises:
        RuleError: the file is missing, is not YAML, or is invalid.
    """
    import yaml

    if not os.path.isfile(path):
        raise RuleError(f"No rules file at {path}. See examples/alerts.yaml for the format.")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except UnicodeDecodeError as exc:
        raise RuleError(
            f"The rules file {path} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
            "save it as UTF-8."
        ) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"The rules file {path} is not valid YAML: {exc}") from None
    except OSError as exc:
        raise RuleError(f"The rules file {path} cannot be read: {exc.strerror or exc}.") from None
    try:
        return parse_rules(data or {}, source=os.path.abspath(path))
    except RuleError as exc:
        raise RuleError(f"{path}: {exc}") from None


# -- sinks ----------------------------------------------------------------------------------------


def alert_document(alert: Any) -> dict[str, Any]:
    """The JSON form of a stored ``Alert`` that file and webhook sinks send."""
    return {
        "id": alert.id,
        "ts": alert.ts,
        "rule": alert.rule,
        "model": alert.model,
        "version": alert.version,
        "metric": alert.metric,
        "value": alert.value,
        "threshold": alert.threshold,
        "action": alert.action,
        "message": alert.message,
        "run_id": alert.run_id,
        "evidence": alert.evidence,
    }


def send_log(alert: Any) -> None:
    print(
        f"flywheel alert #{alert.id} [{alert.rule}] model {alert.model} v{alert.version}: {alert.message}",
        file=sys.stderr,
        flush=True,
    )


def send_file(alert: Any, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(alert_document(alert), default=str, sort_keys=True) + "\n")


def send_webhook(alert: Any, url: str, *, timeout_s: float = 5.0, allow_link_local: bool = False) -> int:
    """POSTs the alert as JSON (``flywheel.monitoring.webhook``: checked URL, no redirects); returns the status.

    Raises:
        WebhookError: the URL or the address it resolves to is refused, or the answer is a redirect.
        OSError: connection refused, timeout, or a non-2xx answer
            (``urllib.error.HTTPError`` is an ``OSError``).
    """
    return post_json(url, alert_document(alert), timeout_s=timeout_s, allow_link_local=allow_link_local)


def notify(alert: Any, sinks: tuple[str, ...], config: RulesConfig, home_root: str) -> dict[str, str]:
    """Sends an alert to each sink; a failing sink is reported, never raised.

    Returns:
        sink -> "ok" or the error message.
    """
    outcome: dict[str, str] = {}
    for sink in dict.fromkeys(("log", *sinks)):
        try:
            if sink == "log":
                send_log(alert)
            elif sink == "file":
                path = config.file_sink or "alerts.jsonl"
                send_file(alert, path if os.path.isabs(path) else os.path.join(home_root, path))
            elif sink == "webhook":
                send_webhook(
                    alert,
                    str(config.webhook_url),
                    timeout_s=config.webhook_timeout_s,
                    allow_link_local=config.webhook_allow_link_local,
                )
            outcome[sink] = "ok"
        except (OSError, ValueError, WebhookError) as exc:
            outcome[sink] = f"failed: {type(exc).__name__}: {exc}"
            print(
                f"flywheel monitor: alert #{alert.id} could not be sent to the {sink} sink: {exc}",
                file=sys.stderr,
                flush=True,
            )
    return outcome

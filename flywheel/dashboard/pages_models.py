"""The Model pages: registry versions, which serves, blessing, evaluation, curves, comparison.

A version's ``version.json`` names the train output it came from
(``source_uri``); ML Metadata leads from that Model artifact to the evaluate
execution that consumed it, whose outputs hold ``evaluation.json`` (metrics
overall and per slice, confusion matrix), ``metrics.json`` (KFP
ClassificationMetrics: ROC points) and ``blessing.json``. Precision-recall
curves are derived from the ROC points and the class counts:
precision = recall*P / (recall*P + fpr*N).
"""

from __future__ import annotations

import json
from typing import Any

from flywheel import storage
from flywheel.dashboard import charts
from flywheel.dashboard.sources import PageNotFound, Sources, id_number, model_name, serving_version
from flywheel.errors import FlywheelError

HEADLINE = ("accuracy", "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc_ovr", "average_precision")
SLICE_METRICS = ("count", "accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr")


def _read_json(path: str) -> dict[str, Any] | None:
    """A JSON object from a file or object URI, or None when it is missing, unreadable or not an object."""
    try:
        if storage.is_object_uri(path):
            data = storage.read_json(path)
        else:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
    except (OSError, ValueError, FlywheelError):
        return None
    return data if isinstance(data, dict) else None


def _version_json(registry: Any, name: str, version: int, relative: str) -> dict[str, Any] | None:
    """A JSON object stored in a registry version (a directory or an object store), or None when unreadable."""
    try:
        data = registry.read_version_json(name, version, relative)
    except FlywheelError:
        return None
    return data if isinstance(data, dict) else None


def models_page(sources: Sources) -> dict[str, Any]:
    """Every model in the registry with its versions and the serving one."""
    registry = sources.registry()
    models = []
    for name in registry.models():
        versions = registry.versions(name)
        models.append({"name": name, "versions": versions, "serving": serving_version(registry, name)[0]})
    return {"models": models, "registry": registry.root}


def _evaluation_outputs(sources: Sources, source_uri: str) -> dict[str, Any]:
    """The evaluate outputs (and the producing run) for a train output, found through lineage."""
    found: dict[str, Any] = {"run_id": None, "node_id": None, "artifacts": {}}
    if not source_uri or not sources.has_metadata:
        return found
    with sources.lock:
        store = sources.metadata()
        try:
            model = store.get_artifact(source_uri)
        except FlywheelError:
            return found
        producers = store.lineage(model.id, direction="upstream", max_depth=1)
        consumers = store.lineage(model.id, direction="downstream", max_depth=1)
    found["model_artifact"] = model
    if producers:
        found["run_id"], found["node_id"] = producers[0].run_id, producers[0].node_id
    for execution in consumers:
        types = {a.type: a for a in execution.outputs.values()}
        if "ModelEvaluation" in types and execution.state in ("COMPLETE", "CACHED"):
            found["artifacts"] = types
            found["evaluate_run"] = execution.run_id
    return found


def _pr_points(roc: list[dict[str, float]], positives: float, negatives: float) -> tuple[list[float], list[float | None]]:
    recall, precision = [], []
    for point in roc:
        r, f = float(point.get("recall", 0.0)), float(point.get("falsePositiveRate", 0.0))
        tp, fp = r * positives, f * negatives
        recall.append(r)
        precision.append(tp / (tp + fp) if tp + fp > 0 else 1.0)
    return recall, precision


def curves(evaluation: dict[str, Any] | None, classification: dict[str, Any] | None) -> dict[str, Any]:
    """ROC and precision-recall charts (per class and micro-averaged)."""
    if not classification:
        return {"roc": charts.empty_chart("no ROC points recorded"), "pr": charts.empty_chart("no ROC points recorded")}
    overall = (evaluation or {}).get("overall", {})
    per_class = overall.get("per_class", {})
    count = float(overall.get("count") or 0)
    n_classes = len((evaluation or {}).get("class_names") or per_class) or 2
    roc_series, pr_series = [], []
    for name, points in (classification.get("rocCurves") or {}).items():
        roc_series.append(charts.Series(str(name), [p["falsePositiveRate"] for p in points], [p["recall"] for p in points]))
        support = float(per_class.get(name, {}).get("support") or 0)
        if support and count:
            r, p = _pr_points(points, support, count - support)
            pr_series.append(charts.Series(str(name), r, p))
    micro = classification.get("confidenceMetrics") or []
    if micro:
        roc_series.append(charts.Series("micro-average", [p["falsePositiveRate"] for p in micro], [p["recall"] for p in micro], color="#0f172a", dashed=True))
        if count:
            r, p = _pr_points(micro, count, count * (n_classes - 1))
            pr_series.append(charts.Series("micro-average", r, p, color="#0f172a", dashed=True))
    unit = (0.0, 1.0)
    return {
        "roc": charts.line_chart(roc_series, title="ROC", x_label="false positive rate", y_label="true positive rate",
                                 x_range=unit, y_range=unit, diagonal=True, width=420, height=360),
        "pr": charts.line_chart(pr_series, title="Precision–recall", x_label="recall", y_label="precision",
                                x_range=unit, y_range=(0.0, 1.02), width=420, height=360)
        if pr_series else charts.empty_chart("precision–recall needs class counts"),
    }


def learning_curves(history: dict[str, Any] | None) -> dict[str, Any]:
    """Loss and accuracy per epoch (train solid, validation dashed) with the kept epoch marked."""
    if not history or not history.get("history"):
        return {"loss": charts.empty_chart("no training history"), "accuracy": None}
    data = history["history"]
    best = history.get("best_epoch")
    marks = [(float(best), f"kept epoch {best}")] if best else []
    out: dict[str, Any] = {}
    for metric in ("loss", "accuracy"):
        series = []
        for key, dashed, color in ((metric, False, "#2563eb"), (f"val_{metric}", True, "#f97316")):
            values = data.get(key)
            if values:
                series.append(charts.Series("validation" if dashed else "train", list(range(1, len(values) + 1)), values, color=color, dashed=dashed))
        out[metric] = charts.line_chart(series, title=metric, x_label="epoch", vlines=marks, width=420, height=260) if series else None
    return out


def version_view(sources: Sources, name: str, version: int) -> dict[str, Any]:
    """Everything known about one version, for the model page and the comparison."""
    registry = sources.registry()
    try:
        info = registry.version_info(name, version)
    except (FlywheelError, OSError, ValueError) as exc:
        raise PageNotFound(f"Model '{name}' has no readable version {version}: {exc}") from exc
    if not isinstance(info, dict):
        raise PageNotFound(
            f"Version {version} of model '{name}' has a damaged version.json (a JSON {type(info).__name__}, "
            "not an object); push that model again or remove the version directory."
        )
    meta = info.get("metadata") or {}
    props = meta.get("model_properties") or {}
    history = _version_json(registry, name, version, "history.json")
    lineage = _evaluation_outputs(sources, info.get("source_uri", ""))
    artifacts = lineage["artifacts"]
    evaluation = _read_json(storage.join(artifacts["ModelEvaluation"].uri, "evaluation.json")) if "ModelEvaluation" in artifacts else None
    classification = (
        _read_json(storage.join(artifacts["ClassificationMetrics"].uri, "metrics.json")) if "ClassificationMetrics" in artifacts else None
    )
    blessing = _read_json(storage.join(artifacts["ModelBlessing"].uri, "blessing.json")) if "ModelBlessing" in artifacts else None
    if history is None and lineage.get("model_artifact") is not None:
        history = _read_json(storage.join(lineage["model_artifact"].uri, "history.json"))
    overall = (evaluation or {}).get("overall") or {}
    confusion = overall.get("confusion_matrix") or {}
    slices = []
    for feature, values in sorted(((evaluation or {}).get("slices") or {}).items()):
        for value, metrics in sorted(values.items()):
            slices.append({"feature": feature, "value": value, "metrics": metrics})
    return {
        "version": version,
        "info": info,
        "metrics": info.get("metrics") or {k: overall.get(k) for k in HEADLINE if k in overall},
        "reasons": (blessing or {}).get("reasons") or meta.get("blessing_reasons") or [],
        "blessed": (blessing or {}).get("blessed", True if meta.get("blessing_reasons") else None),
        "thresholds": (blessing or {}).get("thresholds") or (evaluation or {}).get("thresholds") or {},
        "diagnosis": (history or {}).get("diagnosis") or props.get("diagnosis"),
        "diagnosis_detail": (history or {}).get("detail") or props.get("diagnosis_detail") or "",
        "properties": props,
        "evaluation": evaluation,
        "slices": slices,
        "confusion": charts.confusion_matrix([str(x) for x in confusion.get("labels", [])], confusion.get("matrix", []))
        if confusion else charts.empty_chart("no confusion matrix recorded"),
        "curves": curves(evaluation, classification),
        "learning": learning_curves(history),
        "run_id": lineage["run_id"],
        "artifacts": artifacts,
        "model_artifact": lineage.get("model_artifact"),
    }


def _versions_table(sources: Sources, name: str) -> tuple[list[dict[str, Any]], int | None, dict[str, Any] | None]:
    registry = sources.registry()
    model_name(sources, name)
    try:
        versions = registry.versions(name)
    except FlywheelError as exc:
        raise PageNotFound(str(exc)) from exc
    if not versions:
        raise PageNotFound(f"No model named '{name}' in the registry {registry.root}.")
    serving, damage = serving_version(registry, name)
    rows = []
    for v in reversed(versions):
        try:
            info = registry.version_info(name, v)
        except (FlywheelError, OSError, ValueError):
            info = {}
        if not isinstance(info, dict):  # a damaged version.json: the row shows no metrics
            info = {}
        rows.append({"version": v, "serving": v == serving, "pushed_at": info.get("pushed_at", "-"), "metrics": info.get("metrics") or {},
                     "diagnosis": ((info.get("metadata") or {}).get("model_properties") or {}).get("diagnosis", "-")})
    if damage:
        return rows, serving, {"damaged": damage, "history": []}
    return rows, serving, registry.serving_info(name)


def model_page(sources: Sources, name: str, args: dict[str, str]) -> dict[str, Any]:
    """One model: its versions, the serving one and its history, and one version in detail."""
    rows, serving, alias = _versions_table(sources, name)
    chosen = args.get("version", "")
    version = id_number(chosen, "Model versions") if chosen else (serving or rows[0]["version"])
    if version not in [r["version"] for r in rows]:
        raise PageNotFound(f"Model '{name}' has no version {version}; versions: {[r['version'] for r in rows]}.")
    metric_names = sorted({k for r in rows for k in r["metrics"]}, key=lambda k: (k not in HEADLINE, HEADLINE.index(k) if k in HEADLINE else 0, k))
    return {
        "name": name,
        "rows": rows,
        "serving": serving,
        "alias": alias,
        "metric_names": metric_names[:6],
        "view": version_view(sources, name, version),
        "slice_metrics": SLICE_METRICS,
    }


def compare_page(sources: Sources, name: str, args: dict[str, str]) -> dict[str, Any]:
    """Two versions side by side: metrics with their difference, blessing, diagnosis, plots."""
    rows, serving, _alias = _versions_table(sources, name)
    known = [r["version"] for r in rows]
    a_text, b_text = args.get("a", ""), args.get("b", "")
    a = id_number(a_text, "Model versions") if a_text else (known[1] if len(known) > 1 else known[0])
    b = id_number(b_text, "Model versions") if b_text else known[0]
    for v in (a, b):
        if v not in known:
            raise PageNotFound(f"Model '{name}' has no version {v}; versions: {sorted(known)}.")
    left, right = version_view(sources, name, a), version_view(sources, name, b)
    names = sorted(set(left["metrics"]) | set(right["metrics"]), key=lambda k: (k not in HEADLINE, HEADLINE.index(k) if k in HEADLINE else 0, k))
    metrics = []
    for key in names:
        x, y = left["metrics"].get(key), right["metrics"].get(key)
        delta = y - x if isinstance(x, (int, float)) and isinstance(y, (int, float)) else None
        metrics.append({"name": key, "a": x, "b": y, "delta": delta})
    slice_keys = sorted({(s["feature"], s["value"]) for s in left["slices"] + right["slices"]})
    by_slice = {side: {(s["feature"], s["value"]): s["metrics"] for s in view["slices"]} for side, view in (("a", left), ("b", right))}
    slices = []
    for key in slice_keys:
        x = (by_slice["a"].get(key) or {}).get("balanced_accuracy")
        y = (by_slice["b"].get(key) or {}).get("balanced_accuracy")
        delta = y - x if isinstance(x, (int, float)) and isinstance(y, (int, float)) else None
        slices.append({"feature": key[0], "value": key[1], "a": x, "b": y, "delta": delta})
    return {"name": name, "a": left, "b": right, "metrics": metrics, "slices": slices, "versions": known, "serving": serving}

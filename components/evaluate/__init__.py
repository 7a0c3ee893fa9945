"""evaluate: metrics overall and per slice, and the blessing decision.

Metrics come from scikit-learn, not TensorFlow Model Analysis: TFMA runs a
Beam pipeline per call (~3.5 s cold, ~2.2 s warm, +0.95 s import, measured on
this stack), too slow for a six-step pipeline that must finish in 15 s; see
``evaluate/classification.py`` for the numbers and how to re-measure them.

A model is blessed when both hold:

* absolute thresholds: every ``thresholds[metric]`` is met (metric >= value);
* no regression: against the model that serves now in the registry, scored
  on the same eval split, no metric of ``compare_metrics`` drops by more than
  ``max_regression``. With nothing serving, this check passes.

Table splits are scored in batches of ``EVAL_BATCH_ROWS`` rows (shard after
shard), so memory does not grow with the split: counts, accuracy, precision,
recall, F1, the confusion matrix and every slice are exact; ROC-AUC and
average precision are exact up to ``classification.EXACT_ROWS`` rows and
binned beyond, with the bound on the ROC-AUC error stated in the result
(``auc_method``, ``auc_bins``, ``roc_auc_max_error``; see ``classification.py``).
Image Examples are scored the same way on their pixels (``images.npy``, read
whole); slices do not apply to images and are skipped with a note.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Iterator

from flywheel.dsl.artifacts import ClassificationMetrics, Examples, Markdown, Model, ModelBlessing, ModelEvaluation
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval, rule
from flywheel.errors import DataSanityError, FlywheelError

from flywheel.components import examples_io
from flywheel.components.data import sanity

from . import classification
from flywheel.models import features

# Rows per batch a table split is scored in (memory is bounded by the batch, not the split).
EVAL_BATCH_ROWS = 65_536


@rule
def metric_thresholds(value: Any) -> bool:
    return isinstance(value, dict) and all(
        m in classification.SCALAR_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
        for m, v in value.items()
    )


@rule
def metric_names(value: Any) -> bool:
    return isinstance(value, list) and all(m in classification.SCALAR_METRICS for m in value)


metric_thresholds.__doc__ = f"a dict of metric name -> minimum number, names from {list(classification.SCALAR_METRICS)}"
metric_names.__doc__ = f"a list of metric names from {list(classification.SCALAR_METRICS)}"


@component(resources={"cpu": "1", "memory": "2Gi", "memory_limit": "4Gi"})
def evaluate(
    examples: Input[Examples],
    model: Input[Model],
    evaluation: Output[ModelEvaluation],
    blessing: Output[ModelBlessing],
    metrics: Output[ClassificationMetrics],
    summary: Output[Markdown],
    slice_features: list = [],  # noqa: B006 - component defaults are recorded, never mutated
    thresholds: Annotated[dict, metric_thresholds] = {"balanced_accuracy": 0.8},  # noqa: B006
    registry: str = "",
    model_name: str = "",
    max_regression: Annotated[float, Interval(float, 0, None)] = 0.02,
    compare_metrics: Annotated[list, metric_names] = ["balanced_accuracy", "accuracy"],  # noqa: B006
    label: str = "",
    split: str = "eval",
    allow_label_change: bool = False,
) -> None:
    """Scores a trained model on the eval split and decides whether to bless it.

    Args:
        examples: Examples with the ``split`` split (``eval``).
        model: Output of ``train`` (``model.keras`` and ``model.json``).
        evaluation: Receives ``evaluation.json`` (overall, per slice, baseline); its
            properties are only the scalar metrics and ``eval_rows`` (numbers), so
            the KFP UI shows them as ``system.Metrics``.
        blessing: Receives ``blessing.json``; properties ``blessed`` and ``reasons``.
        metrics: Receives ``metrics.json`` in KFP's ClassificationMetrics shape
            (confusion matrix and the micro-averaged ROC curve as ``confidenceMetrics``).
        summary: Receives ``summary.md``: metrics, the blessing and its reasons,
            the baseline and the slices, which the KFP UI renders as Markdown.
        slice_features: Columns to slice by; one that the data lacks is
            skipped and the skip noted in ``evaluation.json``.
        thresholds: Minimum value per metric (one of ``evaluate.classification.SCALAR_METRICS``).
        registry: Registry directory; "" means the flywheel home's registry.
        model_name: Registry name whose serving version is the baseline; ""
            means the Examples' ``dataset_name`` (recorded on the blessing);
            with neither, nothing is compared.
        max_regression: Largest allowed drop of a compared metric versus the baseline.
        compare_metrics: Metrics compared with the baseline.
        label: Label column; defaults to the Examples' ``label`` property.
        split: Split to evaluate on.
        allow_label_change: Accept a serving version whose label vocabulary
            differs (classes added or removed on purpose): the regression
            check is then skipped, with a note. Without it such a baseline
            stops evaluate.

    Raises:
        ParameterError: a threshold or compared metric is unknown, or
            ``max_regression`` is negative.
        DataSanityError: the serving version predicts other classes than
            the model and ``allow_label_change`` is false.
    """
    started = time.perf_counter()
    # "" (a pipeline run with its defaults, as a KFP run from the UI is): the data's name, as ingest recorded it
    model_name = model_name or str(examples.properties.get("dataset_name") or "")
    spec = features.read_json(model.path(features.MODEL_JSON))
    label_name = label or spec.get("label") or examples_io.label_of(examples)
    image = examples_io.is_image(examples)
    columns = examples_io.split_columns(examples, split)
    if label_name not in columns:
        raise FlywheelError(f"The label column '{label_name}' is not in the {split} split (columns: {columns}).")
    class_names = spec["label_vocabulary"]

    from flywheel.models import layers as model_layers

    candidate = model_layers.load_model(model.path(features.MODEL_FILE))
    # No name (Examples without a dataset name, and none given): nothing to compare with.
    baseline = (
        _baseline(registry, model_name, class_names=class_names, allow_label_change=allow_label_change)
        if model_name else None
    )
    served = baseline.pop("model", None) if baseline else None
    served_scores = None if served is None else classification.MetricsAccumulator(served[1]["label_vocabulary"])
    scores = classification.MetricsAccumulator(class_names)
    slicer = None if image else classification.SliceAccumulator(class_names, slice_features, columns)
    for frame, images in _scored_batches(examples, split, label_name, image):
        y_true = frame[label_name].astype(str).tolist()
        proba = predict_proba(candidate, frame, spec, images=images)
        scores.update(y_true, proba)
        if slicer is not None:
            slicer.update(frame, y_true, proba)
        if served is not None:
            try:
                served_scores.update(y_true, predict_proba(served[0], frame, served[1], images=images))
            except FlywheelError as exc:
                # A served model trained on other features cannot score this data; the comparison is then moot.
                baseline["error"] = f"served version {baseline['version']}: {exc}"
                served = served_scores = None
    overall = scores.result()
    if image:
        slices, notes = {}, [f"slices do not apply to image Examples; slice_features {list(slice_features)} skipped"]
    else:
        slices, notes = slicer.result()
    if served_scores is not None:
        baseline["overall"] = classification.headline(served_scores.result())

    reasons, blessed = decide(
        classification.headline(overall),
        thresholds,
        baseline_metrics=None if baseline is None or "overall" not in baseline else baseline["overall"],
        baseline_version=None if baseline is None else baseline["version"],
        compare_metrics=compare_metrics,
        max_regression=max_regression,
    )
    if baseline is not None and "error" in baseline:
        reasons.append(f"regression check skipped: {baseline['error']}")
    seconds = round(time.perf_counter() - started, 3)

    report = {
        "model_uri": model.uri,
        "split": split,
        "label": label_name,
        "class_names": class_names,
        "overall": overall,
        "slices": slices,
        "notes": notes,
        "baseline": baseline,
        "thresholds": thresholds,
        "max_regression": max_regression,
        "compare_metrics": compare_metrics,
        "engine": "scikit-learn",
        "seconds": seconds,
    }
    features.write_json(evaluation.path("evaluation.json"), report)
    # Numbers only: KFP shows every metadata entry of a system.Metrics artifact as a scalar metric
    # (kfp's Metrics.log_metric); slices, baseline and blessing live in evaluation.json and the blessing.
    evaluation.properties.update(
        {
            **{k: float(v) for k, v in classification.headline(overall).items() if v is not None},
            "eval_rows": int(overall["count"]),
        }
    )
    decision = {
        "blessed": blessed,
        "reasons": reasons,
        "metrics": classification.headline(overall),
        "thresholds": thresholds,
        "baseline_version": None if baseline is None else baseline["version"],
        "model_uri": model.uri,
    }
    features.write_json(blessing.path("blessing.json"), decision)
    blessing.properties.update(
        {
            "blessed": blessed,
            "reasons": reasons,
            "metrics": {k: v for k, v in decision["metrics"].items() if v is not None},
            "baseline_version": decision["baseline_version"],
            "model_name": model_name,
            "model_uri": model.uri,
        }
    )
    _write_classification_metrics(metrics, overall, scores)
    with open(summary.path("summary.md"), "w", encoding="utf-8") as f:
        f.write(markdown_summary(report, decision))


def predict_proba(keras_model: Any, frame: Any, spec: dict[str, Any], images: Any = None) -> Any:
    """Class probabilities of a flywheel model for the raw features in ``frame`` (or raw ``images``).

    Raises:
        FlywheelError: the model and the data disagree on their kind (image vs table) or image shape.
    """
    import numpy as np

    from flywheel.models import images as image_models

    if not len(frame):
        return np.zeros((0, len(spec["label_vocabulary"])), dtype="float32")
    if image_models.is_image_spec(spec) != (images is not None):
        raise FlywheelError(
            f"The model takes {'images' if image_models.is_image_spec(spec) else 'table rows'} but the data holds "
            f"{'images' if images is not None else 'table rows'}; evaluate a model on the kind of data it was trained on."
        )
    if images is not None:
        if list(images.shape[1:]) != list(spec["image_shape"]):
            raise FlywheelError(
                f"The model takes images of shape {spec['image_shape']}; the data's are {list(images.shape[1:])}."
            )
        return np.asarray(keras_model.predict(image_models.pixels(images), batch_size=1024, verbose=0))
    return np.asarray(keras_model.predict(features.raw_inputs(frame, spec), batch_size=1024, verbose=0))


def _baseline(
    registry: str, model_name: str, *, class_names: list[str], allow_label_change: bool
) -> dict[str, Any] | None:
    """The registry's serving version to score on the same rows; None when nothing serves.

    Returns ``{"version", "registry", "model": (keras model, model.json)}`` (evaluate scores it batch by
    batch and replaces "model" with "overall"), or ``{"version", "registry", "error"}`` when it cannot compare.

    Raises:
        DataSanityError: the serving version predicts other classes than
            ``class_names`` and ``allow_label_change`` is false.
    """
    from flywheel.home import Home
    from flywheel.registry import ModelRegistry

    store = ModelRegistry(registry or Home.resolve().registry)
    version = store.serving_version(model_name)
    if version is None:
        return None
    spec = store.read_version_json(model_name, version, features.MODEL_JSON)  # a directory or an object store
    try:
        sanity.check_same_vocabulary(class_names, spec["label_vocabulary"], version=version, model_name=model_name)
    except DataSanityError as exc:
        if not allow_label_change:
            raise
        return {"version": version, "registry": store.root, "error": f"allow_label_change=true: {exc}"}
    return {"version": version, "registry": store.root, "model": (store.load_keras(model_name, version), spec)}


def _scored_batches(examples: Examples, split: str, label_name: str, image: bool) -> Iterator[tuple[Any, Any]]:
    """(frame, images or None) of the rows with a label: image splits whole, table splits in batches of EVAL_BATCH_ROWS."""
    if image:
        images, frame = examples_io.read_images(examples, split)
        present = frame[label_name].notna().to_numpy()
        yield frame[present].reset_index(drop=True), images[present]
        return
    for frame in examples_io.iter_split_batches(examples, split, batch_rows=EVAL_BATCH_ROWS):
        present = frame[label_name].notna().to_numpy()
        if present.any():
            yield frame[present].reset_index(drop=True), None


def decide(
    candidate: dict[str, float | None],
    thresholds: dict[str, float],
    *,
    baseline_metrics: dict[str, float | None] | None,
    baseline_version: int | None,
    compare_metrics: list[str],
    max_regression: float,
) -> tuple[list[str], bool]:
    """The blessing rule: absolute thresholds, then no regression against the baseline.

    Returns:
        ``(reasons, blessed)``: when refused, the reasons are the failed
        checks; when blessed, the checks that passed.
    """
    failed: list[str] = []
    passed: list[str] = []
    for metric, minimum in thresholds.items():
        value = candidate.get(metric)
        if value is None or value < minimum:
            failed.append(f"{metric} {_fmt(value)} is below the threshold {minimum}")
        else:
            passed.append(f"{metric} {_fmt(value)} >= threshold {minimum}")
    if baseline_metrics is None:
        if baseline_version is None:
            passed.append("no model serves yet; nothing to compare with")
    else:
        for metric in compare_metrics:
            new, old = candidate.get(metric), baseline_metrics.get(metric)
            if old is None:
                continue
            if new is None or new < old - max_regression:
                failed.append(
                    f"{metric} {_fmt(new)} is worse than the serving version {baseline_version} "
                    f"({_fmt(old)}) by more than max_regression {max_regression}"
                )
            else:
                passed.append(f"{metric} {_fmt(new)} vs serving version {baseline_version} {_fmt(old)}: no regression")
    return (failed, False) if failed else (passed, True)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _write_classification_metrics(
    artifact: ClassificationMetrics, overall: dict[str, Any], scores: classification.MetricsAccumulator
) -> None:
    """KFP's ClassificationMetrics: confusion matrix and ROC points, in ``metrics.json`` and properties."""
    document: dict[str, Any] = {"confusionMatrix": None, "confidenceMetrics": [], "rocCurves": {}}
    if overall["confusion_matrix"] is not None:
        document["confusionMatrix"] = classification.kfp_confusion_matrix(overall["confusion_matrix"])
        micro, per_class = scores.roc_curves()
        document["confidenceMetrics"] = micro
        document["rocCurves"] = per_class
    features.write_json(artifact.path("metrics.json"), document)
    artifact.properties.update(
        {"confusionMatrix": document["confusionMatrix"], "confidenceMetrics": document["confidenceMetrics"]}
    )


def markdown_summary(report: dict[str, Any], decision: dict[str, Any]) -> str:
    """The evaluation as Markdown (KFP renders a ``system.Markdown`` artifact): metrics, blessing, baseline, slices."""
    shown = classification.SCALAR_METRICS
    overall = report["overall"]
    lines = [
        f"# Evaluation of {report['model_uri']}",
        "",
        f"**{'Blessed' if decision['blessed'] else 'Not blessed'}** on the `{report['split']}` split "
        f"({overall['count']} rows, label `{report['label']}`).",
        "",
        *[f"* {reason}" for reason in decision["reasons"]],
        "",
        "| metric | value | threshold |",
        "|---|---|---|",
        *[f"| {m} | {_fmt(overall.get(m))} | {report['thresholds'].get(m, '')} |" for m in shown],
    ]
    baseline = report.get("baseline")
    if baseline and "overall" in baseline:
        lines += ["", f"Baseline: serving version {baseline['version']} on the same rows: "
                  + ", ".join(f"{m} {_fmt(baseline['overall'].get(m))}" for m in report["compare_metrics"])]
    if report["slices"]:
        lines += ["", "## Slices", "", "| feature | value | rows | accuracy | balanced_accuracy |", "|---|---|---|---|---|"]
        for feature, values in sorted(report["slices"].items()):
            for value, metrics in sorted(values.items()):
                lines.append(
                    f"| {feature} | {value} | {metrics.get('count', '')} | {_fmt(metrics.get('accuracy'))} | "
                    f"{_fmt(metrics.get('balanced_accuracy'))} |"
                )
    lines += [*(["", *[f"_{note}_" for note in report["notes"]]] if report["notes"] else []), ""]
    return "\n".join(lines)

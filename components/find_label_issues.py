"""find_label_issues: confident learning (cleanlab) on one split; flag and optionally prune.

Out-of-fold predicted probabilities come from stratified K-fold
cross-validation of a logistic regression on the split's features (pixels for
image Examples), so no example is scored by a model that saw its label.
"""

from __future__ import annotations

from flywheel.dsl.artifacts import Examples, Metrics
from flywheel.dsl.component import Input, Output, component

from flywheel.components.data import features as data
from flywheel.components import examples_io


@component
def find_label_issues(
    examples: Input[Examples],
    cleaned: Output[Examples],
    report: Output[Metrics],
    split: str = "train",
    cv_folds: int = 5,
    filter_by: str = "prune_by_noise_rate",
    prune: bool = True,
    C: float = 1.0,
    seed: int = 0,
    label: str = "",
) -> None:
    """Flags the rows of ``split`` whose label is likely wrong (see ConfidentLearning).

    Args:
        examples: Labelled Examples (tabular or image).
        cleaned: Receives the Examples with ``split`` pruned of flagged rows
            (``prune``) or with ``is_label_issue`` and ``label_quality`` columns
            added; other splits are copied unchanged.
        report: Receives ``label_issues.csv`` (flagged rows, worst first) and the counts.
        split: Split to check.
        cv_folds: Cross-validation folds for the out-of-fold probabilities.
        filter_by: cleanlab's filter_by.
        prune: Drop the flagged rows instead of only marking them.
        C: Inverse regularisation of the logistic regression.
        seed: Seeds the folds.
        label: Label column; "" uses the artifact's.

    Raises:
        ParameterError: a parameter breaks its rule.
        FlywheelError: no label, or a class with fewer rows than folds.
    """
    from flywheel.techniques.label_issues import ConfidentLearning

    name = examples_io.label_of(examples, label)
    X, frame, images = data.load_features(examples, split, label=name)
    frame = frame.reset_index(drop=True)
    classes = data.class_names_of(examples, frame, name)
    y = data.encode_labels(frame[name].tolist(), classes, "find_label_issues")
    finder = ConfidentLearning(cv_folds=cv_folds, filter_by=filter_by, C=C, random_state=seed).fit(X, y)
    flagged = finder.label_issues_
    marked = frame.assign(is_label_issue=flagged, label_quality=finder.label_quality_)
    issues = marked[flagged].assign(predicted=[classes[i] for i in finder.pred_probs_[flagged].argmax(axis=1)])
    issues.sort_values("label_quality").to_csv(report.path("label_issues.csv"), index=False)
    keep = ~flagged if prune else slice(None)
    data.write_like(examples, cleaned, split, marked[keep], None if images is None else images[keep])
    for other in examples_io.split_names(examples):
        if other != split:
            if examples_io.is_image(examples):
                other_images, other_frame = examples_io.read_images(examples, other)
                data.write_like(examples, cleaned, other, other_frame, other_images)
            else:
                data.write_like(examples, cleaned, other, examples_io.read_split(examples, other))
    report.properties.update(
        {"rows": len(frame), "flagged": int(flagged.sum()), "flagged_fraction": float(flagged.mean()), "pruned": bool(prune)}
    )

"""weak_label: labeling functions + a label model -> weakly labelled Examples.

Labeling functions reach the component as a JSON parameter, so they can be
declared in a pipeline file and compiled for Kubeflow: each entry is a JSON
rule ``{"name", "feature", "op", "value", "label"}`` or a reference
``"package.module:function"`` to a ``@labeling_function`` in an importable
module (see ``flywheel.techniques.weak_supervision``).
"""

from __future__ import annotations

from typing import Annotated

from flywheel.dsl.artifacts import Examples, Metrics
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Options
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components.data import features as data
from flywheel.components import examples_io

LABEL_MODELS = ("generative", "majority")


@component
def weak_label(
    examples: Input[Examples],
    weak: Output[Examples],
    summary: Output[Metrics],
    labeling_functions: list,
    classes: list = [],  # noqa: B006 - component defaults are recorded, never mutated
    label_model: Annotated[str, Options(LABEL_MODELS)] = "generative",
    split: str = "train",
    dependency_threshold: float = 0.8,
    drop_abstained: bool = True,
) -> None:
    """Labels ``split`` with labeling functions and a label model.

    The output Examples hold ``split`` with the label column set to the label
    model's most probable class, one ``proba_<class>`` column per class and
    ``weak_confidence``; the other splits are copied unchanged (an ``eval``
    split keeps its gold labels for evaluation). If ``split`` already has gold
    labels they are kept as ``gold_<label>`` and the summary reports the
    label accuracy of the label model and of majority vote against them.

    Args:
        examples: Examples to label (tabular; LFs read their columns).
        weak: Receives the weakly labelled Examples.
        summary: Receives ``lf_summary.csv`` (Snorkel's LF summary: polarity,
            coverage, overlaps, conflicts, learnt accuracy) and the metrics.
        labeling_functions: JSON rules and/or "module:function" references.
        classes: Label values in class-index order; [] means the artifact's
            ``class_names`` or the sorted label values of ``split``.
        label_model: "generative" (LabelModel) or "majority" (majority vote).
        split: Which split to label.
        dependency_threshold: LabelModel's grouping of correlated LFs (see it).
        drop_abstained: Leave out rows on which every LF abstained.

    Raises:
        ParameterError: a bad label_model, or a labeling function that cannot be built.
        FlywheelError: an LF reads a missing column or votes an unknown class.
    """
    import numpy as np

    from flywheel.techniques.weak_supervision import (
        LabelModel,
        apply_labeling_functions,
        lf_summary,
        majority_vote,
        resolve_labeling_functions,
    )

    if not labeling_functions:
        raise ParameterError("The 'labeling_functions' parameter of weak_label must be a non-empty list. Got [] instead.")
    label = str(examples.properties.get("label") or "label")
    frame = examples_io.read_split(examples, split).reset_index(drop=True)
    has_gold = label in frame.columns and frame[label].notna().all()
    names = list(classes) or data.class_names_of(examples, frame if has_gold else None, label)
    if len(names) < 2:
        raise FlywheelError(f"weak_label needs at least two classes; got {names}. Pass classes=[...].")
    lfs = resolve_labeling_functions(labeling_functions)
    L = apply_labeling_functions(frame, lfs, names)
    vote_proba = majority_vote(L, len(names))
    if label_model == "generative":
        model = LabelModel(cardinality=len(names), dependency_threshold=dependency_threshold).fit(L)
        proba = model.predict_proba(L)
    else:
        proba = vote_proba
    gold = data.encode_labels(frame[label].tolist(), names, "weak_label") if has_gold else None
    table = lf_summary(L, gold, [lf.name for lf in lfs])
    if label_model == "generative":
        table["learnt_accuracy"] = model.lf_accuracy_
        table["group"] = model.lf_groups_
    table.to_csv(summary.path("lf_summary.csv"), index=False)
    covered = (L != -1).any(axis=1)
    out = frame.copy()
    if has_gold:
        out[f"gold_{label}"] = frame[label]
        summary.properties["label_accuracy"] = float((proba.argmax(axis=1) == gold)[covered].mean())
        summary.properties["majority_vote_accuracy"] = float((vote_proba.argmax(axis=1) == gold)[covered].mean())
    out[label] = [names[i] for i in proba.argmax(axis=1)]
    for c, name in enumerate(names):
        out[f"proba_{name}"] = proba[:, c]
    out["weak_confidence"] = proba.max(axis=1)
    keep = covered if drop_abstained else np.ones(len(out), dtype=bool)
    weak.properties.update({"label": label, "class_names": names, "source": examples.properties.get("source", "")})
    data.write_like(examples, weak, split, out[keep])
    for other in examples_io.split_names(examples):
        if other != split:
            data.write_like(examples, weak, other, examples_io.read_split(examples, other))
    summary.properties.update(
        {"coverage": float(covered.mean()), "n_lfs": len(lfs), "label_model": label_model, "rows_labeled": int(keep.sum())}
    )

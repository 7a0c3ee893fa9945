"""Data sanity gates of train and evaluate: the label must make a classification problem.

A model trained on one class predicts that class for everything and scores
perfectly on an eval split of that class, so it would be blessed and pushed.
``check_label_classes`` stops such a run before training: every split needs
at least two classes, every class at least ``minimum`` rows in every split,
and no split may hold a class the train split lacks.
``check_same_vocabulary`` keeps evaluate from comparing a candidate with a
serving model that predicts other classes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flywheel.errors import DataSanityError, ParameterError

from flywheel.components import examples_io


def label_counts(examples: Any, label: str) -> dict[str, Counter]:
    """Rows per label value in each split of ``examples`` (missing labels are not counted).

    Streams the label column only, so memory does not grow with the split.
    """
    counts: dict[str, Counter] = {}
    for split in examples_io.split_names(examples):
        columns = examples_io.split_columns(examples, split)
        if label not in columns:
            raise DataSanityError(
                f"The label column {label!r} is not in the {split} split of {examples.uri} "
                f"(columns: {', '.join(map(str, columns))}); pass the right label to ingest."
            )
        counts[split] = Counter()
        for batch in examples_io.iter_split_batches(examples, split, columns=[label]):
            counts[split].update(str(v) for v in batch[label].dropna())
    return counts


def check_label_classes(counts: dict[str, Counter], *, label: str, minimum: int, where: str) -> None:
    """Raises unless every split has two or more classes, each with at least ``minimum`` rows.

    Args:
        counts: Rows per class per split (``label_counts``); ``train`` must be one of the splits.
        label: The label column, for the message.
        minimum: Fewest rows a class may have in any split.
        where: The Examples' location, for the message.

    Raises:
        ParameterError: ``minimum`` is below 1.
        DataSanityError: a split has fewer than two classes, a class is below
            ``minimum`` in a split, or a split holds a class that train lacks.
    """
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise ParameterError(
            f"The 'min_class_examples' parameter of train must be an int >= 1. Got {minimum!r} instead."
        )
    train_classes = set(counts.get("train", {}))
    for split, per_class in counts.items():
        if len(per_class) < 2:
            found = f"only {sorted(per_class)}" if per_class else "no labelled rows"
            raise DataSanityError(
                f"The label {label!r} has {len(per_class)} class(es) in the {split} split of {where} ({found}); "
                "a classifier needs at least two. Check the data export (a filter or join may have dropped the "
                "other classes) or the label column passed to ingest."
            )
        unseen = sorted(set(per_class) - train_classes)
        if unseen:
            raise DataSanityError(
                f"The {split} split of {where} has label class(es) {unseen} that the train split lacks, so the "
                f"model could never predict them. Add rows of those classes, or drop them from the data."
            )
        rare = {name: n for name, n in sorted(per_class.items()) if n < minimum}
        missing = sorted(train_classes - set(per_class))
        if rare or missing:
            detail = ", ".join(f"{name!r}: {n}" for name, n in rare.items())
            if missing:
                detail = ", ".join(filter(None, [detail, *(f"{name!r}: 0" for name in missing)]))
            raise DataSanityError(
                f"In the {split} split of {where}, label class(es) have fewer than min_class_examples="
                f"{minimum} rows ({detail}); too few to learn or to measure. Add data for them, drop them, "
                "or lower min_class_examples."
            )


def check_same_vocabulary(candidate: list[str], baseline: list[str], *, version: int, model_name: str) -> None:
    """Raises unless a candidate and the serving version predict the same classes.

    Raises:
        DataSanityError: the vocabularies differ (the message lists both).
    """
    if sorted(candidate) == sorted(baseline):
        return
    added, dropped = sorted(set(candidate) - set(baseline)), sorted(set(baseline) - set(candidate))
    raise DataSanityError(
        f"The model predicts classes {list(candidate)} but serving version {version} of '{model_name}' predicts "
        f"{list(baseline)} (new: {added or 'none'}, gone: {dropped or 'none'}); their metrics cannot be compared. "
        "If the data lost classes, fix the data. If the classes changed on purpose, pass "
        "allow_label_change=true to evaluate: it then skips the comparison with the serving version."
    )

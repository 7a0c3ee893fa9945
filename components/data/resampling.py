"""Resampling the train split for class imbalance (``transform(resample=...)``).

The validation hold-out that ``train`` uses for early stopping is taken out
*before* resampling (stratified, seeded), so no synthetic sample is built from
a validation row and validation keeps the true class ratio. The result is an
Examples-shaped directory inside the transform graph::

    <transform_graph>/resampled/Split-train/...       resampled fit part
    <transform_graph>/resampled/Split-validation/...  untouched hold-out

``train`` reads its rows from there when it exists (and the ``validation``
split decides early stopping). ``eval`` is never resampled.

Tables: numeric features with missing values are filled with the train mean
(the value the model's own imputation gives them) because SMOTE cannot
interpolate NaN; string features go through SMOTE-NC. Random undersampling
keeps whole original rows, missing values included.
"""

from __future__ import annotations

from typing import Any

from flywheel.dsl.artifacts import Examples
from flywheel.errors import FlywheelError

from flywheel.components import examples_io

RESAMPLED_DIR = "resampled"
METHODS = ("none", "smote", "undersample")


def holdout_indices(labels: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(fit indices, validation indices): a stratified, seeded hold-out of ``fraction``.

    Stratified only when every class can appear on both sides.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if len(counts) > 1 and counts.min() >= 2 else None
    fit, val = train_test_split(np.arange(len(labels)), test_size=fraction, random_state=seed, stratify=stratify)
    return fit, val


def resampler(method: str, params: dict[str, Any], seed: int, categorical: list[str] | None = None) -> Any:
    """The technique estimator of a ``resample`` method."""
    from flywheel.techniques.imbalance import RandomUndersampler, SMOTEOversampler

    if method == "smote":
        return SMOTEOversampler(**{"categorical_features": categorical or None, **params, "random_state": seed})
    return RandomUndersampler(**{**params, "random_state": seed})


def resampled_examples(transform_graph: Any) -> Examples | None:
    """The resampled train/validation Examples inside a transform graph, or None."""
    import os

    path = transform_graph.path(RESAMPLED_DIR)
    if not os.path.isdir(path):
        return None
    return Examples(uri=path, properties=dict(transform_graph.properties.get("resampled_examples") or {}))


def resample_table(
    train: Any, spec: dict[str, Any], method: str, params: dict[str, Any], *, fraction: float, seed: int, out: str
) -> dict[str, Any]:
    """Resamples the fit part of a table's train split into ``out``; returns the properties to record."""
    import numpy as np
    import pandas as pd

    label = spec["label"]
    train = train[train[label].notna()].reset_index(drop=True)
    fit_index, val_index = holdout_indices(train[label].astype(str), fraction, seed)
    fit, validation = train.iloc[fit_index].reset_index(drop=True), train.iloc[val_index].reset_index(drop=True)
    names = [*spec["numeric_features"], *spec["categorical_features"]]
    y = fit[label].to_numpy()
    if method == "undersample":
        sampler = resampler(method, params, seed)
        sampler.fit_resample(np.arange(len(fit), dtype="float64")[:, None], y)
        resampled = fit.iloc[sampler.sample_indices_].reset_index(drop=True)
    else:
        x = pd.DataFrame(
            {
                n: pd.to_numeric(fit[n], errors="coerce").fillna(spec["features"][n]["mean"])
                for n in spec["numeric_features"]
            }
        )
        for n in spec["categorical_features"]:
            x[n] = fit[n].astype(object).where(fit[n].notna(), "").astype(str)
        sampler = resampler(method, params, seed, categorical=list(spec["categorical_features"]))
        if spec["categorical_features"]:
            x_new, y_new = sampler.fit_resample(x[names], y)
        else:
            values, y_new = sampler.fit_resample(x[names].to_numpy(dtype="float64"), y)
            x_new = pd.DataFrame(values, columns=names)
        resampled = x_new.reset_index(drop=True)
        resampled[label] = y_new
    target = Examples(uri=out)
    examples_io.write_split(target, "train", resampled)
    examples_io.write_split(target, "validation", validation)
    return _properties(method, sampler, len(fit), len(resampled), len(validation), label)


def resample_images(
    images: Any,
    frame: Any,
    spec: dict[str, Any],
    method: str,
    params: dict[str, Any],
    *,
    fraction: float,
    seed: int,
    out: str,
) -> dict[str, Any]:
    """Resamples the fit part of image Examples' train split into ``out``; returns the properties to record."""
    import pandas as pd

    label = spec["label"]
    fit_index, val_index = holdout_indices(frame[label].astype(str), fraction, seed)
    sampler = resampler(method, params, seed)
    y = frame[label].astype(str).to_numpy()[fit_index]
    new_images, new_labels = sampler.fit_resample(images[fit_index], y)
    target = Examples(uri=out)
    examples_io.write_images(target, "train", new_images, pd.DataFrame({label: new_labels}))
    examples_io.write_images(target, "validation", images[val_index], frame.iloc[val_index].reset_index(drop=True))
    return _properties(method, sampler, len(fit_index), len(new_labels), len(val_index), label, image=True)


def _properties(
    method: str, sampler: Any, before: int, after: int, validation: int, label: str, image: bool = False
) -> dict[str, Any]:
    if after < 2:
        raise FlywheelError(f"Resampling with '{method}' left {after} training rows; use another method or more data.")
    examples_props: dict[str, Any] = {
        "label": label,
        "split_names": ["train", "validation"],
        "row_counts": {"train": after, "validation": validation},
    }
    if image:
        examples_props["modality"] = "image"
    return {
        "resample": method,
        "resample_params": sampler.get_params(),
        "class_counts_before": sampler.class_counts_before_,
        "class_counts_after": sampler.class_counts_after_,
        "rows_before_resampling": before,
        "rows_after_resampling": after,
        "resampled_examples": examples_props,
    }

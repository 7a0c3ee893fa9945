"""Learning-curve diagnosis (over- / under-fitting) and the learning-curve plot.

The rule, in order (first match wins), on the last epoch of a Keras history:

1. **under-fitting**: train accuracy < ``low_accuracy`` *and* validation
   accuracy < ``low_accuracy`` — the model cannot even fit the train data.
2. **over-fitting**: train accuracy exceeds validation accuracy by more than
   ``max_gap``, *or* over the last ``window`` epochs validation loss rose by
   more than ``rise_tolerance`` (relative) and more than ``min_rise``
   (absolute, so noise on a near-zero loss does not count) while train loss
   fell — the model learns the train data at the expense of unseen data.
3. **fine** otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

UNDER_FITTING = "under-fitting"
OVER_FITTING = "over-fitting"
FINE = "fine"


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """The verdict (``fine``/``over-fitting``/``under-fitting``) and the reason, in one line."""

    verdict: str
    detail: str

    def __str__(self) -> str:
        return f"{self.verdict}: {self.detail}"


def diagnose(
    history: Mapping[str, Sequence[float]],
    *,
    low_accuracy: float = 0.8,
    max_gap: float = 0.1,
    rise_tolerance: float = 0.1,
    min_rise: float = 0.02,
    window: int = 5,
) -> Diagnosis:
    """Applies the rule of this module to a Keras history.

    Args:
        history: ``History.history``: lists per epoch under ``loss``,
            ``val_loss``, ``accuracy`` and ``val_accuracy``.
        low_accuracy: Accuracy under which both curves count as low.
        max_gap: Largest train-minus-validation accuracy gap that is fine.
        rise_tolerance: Relative rise of validation loss over the last
            ``window`` epochs (while train loss falls) that counts as over-fitting.
        min_rise: Smallest absolute rise of validation loss that counts.
        window: Epochs looked back for the rising-validation-loss rule.

    Raises:
        ValueError: the history lacks one of the four curves or is empty.
    """
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        if not history.get(key):
            raise ValueError(
                f"A learning-curve diagnosis needs the per-epoch '{key}' curve; the history has "
                f"{sorted(history)}. Train with validation data and an 'accuracy' metric."
            )
    train_acc = float(history["accuracy"][-1])
    val_acc = float(history["val_accuracy"][-1])
    if train_acc < low_accuracy and val_acc < low_accuracy:
        return Diagnosis(
            UNDER_FITTING,
            f"train accuracy {train_acc:.3f} and validation accuracy {val_acc:.3f} are both below "
            f"{low_accuracy}; try a bigger model, more epochs or a higher learning rate",
        )
    gap = train_acc - val_acc
    if gap > max_gap:
        return Diagnosis(
            OVER_FITTING,
            f"train accuracy {train_acc:.3f} exceeds validation accuracy {val_acc:.3f} by {gap:.3f} "
            f"(> {max_gap}); try more dropout, a smaller model or more data",
        )
    loss, val_loss = history["loss"], history["val_loss"]
    start = max(0, len(val_loss) - 1 - window)
    if len(val_loss) > 1:
        rise_abs = val_loss[-1] - val_loss[start]
        rise = rise_abs / max(abs(val_loss[start]), 1e-12)
        if rise > rise_tolerance and rise_abs > min_rise and loss[-1] < loss[start]:
            return Diagnosis(
                OVER_FITTING,
                f"validation loss rose {rise:.0%} over the last {len(val_loss) - 1 - start} epochs "
                f"({val_loss[start]:.4f} -> {val_loss[-1]:.4f}) while train loss fell "
                f"({loss[start]:.4f} -> {loss[-1]:.4f}); stop earlier or regularize more",
            )
    return Diagnosis(
        FINE,
        f"train accuracy {train_acc:.3f}, validation accuracy {val_acc:.3f}, gap {gap:.3f} <= {max_gap}, "
        "validation loss not rising",
    )


def plot_learning_curve(
    history: Mapping[str, Sequence[float]], path: str, *, title: str = "", best_epoch: int | None = None
) -> None:
    """Writes a PNG with train vs validation loss (left) and accuracy (right)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    try:
        for axis, metric in zip(axes, ("loss", "accuracy")):
            epochs = range(1, len(history[metric]) + 1)
            axis.plot(epochs, history[metric], label=f"train {metric}")
            axis.plot(epochs, history[f"val_{metric}"], label=f"validation {metric}")
            if best_epoch is not None:
                axis.axvline(best_epoch, color="grey", linestyle=":", label="kept epoch")
            axis.set_xlabel("epoch")
            axis.xaxis.get_major_locator().set_params(integer=True)
            axis.set_title(metric)
            axis.legend(fontsize="small")
        if title:
            figure.suptitle(title, fontsize="small")
        figure.tight_layout()
        figure.savefig(path, dpi=80)
    finally:
        plt.close(figure)

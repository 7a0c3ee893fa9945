"""Weak supervision: labeling functions -> label model -> (confident-learning clean-up).

    flywheel run pipelines/weak_supervision.py
    flywheel run pipelines/weak_supervision.py -p label_model=majority   # the baseline

The labeling functions are declared right here, as JSON rules over the
breast-cancer features (label 0 = malignant, 1 = benign). They are genuinely
noisy: three precise concave-points rules, four loose size rules that make
the same mistakes (correlated errors: radius, perimeter and area measure the
same thing), and four weak texture/shape rules. A rule votes its label where
its condition holds and abstains elsewhere. Python labeling functions work
too: put a ``@labeling_function`` in an importable module and list it as
``"package.module:function"``.

The gold train labels are used only to *report* label accuracy; training
data downstream gets the label model's labels. ``find_label_issues`` then
removes the weak labels that cross-validation disagrees with most.
"""

from flywheel import pipeline
from flywheel.components.data.bundled import table_examples
from flywheel.components.find_label_issues import find_label_issues
from flywheel.components.weak_label import weak_label


def _rule(name: str, feature: str, op: str, value: float, label: int) -> dict:
    return {"name": name, "feature": feature, "op": op, "value": value, "label": label}


BREAST_CANCER_LFS = [
    _rule("worst_concave_points_high", "worst_concave_points", ">", 0.16, 0),
    _rule("worst_concave_points_low", "worst_concave_points", "<", 0.10, 1),
    _rule("mean_concave_points_high", "mean_concave_points", ">", 0.07, 0),
    _rule("mean_radius_large", "mean_radius", ">", 13.5, 0),
    _rule("mean_perimeter_large", "mean_perimeter", ">", 88.0, 0),
    _rule("mean_area_large", "mean_area", ">", 570.0, 0),
    _rule("worst_radius_large", "worst_radius", ">", 15.5, 0),
    _rule("smooth_texture", "mean_texture", "<", 18.0, 1),
    _rule("low_smoothness", "mean_smoothness", "<", 0.09, 1),
    _rule("high_symmetry", "mean_symmetry", ">", 0.19, 0),
    _rule("texture_error_high", "texture_error", ">", 1.2, 1),
]


@pipeline(name="weak-supervision")
def weak_supervision(
    seed: int = 0,
) -> None:
    """Weakly labels breast-cancer train rows, then prunes likely label errors.

    ``seed`` goes to the data split and find_label_issues; ``-p label_model=majority``
    is weak_label's, ``-p prune=false`` find_label_issues'.
    """
    source = table_examples(dataset="breast_cancer", eval_ratio=0.3, seed=seed)
    labeled = weak_label(examples=source.outputs["examples"], labeling_functions=BREAST_CANCER_LFS)
    find_label_issues(examples=labeled.outputs["weak"], seed=seed)

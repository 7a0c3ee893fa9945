"""Compound scaling on digits: ingest -> transform -> scale_model -> evaluate -> push.

    flywheel run pipelines/compound_scaling.py
    flywheel run pipelines/compound_scaling.py -p phi=2 -p compare=false

``scale_model`` grid-searches EfficientNet's alpha, beta, gamma (alpha *
beta^2 * gamma^2 ~= 2) for the baseline CNN declared below, compares compound
scaling with depth-, width- and resolution-only scaling to the same FLOPs
budget (its ``report``), and writes the compound-scaled network, trained, as a
Model that ``evaluate`` scores and ``push`` registers when blessed. The input
is resized inside the model, so serving still takes raw 8x8 pixels.
"""

from flywheel import pipeline
from flywheel.components.ingest import ingest
from flywheel.components.scale_model import scale_model
from flywheel.components.transform import transform
from flywheel.pipelines import evaluate_and_push

# The baseline network (a flywheel.techniques.nas architecture): two stages of two 3x3 convolutions, each
# layer after a stage's first one residual (plain deep stacks stop training at phi=2 without it).
BASELINE = {"kind": "cnn", "stages": [[8, 8], [16, 16]], "kernel_size": 3, "skip": True, "dense_units": []}


@pipeline(name="compound-scaling")
def compound_scaling(
    data_path: str = "sklearn-digits",
    seed: int = 0,
    registry: str = "",
    model_name: str = "digits-scaled",
) -> None:
    """Compound-scales a baseline CNN by phi, then evaluates and (if blessed) pushes it.

    ``seed`` goes to transform and scale_model; the scaling's own values are
    its parameters (``-p phi=2``, ``-p compare=false``).
    ``registry`` "" means ``<flywheel home>/registry``.
    """
    rows = ingest(path=data_path)
    features = transform(examples=rows.outputs["examples"], seed=seed)
    scaled = scale_model(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        base=BASELINE,
        seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], scaled.outputs["model"], registry=registry, model_name=model_name,
        thresholds={"accuracy": 0.9},
    )

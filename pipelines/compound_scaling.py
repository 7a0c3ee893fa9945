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
    eval_ratio: float = 0.2,
    normalize: bool = False,
    base: dict = BASELINE,  # noqa: B006 - pipeline defaults are recorded, never mutated
    phi: float = 1.0,
    grid_values: list = [1.0, 1.2, 1.4, 1.6, 1.8, 2.0],  # noqa: B006
    tolerance: float = 0.1,
    compare: bool = True,
    search_epochs: int = 10,
    final_epochs: int = 30,
    learning_rate: float = 0.003,
    seed: int = 0,
    thresholds: dict = {"accuracy": 0.9},  # noqa: B006
    max_regression: float = 0.02,
    registry: str = "",
    model_name: str = "digits-scaled",
) -> None:
    """Compound-scales a baseline CNN by phi, then evaluates and (if blessed) pushes it.

    ``registry`` "" means ``<flywheel home>/registry``.
    """
    rows = ingest(path=data_path, eval_ratio=eval_ratio)
    features = transform(examples=rows.outputs["examples"], normalize=normalize, seed=seed)
    scaled = scale_model(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        base=base,
        phi=phi,
        grid_values=grid_values,
        tolerance=tolerance,
        compare=compare,
        search_epochs=search_epochs,
        final_epochs=final_epochs,
        learning_rate=learning_rate,
        seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], scaled.outputs["model"], registry=registry, model_name=model_name,
        slice_features=[], thresholds=thresholds, max_regression=max_regression,
    )

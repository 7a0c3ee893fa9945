"""Explanations of an image model: ingest -> transform -> train (CNN) -> explain (Grad-CAM and LIME), on digits.

    flywheel run pipelines/explain_digits.py
    flywheel run pipelines/explain_digits.py -p rows=100 -p grad_cam_layer=conv_0

The ``explain`` step writes an HTML report with Grad-CAM and LIME heat maps
over the digits, the share of each map's mass on the strokes against the
strokes' area share, and deletion/insertion curves against a random map;
see docs/techniques.md, "Explanations".
"""

from flywheel import pipeline
from flywheel.components.explain import explain
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform


@pipeline(name="explain-digits")
def explain_digits(
    data_path: str = "sklearn-digits",
    eval_ratio: float = 0.2,
    conv_widths: list = [16, 32],  # noqa: B006 - pipeline defaults are recorded, never mutated
    hidden_units: list = [64],  # noqa: B006
    learning_rate: float = 0.003,
    epochs: int = 30,
    seed: int = 0,
    rows: int = 20,
    lime_samples: int = 300,
    patch_size: int = 2,
    grad_cam_layer: str = "",
) -> None:
    """Trains the digits CNN and explains ``rows`` eval images with Grad-CAM and LIME."""
    rows_ = ingest(path=data_path, eval_ratio=eval_ratio)
    features = transform(examples=rows_.outputs["examples"], seed=seed)
    trained = train(
        examples=rows_.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        conv_widths=conv_widths,
        hidden_units=hidden_units,
        learning_rate=learning_rate,
        epochs=epochs,
        seed=seed,
    )
    explain(
        examples=rows_.outputs["examples"],
        model=trained.outputs["model"],
        rows=rows,
        lime_samples=lime_samples,
        patch_size=patch_size,
        grad_cam_layer=grad_cam_layer,
        seed=seed,
    )

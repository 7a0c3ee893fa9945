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
    seed: int = 0,
) -> None:
    """Trains the digits CNN and explains 20 eval images with Grad-CAM and LIME.

    ``seed`` goes to transform, train and explain; ``-p rows=50``,
    ``-p grad_cam_layer=conv_1`` are explain's.
    """
    examples = ingest(path=data_path).outputs["examples"]
    features = transform(examples=examples, seed=seed)
    trained = train(
        examples=examples, transform_graph=features.outputs["transform_graph"],
        hidden_units=[64], learning_rate=0.003, epochs=30, seed=seed,
    )
    explain(examples=examples, model=trained.outputs["model"], rows=20, seed=seed)

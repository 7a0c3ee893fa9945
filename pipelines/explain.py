"""Explanations of a tabular model: ingest -> transform -> train -> explain (SHAP and LIME), on penguins.

    flywheel run pipelines/explain.py
    flywheel run pipelines/explain.py -p rows=40 -p shap_nsamples=500

The ``explain`` step writes an HTML report (SHAP global importance and
per-prediction plots, LIME per prediction) with each explainer's
faithfulness numbers against a random baseline; see docs/techniques.md,
"Explanations". No ``validate`` step: this pipeline is about the model, and
``pipelines/training.py`` is the one that guards the data.
"""

from flywheel import pipeline
from flywheel.components.explain import explain
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform


@pipeline(name="explain")
def explain_penguins(
    data_path: str = "",
    label: str = "species",
    seed: int = 0,
) -> None:
    """Trains the penguins classifier and explains 20 eval predictions with SHAP and LIME.

    ``seed`` goes to train and explain; how many rows: ``-p rows=50`` (explain's).
    """
    examples = ingest(path=data_path, label=label).outputs["examples"]
    features = transform(examples=examples, label=label)
    trained = train(examples=examples, transform_graph=features.outputs["transform_graph"], seed=seed)
    explain(examples=examples, model=trained.outputs["model"], rows=20, lime_samples=500, seed=seed)

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
    eval_ratio: float = 0.2,
    hidden_units: list = [16, 8],  # noqa: B006 - pipeline defaults are recorded, never mutated
    epochs: int = 100,
    seed: int = 0,
    rows: int = 20,
    background_size: int = 20,
    shap_nsamples: int = 200,
    lime_samples: int = 500,
    top_k: int = 2,
) -> None:
    """Trains the penguins classifier and explains ``rows`` eval predictions with SHAP and LIME."""
    rows_ = ingest(path=data_path, label=label, eval_ratio=eval_ratio)
    features = transform(examples=rows_.outputs["examples"], label=label)
    trained = train(
        examples=rows_.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        hidden_units=hidden_units,
        epochs=epochs,
        seed=seed,
    )
    explain(
        examples=rows_.outputs["examples"],
        model=trained.outputs["model"],
        rows=rows,
        background_size=background_size,
        shap_nsamples=shap_nsamples,
        lime_samples=lime_samples,
        top_k=top_k,
        seed=seed,
    )

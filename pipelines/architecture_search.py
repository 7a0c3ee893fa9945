"""Architecture search on digits: ingest -> transform -> search_architecture -> evaluate -> push.

    flywheel run pipelines/architecture_search.py
    flywheel run pipelines/architecture_search.py -p strategy=random -p n_trials=24
    flywheel run pipelines/architecture_search.py -p max_params=5000

The search space is declared below as data (``SEARCH_SPACE``; a run can pass
another with ``-p search_space=...``). ``search_architecture`` scores every
candidate on a validation part of the train split, trains the best one and
writes it as a Model artifact like ``train`` does, so ``evaluate`` scores it on
the eval split and ``push`` registers it only when blessed. Its ``report``
artifact holds the Pareto front (accuracy vs parameters and vs latency) of
every candidate.
"""

from flywheel import pipeline
from flywheel.components.ingest import ingest
from flywheel.components.search_architecture import search_architecture
from flywheel.components.transform import transform
from flywheel.pipelines import evaluate_and_push

# Choices per dimension (see flywheel.techniques.nas): small CNNs (stages of 3x3/5x5 convolutions, per-layer
# widths, residual skips, an optional dense head) and MLPs (per-layer widths, skips).
SEARCH_SPACE = {
    "kinds": ["cnn", "mlp"],
    "stages": [1, 2],
    "layers_per_stage": [1, 2],
    "widths": [8, 16, 32],
    "kernel_sizes": [3, 5],
    "skip": [False, True],
    "dense_units": [0, 32, 64],
    "mlp_layers": [1, 2, 3],
    "mlp_units": [32, 64, 128],
}


@pipeline(name="architecture-search")
def architecture_search(
    data_path: str = "sklearn-digits",
    seed: int = 0,
    registry: str = "",
    model_name: str = "digits-nas",
) -> None:
    """Searches an image classifier's architecture, then evaluates and (if blessed) pushes the best one.

    ``seed`` goes to transform and search_architecture; the search's own values
    are its parameters (``-p n_trials=20``, ``-p strategy=random``).
    ``registry`` "" means ``<flywheel home>/registry``.
    """
    rows = ingest(path=data_path)
    features = transform(examples=rows.outputs["examples"], seed=seed)
    searched = search_architecture(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        search_space=SEARCH_SPACE,
        n_trials=12,
        time_budget_s=300.0,
        seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], searched.outputs["model"], registry=registry, model_name=model_name,
        thresholds={"accuracy": 0.9},
    )

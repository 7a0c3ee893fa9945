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
    eval_ratio: float = 0.2,
    normalize: bool = False,
    search_space: dict = SEARCH_SPACE,  # noqa: B006 - pipeline defaults are recorded, never mutated
    strategy: str = "evolution",
    n_trials: int = 12,
    time_budget_s: float = 300.0,
    population_size: int = 6,
    sample_size: int = 3,
    param_penalty: float = 0.01,
    max_params: int = 0,
    search_epochs: int = 5,
    final_epochs: int = 30,
    learning_rate: float = 0.003,
    seed: int = 0,
    thresholds: dict = {"accuracy": 0.9},  # noqa: B006
    max_regression: float = 0.02,
    registry: str = "",
    model_name: str = "digits-nas",
) -> None:
    """Searches an image classifier's architecture, then evaluates and (if blessed) pushes the best one.

    ``registry`` "" means ``<flywheel home>/registry``.
    """
    rows = ingest(path=data_path, eval_ratio=eval_ratio)
    features = transform(examples=rows.outputs["examples"], normalize=normalize, seed=seed)
    searched = search_architecture(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        search_space=search_space,
        strategy=strategy,
        n_trials=n_trials,
        time_budget_s=time_budget_s,
        population_size=population_size,
        sample_size=sample_size,
        param_penalty=param_penalty,
        max_params=max_params,
        search_epochs=search_epochs,
        final_epochs=final_epochs,
        learning_rate=learning_rate,
        seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], searched.outputs["model"], registry=registry, model_name=model_name,
        slice_features=[], thresholds=thresholds, max_regression=max_regression,
    )

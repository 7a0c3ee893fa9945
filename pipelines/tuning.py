"""The tuning pipeline: ingest -> transform -> tune -> train(hyperparameters) -> evaluate -> push.

``tune`` searches the space below on penguins (the validation hold-out of the
train split, never eval) and its best values override train's parameters:

    flywheel run pipelines/tuning.py                              # random search, 12 trials x 30 epochs
    flywheel run pipelines/tuning.py -p strategy=bayesian -p max_trials=20
    flywheel run pipelines/tuning.py -p strategy=hyperband -p tune.epochs=27
    flywheel compile pipelines/tuning.py -o tuning.yaml           # Kubeflow Pipelines v2

Compiled for Kubeflow, ``tune`` here stays one task: its seed is a pipeline
parameter, known only when a run starts. Compiled with a constant seed
(``flywheel compile pipelines/tuning.py -p seed=0``), the random search is
constant (strategy, space, max_trials, seed) and its trials become a
``ParallelFor`` of parallel tasks (``components/tune/fanout.py``; see
``tests/kubeflow/test_kfp_tune.py``).

The objective is validation loss: on penguins most configurations reach 100%
validation accuracy, so accuracy cannot rank them. Train's model properties
record which values came from tuning (``tuned_hyperparameters``); the tune
artifact holds every trial (``trials.json``, ``index.html``, ``trials.png``).
"""

from flywheel import pipeline
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.components.tune import tune
from flywheel.pipelines import evaluate_and_push

SEARCH_SPACE = {
    "learning_rate": {"type": "float", "min": 1e-4, "max": 1e-1, "log": True},
    "hidden_units": {"type": "choice", "values": [[8], [16, 8], [32, 16], [64, 32]]},
    "dropout": {"type": "float", "min": 0.0, "max": 0.5},
    "batch_size": {"type": "int", "min": 16, "max": 128, "step": 16},
}


@pipeline(name="tuning")
def tuning(
    data_path: str = "",
    label: str = "species",
    seed: int = 0,
    registry: str = "",
    model_name: str = "penguins-tuned",
) -> None:
    """Tunes, trains with the best values, evaluates and (if blessed) pushes.

    ``data_path`` "" means the penguins CSV of the palmerpenguins package;
    ``registry`` "" means ``<flywheel home>/registry``. ``seed`` goes to tune
    and train. Both tune and train have ``epochs``: say which (``-p
    tune.epochs=27``, ``-p train.epochs=50``).
    """
    rows = ingest(path=data_path, label=label)
    features = transform(examples=rows.outputs["examples"], label=label)
    tuned = tune(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        search_space=SEARCH_SPACE,
        max_trials=12,
        max_seconds=600.0,
        epochs=30,
        objective="val_loss",
        seed=seed,
    )
    trained = train(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        hyperparameters=tuned.outputs["hyperparameters"],
        seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], trained.outputs["model"], registry=registry, model_name=model_name, label=label,
    )

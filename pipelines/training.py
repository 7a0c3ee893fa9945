"""The training pipeline: ingest -> validate -> transform -> train -> evaluate + infra_validate -> push.

Defaults train on the Palmer penguins data shipped by the ``palmerpenguins``
package, the dataset of TFX's own penguin tutorial, so results compare with it.

    flywheel run pipelines/training.py                       # penguins
    flywheel run pipelines/training.py -p data_path=data/ -p label=target
    flywheel compile pipelines/training.py -o training.yaml  # Kubeflow Pipelines v2

``validate`` takes the previous schema (kept, so later data is checked against
it) and the previous statistics (for drift) from earlier runs of the same model
(``model_name``, by default named after the data) on different data;
``evaluate`` compares with the model the registry serves; ``infra_validate``
serves the candidate with flywheel's serving code and checks its answers;
``push`` runs only if ``is_blessed`` finds the model blessed (``If``), else it
is SKIPPED, and pushes only a model the infra validation blessed too.
"""

from flywheel import ExampleStatistics, Schema, latest, pipeline
from flywheel.data_sources import dataset_name
from flywheel.components.infra_validate import infra_validate
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.components.validate import validate
from flywheel.pipelines import evaluate_and_push


def _model_name_of_data(values: dict) -> str:
    return dataset_name(values["data_path"])


@pipeline(name="training", derived_defaults={"model_name": _model_name_of_data})
def training(
    data_path: str = "",
    label: str = "",
    eval_ratio: float = 0.2,
    fail_on_anomalies: bool = True,
    drift_threshold: float = 0.1,
    severity: dict = {},  # noqa: B006
    hidden_units: list = [16, 8],  # noqa: B006 - pipeline defaults are recorded, never mutated
    dropout: float = 0.1,
    learning_rate: float = 0.01,
    epochs: int = 100,
    batch_size: int = 32,
    class_weights: str = "none",
    loss: str = "crossentropy",
    seed: int = 0,
    slice_features: list = [],  # noqa: B006
    thresholds: dict = {"balanced_accuracy": 0.8},  # noqa: B006
    max_regression: float = 0.02,
    registry: str = "",
    model_name: str = "",
    span_count: int = 1,
    rename_columns: bool = False,
    beam_args: list = [],  # noqa: B006
) -> None:
    """Trains, evaluates and (if blessed) pushes a tabular classifier.

    ``label`` "" infers the label column (label, target, class, y or species).
    ``registry`` "" means ``<flywheel home>/registry``; ``data_path`` "" means the
    penguins CSV of the palmerpenguins package, and may name spans
    (``data/span-{SPAN}/``, resolved when the run starts). ``model_name`` ""
    means the data's file or folder stem (``own.csv`` -> ``own``); schema,
    statistics and the evaluation baseline come from earlier runs of that model.
    ``rename_columns`` lets ingest rename columns whose names cannot be model
    inputs (else it refuses them). ``beam_args`` are Apache Beam options for
    validate's statistics (``["--runner=FlinkRunner", ...]``, passed unchanged,
    as TFX's ``beam_pipeline_args``); [] uses Beam's DirectRunner for large splits only.
    """
    rows = ingest(path=data_path, label=label, eval_ratio=eval_ratio, span_count=span_count,
                  rename_columns=rename_columns)
    checked = validate(
        examples=rows.outputs["examples"],
        curated_schema=latest(Schema, task="validate", output="schema"),
        previous_statistics=latest(ExampleStatistics, task="validate", output="statistics"),
        fail_on_anomalies=fail_on_anomalies,
        drift_threshold=drift_threshold,
        severity=severity,
        beam_args=beam_args,
    )
    features = transform(examples=rows.outputs["examples"], schema=checked.outputs["schema"], label=label)
    trained = train(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        hidden_units=hidden_units,
        dropout=dropout,
        learning_rate=learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        class_weights=class_weights,
        loss=loss,
        seed=seed,
    )
    served = infra_validate(model=trained.outputs["model"], examples=rows.outputs["examples"])
    evaluate_and_push(
        rows.outputs["examples"], trained.outputs["model"], registry=registry, model_name=model_name,
        statistics=checked.outputs["statistics"], schema=checked.outputs["schema"],
        infra_blessing=served.outputs["infra_blessing"],
        slice_features=slice_features, thresholds=thresholds, max_regression=max_regression, label=label,
        skip_push_unless_blessed=True,
    )

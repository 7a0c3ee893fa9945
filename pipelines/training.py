"""The training pipeline: ingest -> validate -> transform -> train -> evaluate + infra_validate -> push.

Defaults train on the Palmer penguins data shipped by the ``palmerpenguins``
package, the dataset of TFX's own penguin tutorial, so results compare with it.

    flywheel run pipelines/training.py                       # penguins
    flywheel run pipelines/training.py -p data_path=data/ -p label=target
    flywheel run pipelines/training.py -p epochs=20          # train's parameter (-p train.epochs=20)
    flywheel run pipelines/training.py --list-params         # every parameter, its value and source
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
    registry: str = "",
    model_name: str = "",
    beam_args: list = [],  # noqa: B006 - pipeline defaults are recorded, never mutated
) -> None:
    """Trains, evaluates and (if blessed) pushes a tabular classifier.

    ``data_path`` "" means the penguins CSV of the palmerpenguins package, and
    may name spans (``data/span-{SPAN}/``, resolved when the run starts; how
    many: ``-p span_count=3``). ``label`` "" infers the label column (label,
    target, class, y or species); ingest, transform and evaluate all get it.
    ``registry`` "" means ``<flywheel home>/registry``; ``model_name`` "" means
    the data's file or folder stem (``own.csv`` -> ``own``); schema, statistics
    and the evaluation baseline come from earlier runs of that model.

    ``beam_args`` are Apache Beam options for the two tasks that run on Beam
    (validate's statistics, transform's analyzers), passed to ``PipelineOptions``
    unchanged as TFX's pipeline-level ``beam_pipeline_args``:
    ``-p beam_args='["--runner=FlinkRunner", "--flink_master=host:8081"]'``. []
    runs splits over 200k rows on the DirectRunner and smaller ones in memory.

    Every task's own parameters are set with ``-p TASK.PARAM=VALUE``, or
    ``-p PARAM=VALUE`` where one task has it (``-p epochs=5``,
    ``-p rename_columns=true``);
    ``flywheel run pipelines/training.py --list-params`` lists them.
    """
    rows = ingest(path=data_path, label=label)
    checked = validate(
        examples=rows.outputs["examples"],
        curated_schema=latest(Schema, task="validate", output="schema"),
        previous_statistics=latest(ExampleStatistics, task="validate", output="statistics"),
        beam_args=beam_args,
    )
    features = transform(
        examples=rows.outputs["examples"], schema=checked.outputs["schema"], label=label, beam_args=beam_args
    )
    trained = train(examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"])
    served = infra_validate(model=trained.outputs["model"], examples=rows.outputs["examples"])
    evaluate_and_push(
        rows.outputs["examples"], trained.outputs["model"], registry=registry, model_name=model_name,
        statistics=checked.outputs["statistics"], schema=checked.outputs["schema"],
        infra_blessing=served.outputs["infra_blessing"],
        label=label, skip_push_unless_blessed=True,
    )

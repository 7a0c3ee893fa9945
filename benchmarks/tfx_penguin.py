"""TFX 1.16's penguin pipeline with LocalDagRunner: the baseline of benchmarks/pipeline_e2e.py.

Runs in the TFX venv (Python 3.10, benchmarks/requirements-tfx.lock), never in the
project's venv; pipeline_e2e.py starts it as a subprocess and times it.

    python benchmarks/tfx_penguin.py --data-root DIR --workdir DIR

``--data-root`` holds ``labelled/penguins_processed.csv`` (TFX's processed penguins,
derived from palmerpenguins by pipeline_e2e.py). ``--workdir`` holds the pipeline
root, the SQLite MLMD store and the push destination: a fresh one is a cold run,
the same one again a cached run.

The pipeline is TFX's ``examples/penguin/penguin_pipeline_local.py::create_pipeline``
(the same components, arguments, eval config and conditional Pusher, with TFX's
own module file ``tfx/examples/penguin/penguin_utils_keras.py`` from the wheel)
with SchemaGen's schema checked by ExampleValidator as in the tfx penguin
template: CsvExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator ->
Transform -> Trainer -> latest blessed model resolver -> Evaluator -> Pusher,
9 nodes. Beam runs in memory on one worker.

Prints one last line ``RESULT {json}``: executions recorded in MLMD by this run
and their states, and the Evaluator's sparse categorical accuracy.
"""

import argparse
import json
import os

# TFX 1.16's penguin module file is Keras 2 code (model.save(save_format="tf")); TF 2.16
# gives Keras 3 unless told to use tf-keras, which tfx 1.16 installs for this.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
ACCURACY_THRESHOLD = 0.6  # penguin_pipeline_local.py's value


def create_pipeline(data_root: str, workdir: str):
    import tensorflow_model_analysis as tfma
    from tfx import v1 as tfx
    from tfx.dsl.experimental.conditionals import conditional
    from tfx.examples.penguin import penguin_utils_keras

    module_file = os.path.abspath(penguin_utils_keras.__file__)
    example_gen = tfx.components.CsvExampleGen(input_base=os.path.join(data_root, "labelled"))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], module_file=module_file
    )
    trainer = tfx.components.Trainer(
        module_file=module_file,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=100),
        eval_args=tfx.proto.EvalArgs(num_steps=5),
    )
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    eval_config = tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key="species_xf",
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        threshold=tfma.MetricThreshold(
                            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": ACCURACY_THRESHOLD}),
                            change_threshold=tfma.GenericChangeThreshold(
                                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -1e-10}
                            ),
                        ),
                    )
                ]
            )
        ],
    )
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config,
    )
    with conditional.Cond(evaluator.outputs["blessing"].future()[0].custom_property("blessed") == 1):
        pusher = tfx.components.Pusher(
            model=trainer.outputs["model"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=os.path.join(workdir, "serving"))
            ),
        )
    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        transform,
        trainer,
        model_resolver,
        evaluator,
        pusher,
    ]
    return local_pipeline("penguin_local_keras", workdir, components, BEAM_ARGS)


def local_pipeline(name: str, workdir: str, components: list, beam_args: list):
    """A cached TFX pipeline rooted in ``workdir`` with its SQLite MLMD store there (``metadata_store``
    reads it); tfx_scale.py builds its pipelines with it too."""
    from tfx import v1 as tfx

    return tfx.dsl.Pipeline(
        pipeline_name=name,
        pipeline_root=os.path.join(workdir, "pipeline"),
        components=components,
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(workdir, "metadata.db")
        ),
        beam_pipeline_args=beam_args,
    )


def metadata_store(workdir: str):
    """The TFX run's ML Metadata store (SQLite in ``workdir``); tfx_scale.py reads its runs with it too."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(workdir, "metadata.db")
    return metadata_store.MetadataStore(config)


def _accuracy(evaluation_uri: str) -> float:
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    for _, metrics in result.slicing_metrics:
        for value in metrics[""].values():
            if "sparse_categorical_accuracy" in value:
                return float(value["sparse_categorical_accuracy"]["doubleValue"])
    raise SystemExit(f"no sparse_categorical_accuracy in the Evaluator output {evaluation_uri}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding labelled/penguins_processed.csv")
    parser.add_argument("--workdir", required=True, help="pipeline root, MLMD and push destination")
    args = parser.parse_args()
    from tfx import v1 as tfx

    os.makedirs(args.workdir, exist_ok=True)
    known = set()
    if os.path.exists(os.path.join(args.workdir, "metadata.db")):
        known = {execution.id for execution in metadata_store(args.workdir).get_executions()}
    tfx.orchestration.LocalDagRunner().run(create_pipeline(args.data_root, args.workdir))

    store = metadata_store(args.workdir)
    states = {}
    for execution in store.get_executions():
        if execution.id not in known:
            state = execution.State.Name(execution.last_known_state)
            states[state] = states.get(state, 0) + 1
    evaluations = store.get_artifacts_by_type("ModelEvaluation")
    latest = max(evaluations, key=lambda artifact: artifact.id)
    print("RESULT " + json.dumps({"executions": states, "accuracy": _accuracy(latest.uri)}), flush=True)


if __name__ == "__main__":
    main()

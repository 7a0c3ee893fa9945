"""TFX 1.16's data path on the scale benchmark's taxi table: the baseline of ``benchmarks/scale.py --tfx``.

Runs in the TFX venv (Python 3.10, benchmarks/requirements-tfx.lock), never in the
project's venv; scale.py starts it once per stage as a subprocess and samples the
process tree's RSS:

    python benchmarks/tfx_scale.py --input-dir DIR --workdir DIR --stage ingest|validate|transform

The stages are flywheel's three data steps done by TFX's own components on the
DirectRunner (``--beam-arg``, default in memory on one worker, as the e2e benchmark):

* ingest: CsvExampleGen (TFRecords of tf.Example, TFX's default 2:1 hash split);
* validate: StatisticsGen + SchemaGen (TFDV's default statistics of both splits, then a schema);
* transform: Transform with ``preprocessing_fn`` below (z-score every numeric column,
  a vocabulary for every string column; missing values filled as TFX's taxi example does),
  ``materialize=False`` and ``disable_statistics=True``, as flywheel's transform writes the
  transform graph only and computes no statistics.

Each stage is a LocalDagRunner run of the pipeline up to that stage with MLMD caching on,
so the earlier stages come from the cache (their executions are not re-run). Prints one last
line ``RESULT {json}``: the seconds of each execution this run made (from MLMD) and their states.
"""

import argparse
import json
import os

STAGES = {"ingest": 1, "validate": 3, "transform": 4}  # components of the pipeline up to each stage


def _dense(x):
    """A feature as a dense [batch] tensor: a sparse (sometimes missing) one filled with 0 or ''."""
    import tensorflow as tf

    if isinstance(x, tf.sparse.SparseTensor):
        default = "" if x.dtype == tf.string else tf.zeros([], x.dtype)
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs):
    """z-score numerics, vocabulary strings (flywheel's transform does the same with its analyzers)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    outputs = {}
    for name, value in inputs.items():
        value = _dense(value)
        if value.dtype == tf.string:
            outputs[name + "_xf"] = tft.compute_and_apply_vocabulary(value, num_oov_buckets=1)
        else:
            outputs[name + "_xf"] = tft.scale_to_z_score(tf.cast(value, tf.float32))
    return outputs


def create_pipeline(input_dir: str, workdir: str, stage: str, beam_args: list):
    from tfx import v1 as tfx

    example_gen = tfx.components.CsvExampleGen(input_base=input_dir)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=os.path.abspath(__file__),
        materialize=False,
        disable_statistics=True,
    )
    from tfx_penguin import local_pipeline  # this directory is first on sys.path when run as a script

    components = [example_gen, statistics_gen, schema_gen, transform][: STAGES[stage]]
    return local_pipeline("taxi_scale", workdir, components, beam_args)


def main() -> None:
    from tfx_penguin import BEAM_ARGS, metadata_store  # this directory is first on sys.path when run as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", required=True, help="folder holding the CSV (and nothing else)")
    parser.add_argument("--workdir", required=True, help="pipeline root and MLMD store (the same for every stage)")
    parser.add_argument("--stage", required=True, choices=sorted(STAGES))
    parser.add_argument("--beam-arg", action="append", default=None,
                        help="a Beam option (repeat); default --direct_running_mode=in_memory --direct_num_workers=1")
    args = parser.parse_args()
    beam_args = args.beam_arg or list(BEAM_ARGS)
    from tfx import v1 as tfx

    os.makedirs(args.workdir, exist_ok=True)
    known = set()
    if os.path.exists(os.path.join(args.workdir, "metadata.db")):
        known = {execution.id for execution in metadata_store(args.workdir).get_executions()}
    tfx.orchestration.LocalDagRunner().run(create_pipeline(args.input_dir, args.workdir, args.stage, beam_args))
    store = metadata_store(args.workdir)
    types = {t.id: t.name for t in store.get_execution_types()}
    executions = {}
    for execution in store.get_executions():
        if execution.id not in known:
            seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
            executions[types.get(execution.type_id, str(execution.type_id)).split(".")[-1]] = {
                "state": execution.State.Name(execution.last_known_state), "seconds": seconds,
            }
    failed = {name: e for name, e in executions.items() if e["state"] not in ("COMPLETE", "CACHED")}
    if failed:
        raise SystemExit(f"TFX stage {args.stage}: executions did not complete: {failed}")
    print("RESULT " + json.dumps({"stage": args.stage, "executions": executions}), flush=True)


if __name__ == "__main__":
    main()

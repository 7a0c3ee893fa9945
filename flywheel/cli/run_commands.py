"""Local runs: ``flywheel run``, ``flywheel runs [show RUN]``, ``flywheel lineage``."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from flywheel.cli.common import add_beam_arg, command_params, home_of, table
from flywheel.errors import ParameterError


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a pipeline on this machine",
        description="Run a pipeline file locally: no Docker, no cluster, no server. "
        "Lineage goes to ML Metadata in the project home.",
    )
    run.add_argument("pipeline_file", nargs="?", help="Python file that defines a @pipeline")
    run.add_argument("--pipeline", dest="pipeline_name", help="which pipeline, if the file defines several")
    run.add_argument(
        "--param", "-p", action="append", default=[], metavar="K=V",
        help="a pipeline parameter, TASK.PARAM for a task's parameter, or PARAM that one task has (repeatable)",
    )
    add_beam_arg(run)
    run.add_argument(
        "--list-params", action="store_true",
        help="print the pipeline's parameters and every task's, with the value it gets and from where; run nothing",
    )
    run.add_argument("--no-cache", action="store_true", help="run every node even if an identical execution exists")
    run.add_argument(
        "--rerun", action="append", default=[], metavar="NODE", help="run NODE even if it could be cached (repeatable)"
    )
    run.add_argument("--resume", metavar="RUN", help="re-run only the failed nodes of RUN and what depends on them")
    run.add_argument("--retries", type=int, help="retries per node, overriding each component's own")
    run.add_argument(
        "--workers", type=int, help="nodes run at once (default: CPU count; 0 runs in-process, one at a time)"
    )
    # Set by the scheduler and by retraining triggers, so the run records why it started.
    run.add_argument("--run-id", help=argparse.SUPPRESS)
    run.add_argument("--trigger", default="manual", help=argparse.SUPPRESS)
    run.add_argument("--trigger-reason", default="", help=argparse.SUPPRESS)
    run.set_defaults(handler=run_pipeline)

    runs = subparsers.add_parser("runs", help="list runs, or show one", description="List runs (newest first).")
    runs.add_argument("--limit", type=int, default=20, help="how many runs to list (default 20)")
    runs.add_argument("--pipeline", dest="pipeline_name", help="only runs of this pipeline")
    runs.add_argument("--host", help="list runs of a Kubeflow Pipelines cluster instead")
    runs.add_argument("--namespace", help="Kubeflow namespace (with --host)")
    runs.add_argument("--token", help="existing bearer token (with --host; prefer --token-file or $FLYWHEEL_KFP_TOKEN)")
    runs.add_argument("--token-file", metavar="PATH", help="read the bearer token from this file (with --host)")
    runs.set_defaults(handler=list_runs)
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    show = runs_sub.add_parser("show", help="show one run's nodes, caching, durations, logs and outputs")
    show.add_argument("run_id", metavar="RUN", help="run id (or a unique prefix)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_run)

    lineage = subparsers.add_parser(
        "lineage",
        help="show what produced an artifact and everything upstream",
        description="Show an artifact's lineage from ML Metadata.",
    )
    lineage.add_argument("artifact", metavar="URI_OR_ID", help="artifact id or URI")
    lineage.add_argument("--downstream", action="store_true", help="show what consumed it instead")
    lineage.set_defaults(handler=show_lineage)


def run_pipeline(args: argparse.Namespace) -> int:
    from flywheel.cli.progress import Progress
    from flywheel.errors import PipelineFileError
    from flywheel.pipeline_file import load_pipeline
    from flywheel.runner import LocalRunner

    if args.list_params:
        return list_params(args)
    home = home_of(args)
    if args.workers is not None and args.workers < 0:
        raise ParameterError(f"--workers must be >= 0; got {args.workers}.")
    runner_args: dict[str, Any] = {"max_workers": args.workers}
    if args.resume:
        from flywheel.metadata import MetadataStore

        if args.param or args.beam_arg:
            raise ParameterError("--resume reuses the run's own parameters; drop --param and --beam-arg.")
        params: dict[str, str] = {}
        previous = MetadataStore(home).get_run(args.resume)
        path = args.pipeline_file or previous.pipeline_file
        if not path:
            raise PipelineFileError(f"Run {previous.run_id} has no recorded pipeline file; pass it.")
        pipe = load_pipeline(path, args.pipeline_name or previous.pipeline)
    else:
        if not args.pipeline_file:
            raise PipelineFileError("flywheel run needs a pipeline file (or --resume RUN).")
        pipe = load_pipeline(args.pipeline_file, args.pipeline_name)
        params = command_params(args, pipe)
        pipe.resolve_parameters(params)  # fail on bad parameters before anything is recorded
    progress = Progress(list(pipe.topological_order()))
    runner = LocalRunner(home, listener=progress.on_event, on_tick=progress.tick, **runner_args)
    print(f"Running pipeline '{pipe.name}' ({len(pipe.tasks)} nodes) in {home.root}", flush=True)
    with progress:
        if args.resume:
            result = runner.resume(pipe, args.resume, cache=not args.no_cache, retries=args.retries)
        else:
            result = runner.run(
                pipe,
                params,
                cache=not args.no_cache,
                retries=args.retries,
                trigger=args.trigger,
                trigger_reason=args.trigger_reason,
                run_id=args.run_id,
                rerun=set(args.rerun),
            )
    _print_outcome(result)
    return 0 if result.ok else 1


def list_params(args: argparse.Namespace) -> int:
    """``run --list-params``: the pipeline's parameters, then each task's (value and source), with -p applied."""
    from flywheel.dsl.addressing import parameter_rows
    from flywheel.errors import PipelineFileError
    from flywheel.pipeline_file import load_pipeline

    if not args.pipeline_file:
        raise PipelineFileError("flywheel run --list-params needs a pipeline file.")
    pipe = load_pipeline(args.pipeline_file, args.pipeline_name)
    rows = parameter_rows(pipe, command_params(args, pipe))
    print(f"Pipeline '{pipe.name}' parameters (-p NAME=VALUE):")
    print(table(["NAME", "TYPE", "SOURCE", "VALUE"], rows["pipeline"]) if rows["pipeline"] else "  (none)")
    print("\nTask parameters (-p TASK.PARAM=VALUE; -p PARAM=VALUE where one task has PARAM):")
    print(table(["TASK", "PARAM", "TYPE", "SOURCE", "VALUE"], rows["tasks"]))
    return 0


def _print_outcome(result: Any) -> None:
    run = result.run
    counts: dict[str, int] = {}
    for state in result.states.values():
        counts[state] = counts.get(state, 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    print(f"\nRun {run.run_id}: {run.state} in {run.duration_s or 0:.2f}s ({summary})")
    warnings = []
    for node_id, outputs in result.outputs.items():
        for name, artifact in outputs.items():
            print(f"  {node_id + '.' + name:<28} {artifact.type:<18} {artifact.uri}")
            if artifact.properties.get("warning_count"):
                features = ", ".join(artifact.properties.get("anomalous_features") or [])
                warnings.append(f"{node_id} recorded {artifact.properties['warning_count']} anomalies as warnings ({features}): {artifact.uri}")
    for line in warnings:
        print(f"\nnote: {line}")
    for node_id, error in result.errors.items():
        log = result.log_paths.get(node_id, "")
        print(f"\nerror: node '{node_id}' failed: {error}" + (f"\n  log: {log}" if log else ""))
    if not result.ok:
        print(f"\nFix the cause, then resume with: flywheel run --resume {run.run_id}")
    else:
        print(f"\nDetails: flywheel runs show {run.run_id}")


def _fmt_time(ms: int | None) -> str:
    return "-" if not ms else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def list_runs(args: argparse.Namespace) -> int:
    if args.host:
        from flywheel.kubeflow.client import list_runs as list_kfp_runs
        from flywheel.kubeflow.client import resolve_token

        token = resolve_token(args.token, args.token_file)
        remote = list_kfp_runs(args.host, limit=args.limit, namespace=args.namespace, existing_token=token)
        rows = [[r["id"], r["name"], r["state"], str(r.get("created_at") or "-"), str(r.get("finished_at") or "-")] for r in remote]
        print(table(["RUN ID", "NAME", "STATE", "CREATED", "FINISHED"], rows))
        return 0
    from flywheel.metadata import MetadataStore

    home = home_of(args)
    if not os.path.exists(home.metadata_db):
        print(f"No runs yet in {home.root}. Start one with: flywheel run PIPELINE_FILE")
        return 0
    runs = MetadataStore(home).list_runs(args.limit, pipeline=args.pipeline_name)
    rows = [
        [r.run_id, r.pipeline, r.state, r.trigger, _fmt_time(r.start_ms), _fmt_duration(r.duration_s)] for r in runs
    ]
    print(table(["RUN ID", "PIPELINE", "STATE", "TRIGGER", "STARTED", "DURATION"], rows))
    return 0


def show_run(args: argparse.Namespace) -> int:
    from flywheel.metadata import MetadataStore

    store = MetadataStore(home_of(args))
    run = store.get_run(args.run_id)
    nodes = store.latest_nodes(run)
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": run.run_id,
                    "pipeline": run.pipeline,
                    "state": run.state,
                    "parameters": run.parameters,
                    "trigger": run.trigger,
                    "error": run.error,
                    "nodes": {
                        n: {
                            "state": e.state,
                            "cached": e.cached,
                            "duration_s": e.duration_s,
                            "attempts": e.attempts,
                            "cache_reason": e.details.get("cache_reason", ""),
                            "data_sources": e.details.get("data_sources", []),
                            "log": e.log_path,
                            "error": e.error,
                            "outputs": {k: {"id": a.id, "type": a.type, "uri": a.uri, "state": a.state} for k, a in e.outputs.items()},
                        }
                        for n, e in nodes.items()
                    },
                },
                indent=2,
            )
        )
        return 0
    print(f"Run       {run.run_id}")
    print(f"Pipeline  {run.pipeline}  ({run.pipeline_file or '-'})")
    print(f"State     {run.state}    trigger: {run.trigger}{' (' + run.trigger_reason + ')' if run.trigger_reason else ''}")
    print(f"Started   {_fmt_time(run.start_ms)}    duration: {_fmt_duration(run.duration_s)}")
    print(f"Params    {json.dumps(run.parameters, sort_keys=True)}")
    if run.error:
        print(f"Error     {run.error}")
    rows = []
    for node_id, e in nodes.items():
        cache = "hit" if e.cached else "miss"
        rows.append([node_id, e.state, cache, _fmt_duration(e.duration_s), str(e.attempts)])
    print()
    print(table(["NODE", "STATE", "CACHE", "DURATION", "ATTEMPTS"], rows))
    for node_id, e in nodes.items():
        print(f"\n{node_id}")
        if e.details.get("cache_reason"):
            print(f"  cache   {'hit' if e.cached else 'miss'}: {e.details['cache_reason']}")
        for source in e.details.get("data_sources", []):
            print(f"  data    {_describe_source(source)}")
        if e.log_path:
            print(f"  log     {e.log_path}")
        if e.error:
            print(f"  error   {e.error}")
        for name, a in e.outputs.items():
            print(f"  output  {name}: {a.type} #{a.id} {a.state} {a.uri}")
    return 0


def _describe_source(source: dict[str, Any]) -> str:
    from flywheel.data_sources import human_bytes

    parts = [str(source.get("uri"))]
    if source.get("span") is not None:
        parts.append(f"span {source['span']}" + (f" version {source['version']}" if source.get("version") is not None else ""))
    if source.get("size") is not None:
        parts.append(f"{human_bytes(source['size'])} in {len(source.get('files', []))} file(s)")
    if source.get("sha256"):
        parts.append(f"sha256 {source['sha256'][:12]}")
    if source.get("error"):
        parts.append(f"error: {source['error']}")
    return ", ".join(parts)


def show_lineage(args: argparse.Namespace) -> int:
    from flywheel.metadata import MetadataStore

    store = MetadataStore(home_of(args))
    artifact = store.get_artifact(args.artifact)
    direction = "downstream" if args.downstream else "upstream"
    print(f"Artifact #{artifact.id} {artifact.type} {artifact.state}\n  {artifact.uri}")
    executions = store.lineage(artifact.id, direction=direction)
    if not executions:
        print(f"\nNothing {direction}." + ("" if args.downstream else " (imported or produced outside flywheel)"))
        return 0
    print(f"\n{'Produced by' if direction == 'upstream' else 'Consumed by'}, nearest first:")
    for e in executions:
        print(f"\n  {e.node_id}  [{e.component}]  execution #{e.id}  {e.state}  run {e.run_id}")
        for name, a in e.inputs.items():
            span = f" (data span {a.properties['span']})" if a.properties.get("span") is not None else ""
            print(f"    <- {name}: {a.type} #{a.id} {a.uri}{span}")
        for name, a in e.outputs.items():
            print(f"    -> {name}: {a.type} #{a.id} {a.uri}")
    return 0

"""CLI commands for Kubeflow Pipelines: compile, submit, schedule.

``register(subparsers)`` adds::

    compile PIPELINE_FILE -o OUT [--image IMAGE] [--serving-image IMAGE] [--pipeline NAME] [--registry-pvc PVC]
            [--object-store-secret SECRET] [--object-store-endpoint URL] [--no-schema-continuity]
    submit PIPELINE_FILE --host URL [--experiment NAME] [--param k=v ...]
           [--namespace NS] [--token TOKEN]
    schedule create NAME --cron EXPR PIPELINE_FILE --host URL [--param k=v ...]
    schedule list --host URL
    schedule {pause,resume,delete} NAME_OR_ID --host URL

Each handler takes the parsed args and returns an exit code; user errors are
``FlywheelError`` subclasses, which the main program prints as one line. kfp
is imported only inside the handlers, so ``flywheel --help`` stays instant.
Schedules without ``--host`` are local schedules, which another module adds;
until then they raise a clear error.
"""

from __future__ import annotations

import argparse
from typing import Any

from flywheel.cli import schedule_commands
from flywheel.cli.common import add_beam_arg, command_params

CRON_HELP = (
    "cron expression: Kubeflow's 6 fields 'SEC MIN HOUR DOM MONTH DOW' (e.g. '0 0 3 * * *') or "
    "standard 5-field cron 'MIN HOUR DOM MONTH DOW' (e.g. '0 3 * * *'), which gets '0 ' (second 0) "
    "prefixed"
)

SERVING_IMAGE_HELP = (
    "serving image the tasks declared @component(image='serving') run, infra_validate among them "
    "(default: flywheel-serving beside --image, same repository and tag)"
)


def _add_connection_args(parser: argparse.ArgumentParser, *, host_required: bool) -> None:
    parser.add_argument(
        "--host",
        required=host_required,
        default=None,
        help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080",
    )
    parser.add_argument("--namespace", default=None, help="Kubernetes namespace (multi-user Kubeflow)")
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token for the KFP API (visible in ps; prefer --token-file or $FLYWHEEL_KFP_TOKEN)",
    )
    parser.add_argument("--token-file", default=None, metavar="PATH", help="read the bearer token from this file")


def _token(args: argparse.Namespace) -> str | None:
    from flywheel.kubeflow.client import resolve_token

    return resolve_token(args.token, args.token_file)


def _add_object_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--object-store-secret", default=None, metavar="SECRET",
        help="Kubernetes Secret (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; k8s/: flywheel-object-store) "
        "every task gets as env, so steps read and write s3:// and minio:// (the IR names the Secret, no value)",
    )
    parser.add_argument(
        "--object-store-endpoint", default=None, metavar="URL",
        help="S3 API endpoint every task gets as FLYWHEEL_S3_ENDPOINT_URL, e.g. http://minio-service.kubeflow:9000",
    )


def _object_store(args: argparse.Namespace) -> Any:
    """The ``ObjectStoreEnv`` the options ask for, or None."""
    if not (args.object_store_secret or args.object_store_endpoint):
        return None
    from flywheel.kubeflow.task_env import ObjectStoreEnv

    return ObjectStoreEnv(secret=args.object_store_secret, endpoint=args.object_store_endpoint)


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", default=None, help="pipeline name, when the file defines several")
    parser.add_argument("--image", default=None, help="component image the tasks run (default: flywheel:<version>)")
    parser.add_argument("--serving-image", default=None, metavar="IMAGE", help=SERVING_IMAGE_HELP)
    parser.add_argument(
        "--registry-pvc", default=None, metavar="PVC",
        help="PersistentVolumeClaim with the model registry (k8s/: flywheel-data); evaluate and push mount it",
    )
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a pipeline parameter, or TASK.PARAM (or PARAM that one task has): compiled in as that task's constant",
    )
    add_beam_arg(parser)
    _add_object_store_args(parser)


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default=None, help="experiment name (created if missing)")
    parser.add_argument(
        "--service-account", default=None, help="service account of the run's pods (e.g. flywheel-pipeline-runner)"
    )
    parser.add_argument("--pipeline-root", default=None, help="object-store URI for the run's artifacts")


def register(subparsers: Any) -> None:
    """Adds ``compile``, ``submit`` and ``schedule`` to an argparse subparsers object."""
    compile_parser = subparsers.add_parser(
        "compile", help="compile a pipeline to Kubeflow Pipelines v2 IR YAML"
    )
    compile_parser.add_argument("pipeline_file", metavar="PIPELINE_FILE")
    compile_parser.add_argument("-o", "--output", required=True, metavar="OUT", help="YAML file to write")
    compile_parser.add_argument(
        "--image", default=None, help="component image the tasks run (default: flywheel:<version>)"
    )
    compile_parser.add_argument("--serving-image", default=None, metavar="IMAGE", help=SERVING_IMAGE_HELP)
    compile_parser.add_argument("--pipeline", default=None, help="pipeline name, when the file defines several")
    compile_parser.add_argument(
        "--registry-pvc", default=None, metavar="PVC",
        help="PersistentVolumeClaim with the model registry (k8s/: flywheel-data); evaluate and push mount it",
    )
    compile_parser.add_argument(
        "-p", "--param", action="append", metavar="NAME=VALUE",
        help="fix a pipeline parameter at compile time (it leaves the compiled pipeline's run-time parameters), "
        "or a task's: TASK.PARAM, or PARAM that one task has",
    )
    add_beam_arg(compile_parser)
    compile_parser.add_argument(
        "--fix-defaults", action="store_true",
        help="fix every parameter not given with -p at its default too; a tune with constant random or grid "
        "search then fans its trials out as parallel tasks (e.g. pipelines/tuning.py -p strategy=random --fix-defaults)",
    )
    compile_parser.add_argument(
        "--no-conditions", action="store_true",
        help="compile If blocks as plain tasks, for orchestrators that cannot evaluate dsl.If (kfp.local alone)",
    )
    _add_object_store_args(compile_parser)
    compile_parser.add_argument(
        "--no-schema-continuity", action="store_true",
        help="leave latest() schema/statistics inputs unconnected instead of reading the serving version's "
        "kept schema from the registry (validate then infers a schema every run)",
    )
    compile_parser.set_defaults(handler=compile_command)

    submit_parser = subparsers.add_parser("submit", help="start a run on Kubeflow Pipelines")
    submit_parser.add_argument("pipeline_file", metavar="PIPELINE_FILE", help="pipeline .py file or compiled .yaml")
    _add_connection_args(submit_parser, host_required=True)
    _add_run_args(submit_parser)
    _add_pipeline_args(submit_parser)
    submit_parser.set_defaults(handler=submit_command)

    schedule_parser = subparsers.add_parser(
        "schedule",
        help="recurring runs: local (fired by `flywheel scheduler`) or Kubeflow recurring runs with --host",
    )
    actions = schedule_parser.add_subparsers(dest="schedule_action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser("create", help="create a recurring run", description=f"--cron: {CRON_HELP}.")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--cron", required=True, help=CRON_HELP)
    create.add_argument("pipeline_file", metavar="PIPELINE_FILE", help="pipeline .py file or compiled .yaml")
    _add_connection_args(create, host_required=False)
    _add_run_args(create)
    create.add_argument(
        "--max-concurrency", type=int, default=1, help="runs of this schedule allowed at once (default 1)"
    )
    create.add_argument(
        "--catchup",
        action="store_true",
        help="back-fill intervals missed while paused (default: no catch-up, only the latest runs)",
    )
    _add_pipeline_args(create)
    create.set_defaults(handler=schedule_create_command)

    listing = actions.add_parser("list", help="list recurring runs")
    _add_connection_args(listing, host_required=False)
    listing.set_defaults(handler=schedule_list_command)

    for action, text in (("pause", "pause"), ("resume", "resume"), ("delete", "delete")):
        change = actions.add_parser(action, help=f"{text} a recurring run")
        change.add_argument("name", metavar="NAME_OR_ID", help="display name or id of the recurring run")
        _add_connection_args(change, host_required=False)
        change.set_defaults(handler=schedule_change_command)


def compile_command(args: argparse.Namespace) -> int:
    """``compile``: writes the IR YAML and says where."""
    from flywheel.kubeflow.compiler import DEFAULT_IMAGE, compile_pipeline
    from flywheel.pipeline_file import load_pipeline

    pipeline = load_pipeline(args.pipeline_file, args.pipeline)
    fixed: dict[str, Any] = pipeline.expand_names(command_params(args, pipeline))
    if args.fix_defaults:
        fixed = {**pipeline.resolve_parameters(fixed), **fixed}
    pipeline = pipeline.bind(fixed)
    compile_pipeline(pipeline, args.output, image=args.image or DEFAULT_IMAGE, registry_pvc=args.registry_pvc,
                     conditions=not args.no_conditions, object_store=_object_store(args),
                     schema_continuity=not args.no_schema_continuity, serving_image=args.serving_image)
    print(f"Compiled pipeline '{pipeline.name}' ({len(pipeline.tasks)} tasks) to {args.output}")
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """(the pipeline object for a .py file, a .yaml path as is; the -p/--beam-arg values), the values
    checked against a .py pipeline before connecting."""
    from flywheel.pipeline_file import load_pipeline

    if args.pipeline_file.endswith((".yaml", ".yml", ".json")):
        return args.pipeline_file, command_params(args)
    pipeline = load_pipeline(args.pipeline_file, args.pipeline)
    params = command_params(args, pipeline)
    pipeline.resolve_parameters(params)
    return pipeline, params


def submit_command(args: argparse.Namespace) -> int:
    """``submit``: starts a run and prints its id and dashboard URL."""
    from flywheel.kubeflow import client

    pipeline, params = _load(args)
    run_id, url = client.submit(
        pipeline,
        args.host,
        experiment=args.experiment,
        params=params,
        namespace=args.namespace,
        existing_token=_token(args),
        image=args.image,
        serving_image=args.serving_image,
        service_account=args.service_account,
        pipeline_root=args.pipeline_root,
        registry_pvc=args.registry_pvc,
        object_store=_object_store(args),
    )
    print(f"Run id: {run_id}")
    print(f"Dashboard: {url}")
    return 0


def schedule_create_command(args: argparse.Namespace) -> int:
    """``schedule create``: validates cron first, then creates a KFP recurring run."""
    from flywheel.kubeflow import client
    from flywheel.kubeflow.cron import to_kfp_cron

    if not args.host:
        return schedule_commands.create_local(args)
    kfp_cron = to_kfp_cron(args.cron)  # a bad expression fails before anything else
    host = args.host
    pipeline, params = _load(args)
    schedule_id, url = client.create_schedule(
        args.name,
        kfp_cron,
        pipeline,
        host,
        max_concurrency=args.max_concurrency,
        no_catchup=not args.catchup,
        params=params,
        experiment=args.experiment,
        namespace=args.namespace,
        existing_token=_token(args),
        image=args.image,
        serving_image=args.serving_image,
        service_account=args.service_account,
        pipeline_root=args.pipeline_root,
        registry_pvc=args.registry_pvc,
        object_store=_object_store(args),
    )
    print(f"Schedule '{args.name}' created: id {schedule_id}, cron '{kfp_cron}'")
    print(f"Dashboard: {url}")
    return 0


def schedule_list_command(args: argparse.Namespace) -> int:
    """``schedule list``: one line per recurring run."""
    from flywheel.kubeflow import client

    if not args.host:
        return schedule_commands.list_local(args)
    host = args.host
    schedules = client.list_schedules(host, namespace=args.namespace, existing_token=_token(args))
    if not schedules:
        print("No recurring runs.")
        return 0
    print(f"{'ID':<38} {'NAME':<24} {'CRON':<20} {'STATE':<8} CONCURRENCY")
    for item in schedules:
        state = "enabled" if item["enabled"] else "paused"
        print(
            f"{item['id'] or '':<38} {item['name'] or '':<24} {item['cron'] or '':<20} {state:<8} "
            f"{item['max_concurrency']}"
        )
    return 0


def schedule_change_command(args: argparse.Namespace) -> int:
    """``schedule pause|resume|delete``."""
    from flywheel.kubeflow import client

    if not args.host:
        return schedule_commands.change_local(args, args.schedule_action)
    host = args.host
    change = {
        "pause": client.pause_schedule,
        "resume": client.resume_schedule,
        "delete": client.delete_schedule,
    }[args.schedule_action]
    schedule_id = change(args.name, host, namespace=args.namespace, existing_token=_token(args))
    past = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[args.schedule_action]
    print(f"Schedule '{args.name}' ({schedule_id}) {past}.")
    return 0

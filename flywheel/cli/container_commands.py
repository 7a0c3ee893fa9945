"""``flywheel container-run``: a compiled pipeline, task by task in containers, via kfp.local.

Registered by the CLI's main module with ``container_commands.register(subparsers)``::

    flywheel compile pipelines/training.py -o training.yaml
    flywheel container-run training.yaml --pipeline-root runs/ --registry registry/ -p epochs=5

kfp (and its DockerRunner) and docker are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from flywheel.cli.common import parse_params


def register(subparsers: Any) -> None:
    """Adds ``container-run`` to the CLI's subparsers."""
    run = subparsers.add_parser(
        "container-run",
        help="run a compiled pipeline (IR YAML) task by task in containers, with kfp.local's DockerRunner",
        description=(
            "Runs Kubeflow Pipelines IR (from `flywheel compile`) with kfp's own local orchestrator and its "
            "DockerRunner against DOCKER_HOST (Docker, or podman's API: `podman system service`). Every task "
            "runs in its image as uid 10001 with a read-only root filesystem, as on a cluster; --runner subprocess "
            "runs the tasks as processes of this Python instead. dsl.If conditions are evaluated."
        ),
    )
    run.add_argument("ir_file", metavar="IR_YAML", help="compiled pipeline (flywheel compile -o ...)")
    run.add_argument("--pipeline-root", required=True, metavar="DIR", help="host directory for every task's outputs")
    run.add_argument(
        "--registry", default=None, metavar="DIR",
        help="host directory of the model registry, mounted into the tasks (push writes versions there)",
    )
    run.add_argument(
        "--runner", choices=("docker", "subprocess"), default="docker",
        help="docker: each task in its image (default); subprocess: each task as a process of this Python, no image",
    )
    run.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
        help="pipeline parameter; VALUE is read as JSON when it parses (5, 0.1, [16, 8]), else as text",
    )
    run.set_defaults(handler=container_run_command)


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def container_run_command(args: argparse.Namespace) -> int:
    """Runs ``flywheel container-run``; returns the exit code.

    Raises:
        FlywheelError: no engine, an unusable IR or argument, or a failed task.
    """
    from flywheel.kubeflow.container_run import ContainerRunError, run_compiled_pipeline

    if not os.path.isfile(args.ir_file):
        raise ContainerRunError(f"IR_YAML must be a compiled pipeline file; '{args.ir_file}' does not exist.")
    arguments = {name: _json_or_text(value) for name, value in parse_params(args.param).items()}
    run_compiled_pipeline(
        args.ir_file, pipeline_root=args.pipeline_root, arguments=arguments, registry_dir=args.registry,
        runner=args.runner,
    )
    print(f"Pipeline finished; outputs under {os.path.abspath(args.pipeline_root)}")
    return 0

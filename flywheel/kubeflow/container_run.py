"""Running compiled KFP IR task by task in containers, through kfp's own local orchestrator.

``kfp.local`` (the kfp SDK's local runner) reads the IR, orders the DAG, builds each task's
executor input exactly as the KFP launcher does, substitutes ``{{$}}``, runs the task with
its ``DockerRunner`` and reads the executor output back. This module adds what a cluster
would enforce and kfp 2.13's ``DockerRunner`` has no options for:

* every task runs as ``uid`` (10001, the image's user) with a read-only root filesystem and
  tmpfs scratch at ``/tmp`` and ``/var/lib/flywheel`` (as a pod with
  ``readOnlyRootFilesystem`` and ``emptyDir`` volumes would);
* host directories mounted into every task (the model registry at ``REGISTRY_MOUNT``, as
  ``--registry-pvc`` mounts the PVC on a cluster);
* images found by the engine's own name resolution (podman names a local build
  ``localhost/flywheel:<tag>``); a missing image is an error, never a pull.

The engine is whatever ``DOCKER_HOST`` points at: Docker, or podman's Docker-compatible API
(``podman system service``). kfp and docker are imported lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from typing import Any, Iterator, Mapping

from flywheel.kubeflow.compiler import REGISTRY_MOUNT
from flywheel.kubeflow.errors import KubeflowError

TASK_UID = 10001
# Writable scratch of a task under a read-only root (HOME/FLYWHEEL_HOME and TMPDIR of the image).
SCRATCH_MOUNTS = ("/tmp", "/var/lib/flywheel")


class ContainerRunError(KubeflowError):
    """A compiled pipeline cannot be run in containers, or one of its tasks failed."""


@dataclasses.dataclass(frozen=True)
class TaskContainerOptions:
    """How every task container runs (see the module docstring)."""

    uid: int = TASK_UID
    read_only_root: bool = True
    mounts: Mapping[str, str] = dataclasses.field(default_factory=dict)  # host dir -> container dir


def _refuse_control_flow(spec: Any) -> None:
    """Raises ContainerRunError for control flow kfp 2.13's local orchestrator cannot run."""
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    for dag in dags:
        for name, task in dag.tasks.items():
            if task.trigger_policy.condition:
                raise ContainerRunError(
                    f"Task '{name}' of the compiled pipeline runs under a condition (dsl.If), which kfp.local "
                    "cannot evaluate. Compile for container-run with `flywheel compile --no-conditions` (the "
                    "tasks inside run unconditionally; push still refuses an unblessed model)."
                )
            if task.WhichOneof("iterator") or any(p.HasField("task_final_status") for p in task.inputs.parameters.values()):
                raise ContainerRunError(
                    f"Task '{name}' of the compiled pipeline is a ParallelFor or an exit handler's task, which "
                    "kfp.local (kfp 2.13) cannot run; run the pipeline with `flywheel run` or on Kubeflow."
                )


def run_compiled_pipeline(
    ir_path: str | os.PathLike[str],
    *,
    pipeline_root: str | os.PathLike[str],
    arguments: Mapping[str, Any] | None = None,
    registry_dir: str | os.PathLike[str] | None = None,
    options: TaskContainerOptions | None = None,
) -> dict[str, Any]:
    """Runs the pipeline of a compiled IR YAML file, each task in its container.

    Args:
        ir_path: IR written by ``flywheel compile``.
        pipeline_root: Host directory where every task's outputs land (created; mounted
            into each task at the same path, as kfp.local does).
        arguments: Pipeline parameters, e.g. ``{"epochs": 5}``.
        registry_dir: Host directory of the model registry; mounted at ``REGISTRY_MOUNT``
            and passed as the ``registry`` parameter when the pipeline has one.
        options: Task container options; defaults to uid 10001 and a read-only root.

    Returns:
        The pipeline's outputs, as ``kfp.local`` returns them.

    Raises:
        ContainerRunError: the IR or an argument is unusable, or a task failed.
        flywheel.images.DockerUnavailableError: no engine answers at DOCKER_HOST.
    """
    import yaml
    from kfp import components, local

    from flywheel.images import connect

    options = options or TaskContainerOptions()
    args = dict(arguments or {})
    try:
        pipeline = components.load_component_from_file(os.fspath(ir_path))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ContainerRunError(f"Cannot load the compiled pipeline '{ir_path}': {exc}. Compile it with `flywheel compile`.") from exc
    _refuse_control_flow(pipeline.pipeline_spec)
    if registry_dir is not None and "registry" in pipeline.component_spec.inputs:
        args.setdefault("registry", f"{REGISTRY_MOUNT}/registry")
    unknown = sorted(set(args) - set(pipeline.component_spec.inputs or {}))
    if unknown:
        raise ContainerRunError(
            f"The pipeline '{pipeline.name}' has no parameters {unknown}; it takes {sorted(pipeline.component_spec.inputs or {})}."
        )
    # Tasks run as options.uid: they create their outputs under the root and versions in the registry.
    root = os.path.abspath(os.fspath(pipeline_root))
    mounts = dict(options.mounts)
    if registry_dir is not None:
        mounts[os.path.abspath(os.fspath(registry_dir))] = f"{REGISTRY_MOUNT}/registry"
    for directory in (root, *([os.path.abspath(os.fspath(registry_dir))] if registry_dir is not None else [])):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o777)
    connect().close()  # one clear line now when no engine answers, not a traceback per task
    local.init(runner=local.DockerRunner(), pipeline_root=root, raise_on_error=True)
    with _task_containers(dataclasses.replace(options, mounts=mounts)):
        try:
            task = pipeline(**args)
        except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # kfp.local colours its messages
            raise ContainerRunError(f"{plain} (task logs above; outputs under {root}).") from exc
    return dict(task.outputs) if hasattr(task, "outputs") and isinstance(task.outputs, dict) else {}


@contextlib.contextmanager
def _task_containers(options: TaskContainerOptions) -> Iterator[None]:
    """Makes kfp.local's DockerRunner start each task container with ``options``.

    kfp 2.13 hands every task to ``docker_task_handler.run_docker_container(client, image,
    command, volumes)`` with no further options, so that one function is swapped for the
    duration (kfp's own ``testing_utilities`` patch the same handler); so is the executor-input
    construction, for optional inputs left unconnected (see below).
    """
    from kfp.local import docker_task_handler, executor_input_utils

    original_run = docker_task_handler.run_docker_container
    original_construct = executor_input_utils.construct_executor_input

    def run_task_container(client: Any, image: str, command: list, volumes: dict) -> int:
        return run_task(client, image, command, {**volumes, **_binds(options.mounts)}, options)

    def construct_without_absent_optional_inputs(component_spec: Any, arguments: dict, **kwargs: Any) -> Any:
        # kfp.local 2.13 fails with KeyError on an optional input artifact nobody feeds (validate's
        # curated_schema on a first run); the KFP launcher leaves such an input out of the executor
        # input, and so does this.
        absent = [
            name for name, spec in component_spec.input_definitions.artifacts.items()
            if name not in arguments and spec.is_optional
        ]
        if absent:
            trimmed = type(component_spec)()
            trimmed.CopyFrom(component_spec)
            for name in absent:
                del trimmed.input_definitions.artifacts[name]
            component_spec = trimmed
        return original_construct(component_spec=component_spec, arguments=arguments, **kwargs)

    docker_task_handler.run_docker_container = run_task_container
    executor_input_utils.construct_executor_input = construct_without_absent_optional_inputs
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original_run
        executor_input_utils.construct_executor_input = original_construct


def _binds(mounts: Mapping[str, str]) -> dict[str, dict[str, str]]:
    return {host: {"bind": target, "mode": "rw"} for host, target in mounts.items()}


def run_task(client: Any, image: str, command: list, volumes: dict, options: TaskContainerOptions) -> int:
    """Runs one task container to completion, streams its log, removes it; returns its exit status.

    Raises:
        ContainerRunError: the image is not in the engine's image store.
    """
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound as exc:
        raise ContainerRunError(
            f"Image {image} is not in the engine's image store; build it with `flywheel image build` "
            "(or compile with --image naming one the engine has)."
        ) from exc
    container = client.containers.run(
        image=image,
        command=command,
        detach=True,
        user=f"{options.uid}:{options.uid}",
        read_only=options.read_only_root,
        tmpfs={path: "rw,size=2g,mode=1777" for path in SCRATCH_MOUNTS},
        volumes=volumes,
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def podman_docker_api(socket_path: str | os.PathLike[str], *, start_timeout_s: float = 30) -> Iterator[str]:
    """Serves podman's Docker-compatible API at ``socket_path`` while the block runs.

    Yields the ``DOCKER_HOST`` value (``unix://<socket_path>``); the service is stopped on exit.

    Raises:
        ContainerRunError: podman is not installed or the API did not come up in time.
    """
    import shutil
    import subprocess
    import time

    if shutil.which("podman") is None:
        raise ContainerRunError("podman is not installed; install podman, buildah and runc (docker/engine-setup.sh).")
    path = os.path.abspath(os.fspath(socket_path))
    host = f"unix://{path}"
    import tempfile

    log = tempfile.TemporaryFile()  # a pipe nobody reads would block the service once full
    service = subprocess.Popen(["podman", "system", "service", "--time=0", host], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + start_timeout_s
        while not os.path.exists(path):
            if service.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                error = log.read().decode(errors="replace").strip()
                raise ContainerRunError(
                    f"podman's Docker API did not come up at {host} within {start_timeout_s:.0f}s"
                    f"{': ' + error.splitlines()[-1] if error else ''}. Check `podman info`."
                )
            time.sleep(0.2)
        yield host
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()

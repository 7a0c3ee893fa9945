"""Running compiled KFP IR task by task, through kfp's own local orchestrator.

``kfp.local`` (the kfp SDK's local runner) reads the IR, orders the DAG, builds each task's
executor input exactly as the KFP launcher does, substitutes ``{{$}}``, runs the task and
reads the executor output back. Two runners (``runner=``):

* ``"docker"``: each task in its image through kfp.local's ``DockerRunner``, with what a
  cluster would enforce and kfp 2.13's ``DockerRunner`` has no options for: every task runs as
  ``uid`` (10001, the image's user) with a read-only root filesystem and tmpfs scratch at
  ``/tmp`` and ``/var/lib/flywheel`` (as a pod with ``readOnlyRootFilesystem`` and ``emptyDir``
  volumes would); host directories mounted into every task (the model registry at
  ``REGISTRY_MOUNT``, as ``--registry-pvc`` mounts the PVC on a cluster); images found by the
  engine's own name resolution (podman names a local build ``localhost/flywheel:<tag>``); a
  missing image is an error, never a pull. The engine is whatever ``DOCKER_HOST`` points at:
  Docker, or podman's Docker-compatible API (``podman system service``).
* ``"subprocess"``: each task's command (``python -m flywheel.kubeflow.entrypoint ...``) as a
  subprocess of this interpreter on the host, no image, no engine (kfp.local's own
  ``SubprocessRunner`` only runs kfp's lightweight components, so its handler is replaced).

kfp 2.13's DAG orchestrator refuses ``dsl.If``; this module runs the DAG itself for the IR's
conditions (``_run_dag``): a task's ``trigger_policy.condition`` (the CEL kfp's compiler writes:
``==``, ``!=``, ``<``... on ``inputs.parameter_values[...]``, ``int()``/``double()`` casts,
``!( )``, ``&&``, ``||``) is evaluated on the task's resolved input parameters; when it is false
the task (a whole sub-DAG for a ``dsl.If`` group) is SKIPPED, and so is every task downstream of
a skipped one (KFP's semantics); the run still succeeds. ``ParallelFor`` and exit handlers stay
refused. kfp and docker are imported lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from typing import Any, Callable, Iterator, Mapping

from flywheel.kubeflow.compiler import REGISTRY_MOUNT
from flywheel.kubeflow.errors import KubeflowError

TASK_UID = 10001
# Writable scratch of a task under a read-only root (HOME/FLYWHEEL_HOME and TMPDIR of the image).
SCRATCH_MOUNTS = ("/tmp", "/var/lib/flywheel")
RUNNERS = ("docker", "subprocess")
# Task states reported to ``on_task`` (KFP's run-detail task states).
RUNNING, SUCCEEDED, FAILED, SKIPPED = "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED"

TaskListener = Callable[[str, str, str], None]  # (task name, state, detail)


class ContainerRunError(KubeflowError):
    """A compiled pipeline cannot be run in containers, or one of its tasks failed."""


@dataclasses.dataclass(frozen=True)
class TaskContainerOptions:
    """How every task runs (see the module docstring); ``env`` is added to every task's environment."""

    uid: int = TASK_UID
    read_only_root: bool = True
    mounts: Mapping[str, str] = dataclasses.field(default_factory=dict)  # host dir -> container dir
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


# --- trigger_policy.condition: the CEL subset kfp's compiler writes -----------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<param>inputs\.parameter_values\[\s*'(?P<pname>[^']*)'\s*\])
      | (?P<string>'(?P<sval>[^']*)')
      | (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
      | (?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\))
      | (?P<word>[A-Za-z_]+)
    )""",
    re.VERBOSE,
)
_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _tokens(condition: str) -> list[tuple[str, Any]]:
    tokens, position = [], 0
    while position < len(condition.rstrip()):
        match = _TOKEN.match(condition, position)
        if match is None:
            raise ValueError(f"cannot read {condition[position:].strip()[:40]!r}")
        kind = next(k for k in ("param", "string", "number", "op", "word") if match.group(k) is not None)
        value = {"param": match.group("pname"), "string": match.group("sval")}.get(kind, match.group(kind))
        if kind == "number":
            value = float(value) if any(c in value for c in ".eE") else int(value)
        elif kind == "word":
            if value in ("true", "false"):
                kind, value = "bool", value == "true"
            elif value not in ("int", "double", "string"):
                raise ValueError(f"unknown name {value!r}")
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Condition:
    """A parsed ``trigger_policy.condition``; ``holds(parameters)`` evaluates it.

    Grammar: ``or := and ('||' and)*``, ``and := unary ('&&' unary)*``,
    ``unary := '!' unary | '(' or ')' | operand OP operand``,
    ``operand := PARAM | 'string' | NUMBER | true | false | int(operand) | double(operand) | string(operand)``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._tokens = _tokens(text)
        self._at = 0
        self.tree = self._or()
        if self._at != len(self._tokens):
            raise ValueError(f"unexpected {self._tokens[self._at][1]!r}")
        self.parameters = sorted(self._names(self.tree))

    def _peek(self) -> tuple[str, Any] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, Any]:
        token = self._peek()
        if token is None or (value is not None and token != ("op", value)):
            raise ValueError(f"expected {value or 'more'!r} after {self._tokens[self._at - 1][1]!r}" if self._at else "empty")
        self._at += 1
        return token

    def _or(self) -> tuple:
        node = self._and()
        while self._peek() == ("op", "||"):
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> tuple:
        node = self._unary()
        while self._peek() == ("op", "&&"):
            self._take()
            node = ("and", node, self._unary())
        return node

    def _unary(self) -> tuple:
        if self._peek() == ("op", "!"):
            self._take()
            return ("not", self._unary())
        if self._peek() == ("op", "("):
            self._take()
            node = self._or()
            self._take(")")
            return node
        left = self._operand()
        kind, operator = self._take()
        if kind != "op" or operator not in _COMPARE:
            raise ValueError(f"expected a comparison, got {operator!r}")
        return ("compare", operator, left, self._operand())

    def _operand(self) -> tuple:
        kind, value = self._take()
        if kind == "word":
            self._take("(")
            inner = self._operand()
            self._take(")")
            return ("cast", value, inner)
        if kind == "op":
            raise ValueError(f"expected a value, got {value!r}")
        return (kind, value)

    def _names(self, node: tuple) -> set[str]:
        if node[0] == "param":
            return {node[1]}
        return set().union(*(self._names(child) for child in node[1:] if isinstance(child, tuple)))

    def holds(self, parameters: Mapping[str, Any]) -> bool:
        return bool(self._eval(self.tree, parameters))

    def _eval(self, node: tuple, parameters: Mapping[str, Any]) -> Any:
        kind = node[0]
        if kind == "or":
            return self._eval(node[1], parameters) or self._eval(node[2], parameters)
        if kind == "and":
            return self._eval(node[1], parameters) and self._eval(node[2], parameters)
        if kind == "not":
            return not self._eval(node[1], parameters)
        if kind == "compare":
            left, right = self._eval(node[2], parameters), self._eval(node[3], parameters)
            left, right = _comparable(left, right), _comparable(right, left)
            if isinstance(left, str) != isinstance(right, str) or isinstance(left, bool) != isinstance(right, bool):
                raise ContainerRunError(
                    f"The condition {self.text!r} compares {type(left).__name__} {left!r} with "
                    f"{type(right).__name__} {right!r}; recompile the pipeline with `flywheel compile`."
                )
            return _COMPARE[node[1]](left, right)
        if kind == "cast":
            value = self._eval(node[2], parameters)
            try:
                return {"int": lambda v: int(float(v)), "double": float, "string": str}[node[1]](value)
            except (TypeError, ValueError) as exc:
                raise ContainerRunError(f"The condition {self.text!r} cannot apply {node[1]}() to {value!r}.") from exc
        if kind == "param":
            if node[1] not in parameters:
                raise ContainerRunError(
                    f"The condition {self.text!r} reads input parameter '{node[1]}', which the task does not "
                    f"have (it has {sorted(parameters)}); the IR is inconsistent, recompile it."
                )
            return parameters[node[1]]
        return node[1]


def _comparable(value: Any, other: Any) -> Any:
    """CEL's values from kfp.local's Python ones: a bool sent as text, an integral double as an int."""
    if isinstance(other, bool) and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, float) and value.is_integer() and isinstance(other, int) and not isinstance(other, bool):
        return int(value)
    return value


def parse_condition(text: str, task: str = "?") -> _Condition:
    """Parses a ``trigger_policy.condition``.

    Raises:
        ContainerRunError: the condition is not in the subset kfp's compiler writes.
    """
    try:
        return _Condition(text)
    except ValueError as exc:
        raise ContainerRunError(
            f"Task '{task}' runs under the condition {text!r}, which flywheel's local orchestrator cannot read "
            f"({exc}); it evaluates the conditions kfp's compiler writes for dsl.If (comparisons of input "
            "parameters with constants, !, &&, ||). Compile with `flywheel compile --no-conditions` to run it here."
        ) from None


def _dags(spec: Any) -> list[Any]:
    return [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]


def _check_control_flow(spec: Any) -> None:
    """Refuses control flow the orchestrator cannot run; parses every condition before anything runs."""
    for dag in _dags(spec):
        for name, task in dag.tasks.items():
            if task.trigger_policy.condition:
                parse_condition(task.trigger_policy.condition, name)
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
    runner: str = "docker",
    on_task: TaskListener | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Runs the pipeline of a compiled IR YAML file, task by task.

    Args:
        ir_path: IR written by ``flywheel compile``.
        pipeline_root: Host directory where every task's outputs land (created; mounted
            into each task at the same path, as kfp.local does).
        arguments: Pipeline parameters, e.g. ``{"epochs": 5}``.
        registry_dir: Host directory of the model registry; with ``docker`` mounted at
            ``REGISTRY_MOUNT``; passed as the ``registry`` parameter when the pipeline has one
            and ``arguments`` do not set it.
        options: Task options; defaults to uid 10001 and a read-only root (``docker`` only;
            ``env`` applies to both runners).
        runner: ``"docker"`` (each task in its image) or ``"subprocess"`` (each task as a
            subprocess of this interpreter; see the module docstring).
        on_task: Called ``(task, state, detail)`` as each task starts (RUNNING) and ends
            (SUCCEEDED, FAILED, SKIPPED with the reason).
        run_id: What KFP's run-id placeholder (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``, push's
            lineage) resolves to; kfp.local's random id when None.

    Returns:
        The pipeline's outputs, as ``kfp.local`` returns them (outputs of skipped tasks left out).

    Raises:
        ContainerRunError: the IR or an argument is unusable, or a task failed.
        flywheel.images.DockerUnavailableError: no engine answers at DOCKER_HOST.
    """
    import yaml
    from kfp import components, local

    if runner not in RUNNERS:
        raise ContainerRunError(f"runner must be one of {list(RUNNERS)}; got {runner!r}.")
    options = options or TaskContainerOptions()
    args = dict(arguments or {})
    try:
        pipeline = components.load_component_from_file(os.fspath(ir_path))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ContainerRunError(f"Cannot load the compiled pipeline '{ir_path}': {exc}. Compile it with `flywheel compile`.") from exc
    _check_control_flow(pipeline.pipeline_spec)
    registry = os.path.abspath(os.fspath(registry_dir)) if registry_dir is not None else None
    if registry is not None and "registry" in (pipeline.component_spec.inputs or {}):
        args.setdefault("registry", f"{REGISTRY_MOUNT}/registry" if runner == "docker" else registry)
    unknown = sorted(set(args) - set(pipeline.component_spec.inputs or {}))
    if unknown:
        raise ContainerRunError(
            f"The pipeline '{pipeline.name}' has no parameters {unknown}; it takes {sorted(pipeline.component_spec.inputs or {})}. "
            "A task's own parameter is fixed when compiling: flywheel compile PIPELINE.py -p TASK.PARAM=VALUE."
        )
    root = os.path.abspath(os.fspath(pipeline_root))
    mounts = dict(options.mounts)
    if registry is not None and runner == "docker":
        mounts[registry] = f"{REGISTRY_MOUNT}/registry"
    # Tasks run as options.uid: they create their outputs under the root and versions in the registry.
    for directory in (root, *([registry] if registry is not None else [])):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o777)
    if runner == "docker":
        from flywheel.images import connect

        connect().close()  # one clear line now when no engine answers, not a traceback per task
        kfp_runner: Any = local.DockerRunner()
    else:
        kfp_runner = local.SubprocessRunner(use_venv=False)
    local.init(runner=kfp_runner, pipeline_root=root, raise_on_error=True)
    with _task_containers(dataclasses.replace(options, mounts=mounts), on_task=on_task, run_id=run_id):
        try:
            task = pipeline(**args)
        except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # kfp.local colours its messages
            raise ContainerRunError(f"{plain} (task logs above; outputs under {root}).") from exc
    return dict(task.outputs) if hasattr(task, "outputs") and isinstance(task.outputs, dict) else {}


@contextlib.contextmanager
def _task_containers(
    options: TaskContainerOptions, on_task: TaskListener | None = None, run_id: str | None = None
) -> Iterator[None]:
    """Makes kfp.local run each task with ``options`` and the DAG with conditions.

    kfp 2.13 hands every task to ``docker_task_handler.run_docker_container(client, image,
    command, volumes)`` with no further options, so that one function is swapped for the
    duration (kfp's own ``testing_utilities`` patch the same handler); so are the subprocess
    handler (see ``_host_task_handler``), the DAG orchestrator (``_run_dag``) and the
    executor-input construction, for optional inputs left unconnected (see below).
    """
    from kfp.local import dag_orchestrator, docker_task_handler, executor_input_utils, subprocess_task_handler

    originals = (
        docker_task_handler.run_docker_container, executor_input_utils.construct_executor_input,
        subprocess_task_handler.SubprocessTaskHandler, dag_orchestrator.run_dag,
    )
    original_construct = originals[1]

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
    subprocess_task_handler.SubprocessTaskHandler = _host_task_handler(options)
    dag_orchestrator.run_dag = _dag_runner(on_task or (lambda task, state, detail: None), run_id)
    try:
        yield
    finally:
        (docker_task_handler.run_docker_container, executor_input_utils.construct_executor_input,
         subprocess_task_handler.SubprocessTaskHandler, dag_orchestrator.run_dag) = originals


def _host_task_handler(options: TaskContainerOptions) -> type:
    """kfp.local's task handler for ``runner="subprocess"``: the task's command on the host.

    kfp's own ``SubprocessTaskHandler`` refuses any command but its lightweight components'
    (``kfp.dsl.executor_main``); a flywheel task is ``python -m flywheel.kubeflow.entrypoint ...``, run
    here with this interpreter and ``options.env`` added to the environment.
    """
    from kfp.local import status

    class HostTaskHandler:
        def __init__(self, image: str, full_command: list, pipeline_root: str, runner: Any) -> None:
            if not full_command or os.path.basename(full_command[0]) not in ("python", "python3"):
                raise ContainerRunError(
                    f"The subprocess runner runs Python tasks (python -m flywheel.kubeflow.entrypoint ...); this task runs "
                    f"{full_command[:1]} in image {image}. Use runner='docker' for it."
                )
            self.command = [sys.executable, *full_command[1:]]

        def run(self) -> Any:
            return status.Status.SUCCESS if run_host_task(self.command, options.env) == 0 else status.Status.FAILURE

    return HostTaskHandler


def run_host_task(command: list, env: Mapping[str, str]) -> int:
    """Runs one task's command as a subprocess, streams its output, returns its exit status."""
    import subprocess

    with subprocess.Popen(  # noqa: S603 - the compiled task's own command
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        env={**os.environ, **env},
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="")
        return process.wait()


def _dag_runner(on_task: TaskListener, run_id: str | None = None) -> Callable[..., Any]:
    """kfp.local's ``dag_orchestrator.run_dag``, plus conditions (see the module docstring).

    The loop is kfp 2.13's (same helpers, same order, same failure handling: the first failed
    task fails the DAG); what it adds: a task whose condition is false, or that waits for a
    skipped task, is SKIPPED with its sub-DAG, and the DAG's outputs leave skipped producers out.
    """
    from kfp.local import dag_orchestrator, graph_utils, importer_handler, io, status, task_dispatcher

    def run_dag(
        pipeline_resource_name: str, dag_component_spec: Any, executors: dict, components: dict,
        dag_arguments: dict, pipeline_root: str, runner: Any, unique_pipeline_id: str, fail_stack: list,
    ) -> tuple[dict, Any]:
        unique_pipeline_id = run_id or unique_pipeline_id
        io_store = io.IOStore()
        defaults = dag_orchestrator.join_user_inputs_and_defaults(
            dag_arguments=dag_arguments, dag_inputs_spec=dag_component_spec.input_definitions
        )
        for key, value in defaults.items():
            io_store.put_parent_input(key, value)
        dag = dag_component_spec.dag
        skipped: set[str] = set()
        order = graph_utils.topological_sort_tasks(dag.tasks)
        while order:
            name = order.pop()
            task = dag.tasks[name]
            component = components[task.component_ref.name]
            waited = sorted(set(task.dependent_tasks) & skipped)
            if waited:
                _skip(name, component, components, f"upstream task {waited[0]} was skipped", on_task, skipped)
                continue
            arguments = dag_orchestrator.make_task_arguments(task.inputs, io_store)
            if task.trigger_policy.condition:
                condition = parse_condition(task.trigger_policy.condition, name)
                values = {key: arguments[key] for key in task.inputs.parameters}
                if not condition.holds(values):
                    shown = ", ".join(f"{key}={values[key]!r}" for key in condition.parameters if key in values)
                    _skip(name, component, components, f"condition {condition.text} is false ({shown})", on_task, skipped)
                    continue
            on_task(name, RUNNING, "")
            implementation = component.WhichOneof("implementation")
            if implementation == "dag":
                outputs, task_status = run_dag(
                    pipeline_resource_name=pipeline_resource_name, dag_component_spec=component,
                    executors=executors, components=components, dag_arguments=arguments,
                    pipeline_root=pipeline_root, runner=runner, unique_pipeline_id=unique_pipeline_id,
                    fail_stack=fail_stack,
                )
            elif implementation == "executor_label":
                executor = executors[component.executor_label]
                kind = executor.WhichOneof("spec")
                if kind == "importer":
                    outputs, task_status = importer_handler.run_importer(
                        pipeline_resource_name=pipeline_resource_name, component_name=task.component_ref.name,
                        component_spec=component, executor_spec=executor, arguments=arguments,
                        pipeline_root=pipeline_root, unique_pipeline_id=unique_pipeline_id,
                    )
                elif kind == "container":
                    outputs, task_status = task_dispatcher.run_single_task_implementation(
                        pipeline_resource_name=pipeline_resource_name, component_name=task.component_ref.name,
                        component_spec=component, executor_spec=executor, arguments=arguments,
                        pipeline_root=pipeline_root, runner=runner, raise_on_error=False,
                        block_input_artifact=False, unique_pipeline_id=unique_pipeline_id,
                    )
                else:
                    raise ContainerRunError(f"Task '{name}' has an executor of kind {kind!r}, which kfp.local cannot run.")
            else:
                raise ContainerRunError(f"Task '{name}' has a component of kind {implementation!r}, which kfp.local cannot run.")
            if task_status == status.Status.FAILURE:
                on_task(name, FAILED, "the task's process exited with a non-zero status" if implementation != "dag" else "an inner task failed")
                fail_stack.append(name)
                return {}, status.Status.FAILURE
            on_task(name, SUCCEEDED, "")
            for key, value in outputs.items():
                io_store.put_task_output(name, key, value)
        return _dag_outputs(dag.outputs, io_store, skipped), status.Status.SUCCESS

    return run_dag


def _skip(name: str, component: Any, components: Mapping[str, Any], reason: str, on_task: TaskListener, skipped: set[str]) -> None:
    """Records ``name`` (and every task of its sub-DAG) as SKIPPED."""
    skipped.add(name)
    on_task(name, SKIPPED, reason)
    if component.WhichOneof("implementation") == "dag":
        for inner, task in component.dag.tasks.items():
            _skip(inner, components[task.component_ref.name], components, f"its group {name} was skipped", on_task, set())


def _dag_outputs(outputs_spec: Any, io_store: Any, skipped: set[str]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for key, selector in outputs_spec.parameters.items():
        if selector.WhichOneof("kind") != "value_from_parameter":
            raise ContainerRunError(f"The pipeline output '{key}' is a dsl.OneOf, which kfp.local cannot resolve.")
        source = selector.value_from_parameter
        if source.producer_subtask not in skipped:
            outputs[key] = io_store.get_task_output(source.producer_subtask, source.output_parameter_key)
    for key, selector_spec in outputs_spec.artifacts.items():
        (selector,) = selector_spec.artifact_selectors
        if selector.producer_subtask not in skipped:
            outputs[key] = io_store.get_task_output(selector.producer_subtask, selector.output_artifact_key)
    return outputs


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
        environment=dict(options.env),
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

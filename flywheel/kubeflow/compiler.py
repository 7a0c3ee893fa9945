"""Compiling a flywheel pipeline to Kubeflow Pipelines v2 IR YAML.

The IR is written by the kfp SDK's own compiler: every flywheel component
becomes a KFP container component (built with ``kfp.dsl.container_component``
over a function whose signature mirrors the component's interface), and a
``@kfp.dsl.pipeline`` function built from the flywheel graph calls them. Each
task runs the flywheel image with one entrypoint::

    python -m flywheel.kubeflow.entrypoint --executor_input {{$}} --component MODULE:NAME
        [--component-source-b64 SOURCE] --code-fingerprint SHA256

Each task runs the image of its image role (``ComponentOptions.image``, overridable
per task with ``Task.set_image``): ``component`` (``image``, by default
``flywheel:<version>``) or ``serving`` (``serving_image``; by default the serving
image beside ``image``: same repository and tag, ``flywheel-serving``), so
``infra_validate`` loads the candidate in the image that serves it.

``{{$}}`` is KFP's executor-input placeholder (the one KFP's own lightweight
Python components use); the launcher replaces it with the task's inputs,
parameters and output locations. Components whose module is installed in the
image (``image_packages``, by default the ``flywheel`` package) are imported by
name; any other component (a pipeline file, a notebook-style module) travels as
its module's source, base64-encoded in the args, the way KFP's lightweight
components embed function source.

A component may declare a KFP expansion (``@component(kfp_expansion="MODULE:FUNCTION")``, a
function of the task returning a ``ParallelExpansion`` or None): the task then
compiles to ``ParallelFor`` over items known at compile time -> a trial
component, and a select component fed ``dsl.Collected`` of the trials' outputs
(``tune``'s random and grid search do this; see ``components/tune/fanout.py``).

kfp is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import sys
import typing
from typing import Any

from flywheel import __version__
from flywheel.dsl.artifacts import Artifact
from flywheel.dsl.component import Component
from flywheel.dsl.control import Branch
from flywheel.dsl.loops import Collected, Loop, LoopItem
from flywheel.dsl.pipeline import LatestRef, Pipeline, PipelineParam
from flywheel.kubeflow.errors import KubeflowCompileError
from flywheel.kubeflow.task_env import ObjectStoreEnv, apply_object_store, run_id_argument, wants_run_id

DEFAULT_IMAGE = f"flywheel:{__version__}"
DEFAULT_SERVING_IMAGE = f"flywheel-serving:{__version__}"
EXECUTOR_COMMAND = ("python", "-m", "flywheel.kubeflow.entrypoint")
DEFAULT_IMAGE_PACKAGES = ("flywheel",)
# Where a task that reads or writes the model registry mounts the registry PVC (``registry_pvc``); the
# registry is the ``registry`` folder on it, as k8s/ lays it out (serving mounts that sub-path).
REGISTRY_MOUNT = "/mnt/flywheel-data"


@dataclasses.dataclass(frozen=True)
class ParallelExpansion:
    """How one task compiles to a fan-out over ``items`` and a fan-in.

    Attributes:
        items: One JSON value per ``ParallelFor`` iteration, known at compile time.
        item_parameter: The parameter of ``trial`` that receives the item.
        trial: Component run once per item; it takes the task's input artifacts by name.
        trial_parameters: Further parameters of ``trial`` (constants or pipeline parameters).
        trial_output: The output of ``trial`` that is collected.
        select: Component run once on the collected outputs.
        select_input: The input of ``select`` fed ``dsl.Collected(trial.<trial_output>)``.
        select_parameters: Parameters of ``select``.
        outputs: Output name of the expanded task -> output of ``select`` (for downstream tasks).
        parallelism: Most iterations at once (0: no limit).
    """

    items: list
    item_parameter: str
    trial: Component
    trial_parameters: dict
    trial_output: str
    select: Component
    select_input: str
    select_parameters: dict
    outputs: dict
    parallelism: int = 0


def component_reference(
    comp: Component, *, image_packages: tuple[str, ...] = DEFAULT_IMAGE_PACKAGES
) -> tuple[str, str | None]:
    """How the executor finds a component: ``MODULE:NAME`` and, if needed, source.

    Args:
        comp: The component.
        image_packages: Top-level packages installed in the image; components
            from them are imported by module path.

    Returns:
        ``(reference, source)``: source is the text of the component's module
        when that module is not installed in the image, else None.

    Raises:
        KubeflowCompileError: the component is not a module-level name (the
            executor could not find it) or its module's source is unreadable.
    """
    module_name = comp.fn.__module__
    module = sys.modules.get(module_name)
    attr = None
    if module is not None:
        attr = next((k for k, v in vars(module).items() if v is comp), None)
    if attr is None:
        raise KubeflowCompileError(
            f"Component '{comp.name}' is not a module-level name of module '{module_name}'; "
            "the executor looks components up by name, so define it at the top level of a "
            "module (not inside a function)."
        )
    reference = f"{module_name}:{attr}"
    if module_name.split(".")[0] in image_packages:
        return reference, None
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError) as exc:
        raise KubeflowCompileError(
            f"Component '{comp.name}' comes from module '{module_name}', which is not installed in "
            f"the image (packages {', '.join(image_packages)}), and its source cannot be read to "
            f"embed it: {exc}. Put the component in a file or install its package in the image."
        ) from exc
    return reference, source


def executor_args(comp: Component, *, image_packages: tuple[str, ...] = DEFAULT_IMAGE_PACKAGES) -> list[str]:
    """The container args of a component's task (after ``EXECUTOR_COMMAND``)."""
    from kfp import dsl

    reference, source = component_reference(comp, image_packages=image_packages)
    args = ["--executor_input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER, "--component", reference]
    if source is not None:
        args += ["--component-source-b64", base64.b64encode(source.encode()).decode("ascii")]
    # The fingerprint makes KFP's cache key change when the component's code does
    # (the image tag alone may not), and lets the executor warn on a stale image.
    args += ["--code-fingerprint", comp.code_fingerprint]
    return args


def kfp_artifact_class(artifact_type: type[Artifact]) -> type:
    """The kfp artifact class with the same schema title as a flywheel type."""
    from kfp import dsl

    known = (
        dsl.Artifact,
        dsl.Dataset,
        dsl.Model,
        dsl.Metrics,
        dsl.ClassificationMetrics,
        dsl.SlicedClassificationMetrics,
        dsl.HTML,
        dsl.Markdown,
    )
    for cls in known:
        if cls.schema_title == artifact_type.SCHEMA_TITLE:
            return cls
    # A user-defined schema title: a kfp artifact subclass carrying it.
    return type(artifact_type.__name__, (dsl.Artifact,), {
        "schema_title": artifact_type.SCHEMA_TITLE,
        "schema_version": "0.0.1",
    })


def role_images(image: str = DEFAULT_IMAGE, serving_image: str | None = None) -> dict[str, str | None]:
    """The image reference of each image role; None for a serving image that cannot be derived.

    Raises:
        KubeflowCompileError: a reference is empty or not a string.
    """
    from flywheel.images import sibling_reference

    for option, value in (("image", image), ("serving_image", serving_image)):
        if value is not None and (not isinstance(value, str) or not value.strip() or value != value.strip()):
            raise KubeflowCompileError(
                f"The {option} must be an image reference such as 'registry.example/ml/flywheel:1.0'; got {value!r}."
            )
    return {"component": image, "serving": serving_image or sibling_reference(image, "serving")}


def _task_image(task: Any, images: dict[str, str | None]) -> str:
    """The image reference the task's image role runs.

    Raises:
        KubeflowCompileError: the role's image is not known (a serving image not derivable from ``image``).
    """
    role = task.options.image
    reference = images.get(role)
    if reference is None:
        raise KubeflowCompileError(
            f"Task '{task.id}' runs in the {role} image, which cannot be derived from the component image "
            f"{images['component']!r} (only from a reference named [REPOSITORY/]flywheel[:TAG]); pass it with "
            f"--serving-image (compile_pipeline(serving_image=...)), e.g. 'registry.example/ml/flywheel-serving:1.0'."
        )
    return reference


def _parameter_annotation(ptype: type, default: Any) -> Any:
    # typing.Optional, not ``X | None``: kfp strips only typing.Optional from annotations.
    return typing.Optional[ptype] if default is None else ptype


def container_component(
    comp: Component,
    *,
    image: str,
    image_packages: tuple[str, ...] = DEFAULT_IMAGE_PACKAGES,
    int_parameters: frozenset[str] = frozenset(),
    collected_inputs: frozenset[str] = frozenset(),
    run_id: bool = False,
) -> Any:
    """A kfp container component with ``comp``'s interface, running the flywheel executor.

    Args:
        comp: The flywheel component.
        image: Container image of the task.
        image_packages: See ``component_reference``.
        int_parameters: Float parameters to declare as int, because an int
            pipeline parameter feeds them (flywheel allows int -> float, kfp's
            type check does not; the executor converts the value back to float).
        collected_inputs: Inputs declared as a list of artifacts (fed by ``dsl.Collected``);
            the executor folds such a list into one input (``entrypoint.COLLECTED_PROPERTY``).
        run_id: Declare the extra parameter ``executor.RUN_ID_PARAMETER`` (``task_env``).
    """
    from typing import List

    from kfp import dsl

    command = list(EXECUTOR_COMMAND)
    args = executor_args(comp, image_packages=image_packages)
    required: list[inspect.Parameter] = []
    optional: list[inspect.Parameter] = []
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name, spec in comp.inputs.items():
        artifact_cls = kfp_artifact_class(spec.type)
        collected = name in collected_inputs or spec.collection
        annotation = dsl.Input[List[artifact_cls]] if collected else dsl.Input[artifact_cls]
        if spec.optional:
            optional.append(inspect.Parameter(name, kind, annotation=annotation, default=None))
        else:
            required.append(inspect.Parameter(name, kind, annotation=annotation))
    for name, spec in comp.outputs.items():
        required.append(inspect.Parameter(name, kind, annotation=dsl.Output[kfp_artifact_class(spec.type)]))
    for name, spec in comp.output_values.items():
        required.append(inspect.Parameter(name, kind, annotation=dsl.OutputPath(spec.type)))
    for name, spec in comp.parameters.items():
        if name == comp.final_status_parameter:
            # Filled by KFP for the exit task of a dsl.ExitHandler (flywheel's ExitHandler).
            required.append(inspect.Parameter(name, kind, annotation=dsl.PipelineTaskFinalStatus))
            continue
        ptype = int if name in int_parameters else spec.type
        if spec.required:
            required.append(inspect.Parameter(name, kind, annotation=ptype))
        else:
            annotation = _parameter_annotation(ptype, spec.default)
            optional.append(inspect.Parameter(name, kind, annotation=annotation, default=spec.default))
    if run_id:
        from flywheel.kubeflow.entrypoint import RUN_ID_PARAMETER

        optional.append(inspect.Parameter(RUN_ID_PARAMETER, kind, annotation=str, default=""))

    def container(*_placeholders: Any) -> Any:
        # Inputs, outputs and parameters all reach the executor through {{$}}.
        return dsl.ContainerSpec(image=image, command=command, args=args)

    container.__signature__ = inspect.Signature(required + optional)  # type: ignore[attr-defined]
    container.__name__ = comp.name
    container.__qualname__ = comp.name
    container.__doc__ = comp.description or None
    try:
        return dsl.container_component(container)
    except (TypeError, ValueError) as exc:
        raise KubeflowCompileError(
            f"Component '{comp.name}' cannot be expressed as a Kubeflow component: {exc}"
        ) from exc


def _apply_options(kfp_task: Any, task: Any, object_store: ObjectStoreEnv | None = None) -> None:
    options = task.options
    kfp_task.set_display_name(task.id)
    # KFP computes its cache key from the task's inputs before the pod runs; it cannot see the
    # data a path names. A task that reads outside data (component ``reads``) is compiled with
    # caching off, so a run - or a recurring run's firing - always reads the data as it is then.
    kfp_task.set_caching_options(options.cache and not task.component.reads)
    if options.retries:
        # flywheel doubles the wait after each retry; KFP's backoff_factor does the same.
        kfp_task.set_retry(
            num_retries=options.retries,
            backoff_duration=f"{int(round(options.retry_backoff_s))}s",
            backoff_factor=2.0,
        )
    _apply_resources(kfp_task, task.id, options.resources)
    _apply_placement(kfp_task, options.placement)
    apply_object_store(kfp_task, object_store)


def _apply_resources(kfp_task: Any, task_id: str, resources: Any) -> None:
    """Requests, limits and accelerator through kfp's own task methods."""
    setters = (
        ("cpu", kfp_task.set_cpu_request), ("cpu_limit", kfp_task.set_cpu_limit),
        ("memory", kfp_task.set_memory_request), ("memory_limit", kfp_task.set_memory_limit),
        ("accelerator", kfp_task.set_accelerator_type), ("accelerator_count", kfp_task.set_accelerator_limit),
    )
    for field, setter in setters:
        value = getattr(resources, field)
        if value is None:
            continue
        try:
            setter(value if isinstance(value, int) else str(value))
        except ValueError as exc:
            raise KubeflowCompileError(
                f"Task '{task_id}' has resource {field}={value!r}, which Kubernetes does not accept: {exc} "
                "Use e.g. cpu='500m' or '2', memory='512Mi' or '2Gi'."
            ) from exc


def _apply_placement(kfp_task: Any, placement: Any) -> None:
    """Node selector, tolerations and secrets as env through kfp-kubernetes."""
    if not (placement.node_selector or placement.tolerations or placement.secret_env):
        return
    from kfp import kubernetes

    for label, value in placement.node_selector:
        kubernetes.add_node_selector(kfp_task, label_key=label, label_value=value)
    for toleration in placement.tolerations:
        kubernetes.add_toleration(
            kfp_task, key=toleration.key, operator=toleration.operator, value=toleration.value,
            effect=toleration.effect, toleration_seconds=toleration.toleration_seconds,
        )
    for entry in placement.secret_env:
        kubernetes.use_secret_as_env(kfp_task, secret_name=entry.secret, secret_key_to_env={entry.key: entry.env})


def _int_fed_float_parameters(task: Any) -> frozenset[str]:
    def int_fed(value: Any) -> bool:
        if isinstance(value, PipelineParam):
            return value.type is int
        # kfp types a literal loop's item by its first element: [1, 2] is int.
        literal = value.literal_values() if isinstance(value, LoopItem) and value.key is None else None
        return bool(literal) and type(literal[0]) is int

    return frozenset(
        name
        for name, value in task.parameters.items()
        if int_fed(value) and task.component.parameters[name].type is float
    )


_KFP_ITEM_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list}


def _loop_variable(item: Any, key: str, expected: type) -> Any:
    """``item.key`` of a kfp loop argument, typed so that kfp's type check accepts it.

    kfp gives every key of a literal list of dicts the type of the first dict's first value
    (``[{"seed": 1, "rate": 0.1}]``: both int); the values themselves are right, and the DSL
    checked each against the parameter. Where that type is not the parameter's, the variable
    is typed String, which kfp's check lets through for loop arguments (as for a list
    parameter's items, which kfp cannot type either).
    """
    variable = getattr(item, key)
    declared = str(variable.channel_type).split("[")[0].lower()
    if _KFP_ITEM_TYPES.get(declared) is not expected:
        variable.channel_type = "String"
    return variable


def _int_fed_float(comp: Component, parameters: dict[str, Any]) -> frozenset[str]:
    return frozenset(
        name for name, value in parameters.items()
        if isinstance(value, PipelineParam) and value.type is int and comp.parameters[name].type is float
    )


class _ExpandedTask:
    """Stands in for an expanded task downstream: its outputs are the select task's."""

    def __init__(self, outputs: dict[str, Any], last: Any) -> None:
        self.outputs = outputs
        self.last = last  # the select task: what a task that runs .after() this one waits for


def _fan_out(
    task: Any, expansion: tuple[ParallelExpansion, Any, Any], inputs: dict[str, Any], channels: dict[str, Any],
    parameter_arguments: Any, upstream: list[Any], object_store: ObjectStoreEnv | None = None,
) -> _ExpandedTask:
    """Emits ``ParallelFor(items) -> trial`` and ``select(dsl.Collected(trial output))`` for one task."""
    from kfp import dsl

    plan, trial_component, select_component = expansion
    trial_inputs = {name: value for name, value in inputs.items() if name in plan.trial.inputs}
    with dsl.ParallelFor(items=plan.items, parallelism=plan.parallelism) as item:
        trial = trial_component(
            **trial_inputs, **{plan.item_parameter: item},
            **parameter_arguments(plan.trial, plan.trial_parameters, channels),
        )
        _apply_options(trial, task, object_store)
        trial.set_display_name(f"{task.id}-trial")
        for other in upstream:
            trial.after(other)
    select = select_component(
        **{plan.select_input: dsl.Collected(trial.outputs[plan.trial_output])},
        **parameter_arguments(plan.select, plan.select_parameters, channels),
    )
    _apply_options(select, task, object_store)
    select.set_display_name(f"{task.id}-select")
    return _ExpandedTask({name: select.outputs[target] for name, target in plan.outputs.items()}, select)


def build_kfp_pipeline(
    pipeline: Pipeline,
    *,
    image: str = DEFAULT_IMAGE,
    image_packages: tuple[str, ...] = DEFAULT_IMAGE_PACKAGES,
    registry_pvc: str | None = None,
    conditions: bool = True,
    object_store: ObjectStoreEnv | None = None,
    schema_continuity: bool = True,
    serving_image: str | None = None,
) -> Any:
    """A ``kfp.dsl`` pipeline (graph component) equivalent to ``pipeline``.

    Each task runs the image of its image role: ``image`` (component) or ``serving_image``
    (serving; None derives it from ``image``, see ``role_images``).

    ``conditions=False`` compiles the tasks inside an ``If`` as plain tasks that run after the
    task the condition tests, for orchestrators that cannot evaluate ``dsl.If`` (kfp 2.13's
    ``kfp.local`` on its own; ``flywheel container-run`` evaluates them): the training pipeline's
    push then runs and records ``pushed=False`` for an unblessed model, as push does when called
    directly.

    With ``registry_pvc``, every task whose component takes a ``registry``
    parameter (evaluate, push, ...) mounts that PersistentVolumeClaim at
    ``REGISTRY_MOUNT`` and gets ``FLYWHEEL_REGISTRY=<mount>/registry``, the
    registry a ``registry=""`` argument means; so pushed models land where
    ``flywheel serve`` and the monitor (k8s/) read them.

    ``latest()`` Schema / statistics inputs are fed from the registry when the pipeline has one
    (``registry_wiring``; ``schema_continuity=False`` leaves them unconnected), and every task gets
    ``object_store``'s Secret env and endpoint (``task_env``).

    Raises:
        KubeflowCompileError: a component or option has no KFP equivalent.
    """
    from kfp import dsl

    from flywheel.kubeflow import registry_wiring

    images = role_images(image, serving_image)
    kfp_components: dict[tuple[int, frozenset[str], str], Any] = {}
    component_keys: dict[str, tuple[int, frozenset[str], str]] = {}
    expansions: dict[str, tuple[ParallelExpansion, Any, Any]] = {}
    for task in pipeline.tasks.values():
        task_image = _task_image(task, images)
        expand = getattr(task.component, "kfp_expansion", None)
        plan = expand(task) if expand is not None else None
        if plan is not None:
            # The trials and the select task run in the image of the task they expand.
            trial = container_component(plan.trial, image=task_image, image_packages=image_packages,
                                        int_parameters=_int_fed_float(plan.trial, plan.trial_parameters))
            select = container_component(
                plan.select, image=task_image, image_packages=image_packages,
                int_parameters=_int_fed_float(plan.select, plan.select_parameters),
                collected_inputs=frozenset({plan.select_input}),
            )
            expansions[task.id] = (plan, trial, select)
            continue
        key = (id(task.component), _int_fed_float_parameters(task), task_image)
        if key not in kfp_components:
            kfp_components[key] = container_component(
                task.component, image=task_image, image_packages=image_packages, int_parameters=key[1],
                run_id=wants_run_id(task.component),
            )
        component_keys[task.id] = key
    reference = registry_wiring.reference_source(pipeline, registry_pvc=registry_pvc) if schema_continuity else None
    reference_component = reference_comp = None
    if reference is not None:
        reference_comp = registry_wiring.registry_reference_component()
        reference_component = container_component(reference_comp, image=image, image_packages=image_packages)

    signature = inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=_parameter_annotation(spec.type, spec.default),
                default=inspect.Parameter.empty if spec.required else spec.default,
            )
            for name, spec in sorted(pipeline.parameters.items(), key=lambda kv: not kv[1].required)
        ]
    )

    def parameter_arguments(comp: Component, parameters: dict[str, Any], channels: dict[str, Any],
                            kfp_tasks: dict[str, Any] | None = None) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for name, value in parameters.items():
            if isinstance(value, PipelineParam):
                arguments[name] = channels[value.name]
            elif isinstance(value, LoopItem):  # dsl.ParallelFor's loop argument (or one key of it)
                item = loop_arguments[value.loop]
                arguments[name] = item if value.key is None else _loop_variable(item, value.key, comp.parameters[name].type)
            elif isinstance(value, Collected):
                assert kfp_tasks is not None
                arguments[name] = dsl.Collected(kfp_tasks[value.task_id].outputs[value.name])
            elif comp.parameters[name].type is float and isinstance(value, int):
                arguments[name] = float(value)  # kfp types the constant 3 as int
            else:
                arguments[name] = value
        return arguments

    def body(*args: Any, **kwargs: Any) -> None:
        channels = signature.bind(*args, **kwargs).arguments
        kfp_tasks: dict[str, Any] = {}
        scope = pipeline.exit_scope
        order = pipeline.topological_order()
        if scope is None:
            add_scoped(order, 0, channels, kfp_tasks)
            return
        # Tasks outside the handler (the exit task among them) first, then the guarded ones inside
        # dsl.ExitHandler; the DSL checked that no outside task depends on a guarded one.
        add_scoped([t for t in order if t not in scope.guarded], 0, channels, kfp_tasks)
        with dsl.ExitHandler(kfp_tasks[scope.exit_task], name=f"{scope.exit_task}-handler"):
            add_scoped([t for t in order if t in scope.guarded], 0, channels, kfp_tasks)

    loop_arguments: dict[Loop, Any] = {}

    def scopes_of(task_id: str) -> tuple[Any, ...]:
        scopes = pipeline.tasks[task_id].scopes
        return scopes if conditions else tuple(s for s in scopes if isinstance(s, Loop))

    def add_scoped(task_ids: list[str], depth: int, channels: dict[str, Any], kfp_tasks: dict[str, Any]) -> None:
        """Adds the tasks in definition order; a run of tasks in the same ``If``/``Elif``/``Else`` arm or
        ``ParallelFor`` goes into one ``dsl.If``/``dsl.Elif``/``dsl.Else`` or ``dsl.ParallelFor`` group."""
        index = 0
        while index < len(task_ids):
            scopes = scopes_of(task_ids[index])
            if len(scopes) == depth:
                add_task(task_ids[index], channels, kfp_tasks)
                added = kfp_tasks[task_ids[index]]
                if not conditions:  # flattened: still after the tasks the conditions test
                    for ref in (r for branch in pipeline.tasks[task_ids[index]].conditions for r in branch.refs):
                        tested = kfp_tasks[ref.task_id]
                        if not isinstance(added, _ExpandedTask):
                            added.after(tested.last if isinstance(tested, _ExpandedTask) else tested)
                index += 1
                continue
            group = scopes[depth]
            end = index
            while end < len(task_ids) and len(scopes_of(task_ids[end])) > depth and scopes_of(task_ids[end])[depth] is group:
                end += 1
            with _kfp_group(group, kfp_tasks, channels) as item:
                if isinstance(group, Loop):
                    loop_arguments[group] = item
                add_scoped(task_ids[index:end], depth + 1, channels, kfp_tasks)
            index = end

    def add_task(task_id: str, channels: dict[str, Any], kfp_tasks: dict[str, Any]) -> None:
        task = pipeline.tasks[task_id]
        arguments: dict[str, Any] = {}
        wired = registry_wiring.wired_inputs(task) if reference is not None else {}
        if wired:
            # Schema continuity: the serving version's kept schema/statistics, read from the registry.
            ref_task = registry_wiring.add_reference_task(
                pipeline, reference, task, kfp_component=reference_component, kfp_tasks=kfp_tasks, channels=channels
            )
            _apply_resources(ref_task, task_id, reference_comp.options.resources)
            apply_object_store(ref_task, object_store)
            if registry_pvc:
                _mount_registry(ref_task, registry_pvc)
            arguments.update({name: ref_task.outputs[output] for name, output in wired.items()})
        for name, ref in task.inputs.items():
            if isinstance(ref, LatestRef):
                # Other latest(...) inputs are resolved by flywheel's runner from its own MLMD; KFP
                # has no "newest artifact of an earlier run" input. Such inputs are optional by
                # construction, so the KFP task runs without them (as a first run would).
                continue
            if isinstance(ref, Collected):  # an Input[List[T]] after a loop: every iteration's artifact
                arguments[name] = dsl.Collected(kfp_tasks[ref.task_id].outputs[ref.name])
                continue
            arguments[name] = kfp_tasks[ref.task_id].outputs[ref.output]
        if task_id in expansions:
            waits = [kfp_tasks[u] for u in task.explicit_upstream]
            waits = [w.last if isinstance(w, _ExpandedTask) else w for w in waits]
            kfp_tasks[task_id] = _fan_out(task, expansions[task_id], arguments, channels, parameter_arguments, waits,
                                          object_store)
            return
        arguments.update(parameter_arguments(task.component, task.parameters, channels, kfp_tasks))
        if wants_run_id(task.component):
            arguments.update(run_id_argument())
        kfp_task = kfp_components[component_keys[task_id]](**arguments)
        _apply_options(kfp_task, task, object_store)
        if registry_pvc and "registry" in task.component.parameters:
            _mount_registry(kfp_task, registry_pvc)
        for upstream in task.explicit_upstream:
            waited = kfp_tasks[upstream]
            kfp_task.after(waited.last if isinstance(waited, _ExpandedTask) else waited)
        kfp_tasks[task_id] = kfp_task

    body.__signature__ = signature  # type: ignore[attr-defined]
    body.__name__ = pipeline.name.replace("-", "_")
    try:
        return dsl.pipeline(name=pipeline.name, description=pipeline.description or None)(body)
    except (TypeError, ValueError) as exc:
        raise KubeflowCompileError(
            f"Pipeline '{pipeline.name}' cannot be compiled for Kubeflow Pipelines: {exc}"
        ) from exc


def _kfp_group(group: Any, kfp_tasks: dict[str, Any], channels: dict[str, Any]) -> Any:
    """The kfp task group of one DSL scope: ``dsl.If``/``dsl.Elif``/``dsl.Else`` for an arm, ``dsl.ParallelFor`` for a loop."""
    from kfp import dsl

    if isinstance(group, Loop):
        items = group.items
        if isinstance(items, PipelineParam):
            items = channels[items.name]
        elif not isinstance(items, list):  # a task's Output[list]
            items = kfp_tasks[items.task_id].outputs[items.name]
        return dsl.ParallelFor(items=items, parallelism=group.parallelism, name=f"for-{group.number}")
    assert isinstance(group, Branch)
    if group.condition is None:
        return dsl.Else(name=f"else-{group.earlier[0].ref.task_id}-{group.earlier[0].ref.name}")
    condition = group.condition
    channel = kfp_tasks[condition.ref.task_id].outputs[condition.ref.name]
    test = channel == condition.value if condition.operator == "==" else channel != condition.value
    name = f"{group.kind.lower()}-{condition.ref.task_id}-{condition.ref.name}"
    return dsl.If(test, name=name) if group.kind == "If" else dsl.Elif(test, name=name)


def _mount_registry(kfp_task: Any, pvc_name: str) -> None:
    from kfp import kubernetes

    from flywheel.home import REGISTRY_ENV

    kubernetes.mount_pvc(kfp_task, pvc_name=pvc_name, mount_path=REGISTRY_MOUNT)
    kfp_task.set_env_variable(REGISTRY_ENV, f"{REGISTRY_MOUNT}/registry")


def compile_pipeline(
    pipeline: Pipeline,
    output_path: str,
    *,
    image: str = DEFAULT_IMAGE,
    image_packages: tuple[str, ...] = DEFAULT_IMAGE_PACKAGES,
    registry_pvc: str | None = None,
    conditions: bool = True,
    object_store: ObjectStoreEnv | None = None,
    schema_continuity: bool = True,
    serving_image: str | None = None,
) -> None:
    """Writes ``pipeline`` as Kubeflow Pipelines v2 IR YAML.

    Args:
        pipeline: The flywheel pipeline.
        output_path: Where to write the YAML.
        image: Container image of the tasks in the component image role (all but
            ``@component(image="serving")`` ones): the flywheel component image.
        image_packages: Top-level packages installed in the image; components
            defined elsewhere are embedded as source.
        registry_pvc: PersistentVolumeClaim holding the model registry (k8s/:
            ``flywheel-data``), mounted by the tasks that use the registry.
        conditions: False compiles ``If`` blocks as plain tasks (see ``build_kfp_pipeline``).
        object_store: Secret and endpoint of the object store every task gets (``task_env``).
        schema_continuity: Feed ``latest()`` Schema / statistics inputs from the registry
            (``registry_wiring``); False leaves them unconnected.
        serving_image: Container image of the tasks in the serving image role
            (``infra_validate``); None: the serving image beside ``image`` (same
            repository and tag, named ``flywheel-serving``).

    Raises:
        KubeflowCompileError: the pipeline has no KFP equivalent (bad name,
            resources, a component that is not a module-level name), or a task runs
            in the serving image and ``serving_image`` is None and cannot be derived.
    """
    from kfp import compiler as kfp_compiler

    kfp_pipeline = build_kfp_pipeline(
        pipeline, image=image, image_packages=image_packages, registry_pvc=registry_pvc, conditions=conditions,
        object_store=object_store, schema_continuity=schema_continuity, serving_image=serving_image,
    )
    try:
        kfp_compiler.Compiler().compile(pipeline_func=kfp_pipeline, package_path=output_path)
    except (TypeError, ValueError) as exc:
        raise KubeflowCompileError(
            f"kfp could not compile pipeline '{pipeline.name}' to {output_path}: {exc}"
        ) from exc


"""Schema continuity on Kubeflow: ``latest()`` Schema / statistics inputs fed from the model registry.

Locally a ``latest(Schema, ...)`` or ``latest(ExampleStatistics, ...)`` input is resolved by the
runner from its metadata store. A KFP run has none, so when a pipeline is compiled with a registry
(``registry_pvc``, or a registry the push task is given: a pipeline parameter or a non-empty
constant) each such input is fed by a ``registry_reference`` task
(``flywheel.components.registry_reference``) that reads the serving version's kept schema and
statistics from the registry when the run executes. With no served version it marks its outputs
absent (``flywheel.component_call.ABSENT_PROPERTY``) and the consumer gets None: a first run.

The registry and model name are the ones the pushing task gets (a component with a ``PushedModel``
output and ``registry`` / ``model_name`` parameters, e.g. push), else the pipeline's own
``registry`` / ``model_name`` parameters. A model name of "" is resolved as push resolves it:
the ``dataset_name`` of the examples ``evaluate`` judged (the producer of push's ``blessing``),
when they are produced upstream of the consumer, else the consumer's own Examples input.

kfp is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flywheel.dsl.artifacts import Examples, ExampleStatistics, PushedModel, Schema
from flywheel.dsl.pipeline import LatestRef, OutputRef, Pipeline, PipelineParam, Task

# latest() input type -> the registry_reference output that replaces it.
REFERENCE_OUTPUTS: dict[type, str] = {Schema: "schema", ExampleStatistics: "statistics"}


@dataclasses.dataclass(frozen=True)
class ReferenceSource:
    """Where the consumers' kept schema/statistics come from.

    Attributes:
        registry: The registry argument (a constant or a ``PipelineParam``).
        model_name: The model name argument (a constant or a ``PipelineParam``).
        name_examples: Candidate Examples outputs whose ``dataset_name`` names the model when
            ``model_name`` is "", in order of preference (evaluate's, then push's).
    """

    registry: Any
    model_name: Any
    name_examples: tuple[OutputRef, ...] = ()


def wired_inputs(task: Task) -> dict[str, str]:
    """The task's ``latest()`` inputs a registry reference can feed: input name -> reference output."""
    return {
        name: REFERENCE_OUTPUTS[ref.type]
        for name, ref in task.inputs.items()
        if isinstance(ref, LatestRef) and ref.type in REFERENCE_OUTPUTS
    }


def _pushing_task(pipeline: Pipeline) -> Task | None:
    for task_id in pipeline.topological_order():
        task = pipeline.tasks[task_id]
        comp = task.component
        if any(spec.type is PushedModel for spec in comp.outputs.values()) and \
                {"registry", "model_name"} <= set(comp.parameters):
            return task
    return None


def _argument(task: Task, name: str) -> Any:
    return task.parameters.get(name, task.component.parameters[name].default)


def reference_source(pipeline: Pipeline, *, registry_pvc: str | None) -> ReferenceSource | None:
    """The registry reference the pipeline's ``latest()`` inputs get on KFP, or None (left unconnected).

    None when no task has such an input, when the pipeline names no registry (no pushing task and
    no ``registry`` parameter), or when the registry is the constant "" and no volume is mounted:
    the pod's own home registry would be empty whenever the run starts.
    """
    if not any(wired_inputs(task) for task in pipeline.tasks.values()):
        return None
    pusher = _pushing_task(pipeline)
    if pusher is not None:
        registry, model_name = _argument(pusher, "registry"), _argument(pusher, "model_name")
        candidates = []
        blessing = pusher.inputs.get("blessing")
        if isinstance(blessing, OutputRef):
            judged = pipeline.tasks[blessing.task_id].inputs.get("examples")
            if isinstance(judged, OutputRef):
                candidates.append(judged)
        own = pusher.inputs.get("examples")
        if isinstance(own, OutputRef):
            candidates.append(own)
        source = ReferenceSource(registry, model_name, tuple(candidates))
    elif "registry" in pipeline.parameters:
        registry = PipelineParam("registry", pipeline.parameters["registry"].type)
        model_name = (PipelineParam("model_name", pipeline.parameters["model_name"].type)
                      if "model_name" in pipeline.parameters else "")
        source = ReferenceSource(registry, model_name)
    else:
        return None
    if not registry_pvc and not isinstance(source.registry, PipelineParam) and not source.registry:
        return None
    return source


def _ancestors(pipeline: Pipeline, task_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(pipeline.tasks[task_id].upstream)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(pipeline.tasks[current].upstream)
    return seen


def name_examples(pipeline: Pipeline, source: ReferenceSource, consumer: Task) -> OutputRef | None:
    """The Examples whose ``dataset_name`` names the model for ``consumer``'s reference (upstream of it)."""
    upstream = _ancestors(pipeline, consumer.id)
    for candidate in source.name_examples:
        if candidate.task_id in upstream:
            return candidate
    for ref in consumer.inputs.values():
        if isinstance(ref, OutputRef) and issubclass(ref.type, Examples):
            return ref
    return None


def add_reference_task(
    pipeline: Pipeline,
    source: ReferenceSource,
    consumer: Task,
    *,
    kfp_component: Any,
    kfp_tasks: dict[str, Any],
    channels: dict[str, Any],
) -> Any:
    """Adds the ``registry_reference`` KFP task feeding ``consumer`` (caching off: the registry changes)."""
    arguments: dict[str, Any] = {}
    for name in ("registry", "model_name"):
        value = getattr(source, name)
        arguments[name] = channels[value.name] if isinstance(value, PipelineParam) else value
    examples = name_examples(pipeline, source, consumer)
    if examples is not None:
        arguments["examples"] = kfp_tasks[examples.task_id].outputs[examples.output]
    kfp_task = kfp_component(**arguments)
    kfp_task.set_display_name(f"{consumer.id}-registry-reference")
    kfp_task.set_caching_options(False)
    return kfp_task


def registry_reference_component() -> Any:
    """The flywheel component of the reference task."""
    from flywheel.components.registry_reference import registry_reference

    return registry_reference

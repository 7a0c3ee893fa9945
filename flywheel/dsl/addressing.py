"""Which task parameter a ``-p NAME=VALUE`` addresses, and the table of what every task gets.

A pipeline declares only the parameters it adds (values it wires to several tasks or turns
into something); every task parameter is reachable from the command line anyway:

* ``-p TASK.PARAM=VALUE`` sets that task's parameter (``Pipeline.task_overrides``);
* ``-p PARAM=VALUE`` sets the pipeline parameter ``PARAM`` if there is one, else the parameter
  ``PARAM`` of the one task that has it (as ``-p TASK.PARAM``). When several tasks have it the
  value is refused, and the error lists the ``-p TASK.PARAM=`` forms to choose from.

Tasks inside a ``ParallelFor`` are tasks of the pipeline like any other: a value set this way
reaches every iteration. A parameter the loop feeds (its item, or a ``Collected`` list) is
not addressable: the loop's items decide it. ``evaluate_and_push`` and other helpers add
ordinary tasks (``evaluate``, ``push``); there are no nested pipelines to reach into.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from flywheel.errors import ParameterError

if TYPE_CHECKING:
    from flywheel.dsl.pipeline import Pipeline, Task

COMPONENT_DEFAULT = "component default"
PIPELINE_CONSTANT = "pipeline constant"
COMMAND_LINE = "-p"


def loop_fed(task: Task, name: str) -> bool:
    """Whether ``name`` of ``task`` is set by a ParallelFor (its item or a Collected list)."""
    from flywheel.dsl.loops import Collected, LoopItem

    return isinstance(task.parameters.get(name), (LoopItem, Collected))


def addressable(task: Task) -> list[str]:
    """The parameters of ``task`` that ``-p TASK.PARAM`` may set."""
    comp = task.component
    return [n for n in comp.parameters if n != comp.final_status_parameter and not loop_fed(task, n)]


def owners(pipeline: Pipeline, name: str) -> list[str]:
    """Ids of the tasks that have an addressable parameter ``name``."""
    return [task_id for task_id, task in pipeline.tasks.items() if name in addressable(task)]


def expand_names(pipeline: Pipeline, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each plain name that is not a pipeline parameter but a parameter of exactly
    one task renamed ``TASK.NAME``. Names no task has stay as they are (``resolve_parameters``
    then reports them).

    Raises:
        ParameterError: several tasks have the name, or both ``NAME`` and ``TASK.NAME`` are given.
    """
    result: dict[str, Any] = {}
    for key, value in values.items():
        if "." in key or key in pipeline.parameters:
            result.setdefault(key, value)
            continue
        found = owners(pipeline, key)
        if len(found) > 1:
            forms = ", ".join(f"-p {task_id}.{key}=" for task_id in found)
            raise ParameterError(
                f"-p {key}: pipeline '{pipeline.name}' has no parameter {key!r}, and {len(found)} of its tasks "
                f"have one ({', '.join(found)}); say which: {forms}"
            )
        if not found:
            result[key] = value
            continue
        target = f"{found[0]}.{key}"
        if target in values:
            raise ParameterError(f"-p {key} and -p {target} set the same parameter; pass one of them.")
        result[target] = value
    return result


def unknown_message(pipeline: Pipeline, unknown: list[str]) -> str:
    """The error for names that are neither pipeline parameters nor any task's parameter."""
    known = ", ".join(f"{n} ({s.type.__name__})" for n, s in pipeline.parameters.items())
    tasks = "; ".join(
        f"{task_id}: {', '.join(names)}" for task_id, task in pipeline.tasks.items() if (names := addressable(task))
    )
    return (
        f"Pipeline '{pipeline.name}' has no parameter {', '.join(repr(u) for u in unknown)}, and none of its tasks "
        f"has one. Its parameters are: {known or '(none)'}. Task parameters (-p TASK.PARAM=VALUE, or "
        f"-p PARAM=VALUE where one task has it): {tasks or '(none)'}."
    )


def parameter_rows(pipeline: Pipeline, overrides: Mapping[str, Any] | None = None) -> dict[str, list[list[str]]]:
    """What ``flywheel run PIPELINE --list-params`` prints: the pipeline parameters (name, type,
    source, value) and every task parameter (task, name, type, source, value), with ``overrides`` (``-p``
    values) applied. A source is "component default", "pipeline constant", "pipeline parameter
    NAME", "-p", "loop item" or "collected".
    """
    import json

    from flywheel.dsl.loops import Collected, LoopItem
    from flywheel.dsl.pipeline import PipelineParam

    overrides = dict(overrides or {})
    values = pipeline.resolve_parameters(overrides)
    given = set(pipeline.expand_names(overrides))

    def show(value: Any) -> str:
        return value if isinstance(value, str) and value else json.dumps(value)

    pipeline_rows = [
        [name, spec.type.__name__, COMMAND_LINE if name in given else "pipeline default", show(values[name])]
        for name, spec in pipeline.parameters.items()
    ]
    task_rows = []
    for task_id, task in pipeline.tasks.items():
        shown = pipeline.task_parameters(task_id, values)
        for name, spec in task.component.parameters.items():
            if name == task.component.final_status_parameter:
                continue
            bound = task.parameters.get(name, spec)
            value = values.get(f"{task_id}.{name}", shown[name])
            if f"{task_id}.{name}" in values:
                source = COMMAND_LINE
            elif isinstance(bound, PipelineParam):
                source = f"pipeline parameter {bound.name}"
            elif isinstance(bound, LoopItem):
                source, value = "loop item", str(bound)
            elif isinstance(bound, Collected):
                source, value = "collected", str(bound)
            elif name in task.parameters:
                source = PIPELINE_CONSTANT
            else:
                source = COMPONENT_DEFAULT
            task_rows.append([task_id, name, spec.type.__name__, source, show(value)])
    return {"pipeline": pipeline_rows, "tasks": task_rows}

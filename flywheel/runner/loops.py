"""How the local runner expands a ``ParallelFor`` (``flywheel.dsl.loops``) into nodes.

A task inside a loop is a *template* node (its pipeline task id) until the loop's
items are known: at once for a literal list or a pipeline parameter, when the
task holding the ``Output[list]`` has finished otherwise. Then it gets one node per
item, ``<task>[<i>]``, in item order, each with its own parameters (the item),
cache key, execution and outputs; a node of iteration ``i`` takes the outputs of
iteration ``i`` of the loop's other tasks. The template stays as EXPANDED until
all its iterations are done, then becomes COMPLETE (FAILED if one failed, SKIPPED
if one could not run after a failure elsewhere): what a task after the loop waits
for, and where its ``Collected`` lists come from.
An empty list gives no iteration, and the template is COMPLETE at once.
"""

from __future__ import annotations

from typing import Any

from flywheel.dsl.loops import Collected, LoopItem
from flywheel.dsl.pipeline import Pipeline
from flywheel.errors import ParameterError

EXPANDED = "EXPANDED"
_DONE = ("COMPLETE", "CACHED", "REUSED")
_TERMINAL = (*_DONE, "FAILED", "SKIPPED")


def iteration_id(task_id: str, index: int) -> str:
    return f"{task_id}[{index}]"


def node_for(pipeline: Pipeline, node: Any, task_id: str) -> str:
    """The node that ``task_id`` means for ``node``: the same iteration when both are in one loop."""
    if node.index is not None and pipeline.tasks[task_id].loop is pipeline.tasks[node.task].loop:
        return iteration_id(task_id, node.index)
    return task_id


def gate(pipeline: Pipeline, task_id: str) -> list[str]:
    """What a loop template waits for before expanding: the task holding the items and the
    tasks tested by the conditions around the loop."""
    task = pipeline.tasks[task_id]
    loop = task.loop
    assert loop is not None
    ids = [loop.source_task] if loop.source_task else []
    for scope in task.scopes[: task.scopes.index(loop)]:
        ids.extend(ref.task_id for ref in getattr(scope, "refs", ()))
    return list(dict.fromkeys(ids))


def loop_items(pipeline: Pipeline, task_id: str, values: dict[str, Any], nodes: dict[str, Any]) -> list[Any]:
    """The items of the loop ``task_id`` is in, for this run.

    Raises:
        ValueError: the items are not a list, or an item does not fit a parameter it feeds.
    """
    from flywheel.dsl.control import ValueRef
    from flywheel.dsl.pipeline import PipelineParam

    task = pipeline.tasks[task_id]
    loop = task.loop
    assert loop is not None
    if isinstance(loop.items, PipelineParam):
        items = values[loop.items.name]
    elif isinstance(loop.items, ValueRef):
        items = nodes[loop.items.task_id].values.get(loop.items.name)
    else:
        items = loop.items
    if not isinstance(items, list):
        raise ValueError(f"{loop} got {type(items).__name__} {items!r}, not a list")
    for name, value in task.parameters.items():
        if isinstance(value, LoopItem):
            spec = task.component.parameters[name]
            for index, item in enumerate(items):
                given = value.value_in(item)
                if not spec.check_value(given):
                    raise ValueError(
                        f"parameter '{name}' of '{task_id}' is {spec.type.__name__} but item {index} of {loop} "
                        f"gives {given!r}"
                    )
                try:
                    spec.check_rules(task.component.name, given)
                except ParameterError as exc:
                    raise ValueError(f"item {index} of {loop} for parameter '{name}' of '{task_id}': {exc}") from exc
    return items


def parallelism_allows(pipeline: Pipeline, nodes: dict[str, Any], node: Any) -> bool:
    """Whether iteration ``node`` may start under its loop's ``parallelism``.

    An iteration is active from its first started node until all its nodes are done; at most
    ``parallelism`` iterations are active at once (KFP's bound on concurrent iterations).
    """
    loop = pipeline.tasks[node.task].loop
    if node.index is None or loop is None or not loop.parallelism:
        return True
    states: dict[int, list[str]] = {}
    for other in nodes.values():
        if other.index is not None and pipeline.tasks[other.task].loop is loop:
            states.setdefault(other.index, []).append(other.state)
    active = {
        index for index, found in states.items()
        if any(s not in ("WAITING",) for s in found) and any(s not in _TERMINAL for s in found)
    }
    return node.index in active or len(active) < loop.parallelism


def collected_parameters(pipeline: Pipeline, nodes: dict[str, Any], task_id: str) -> dict[str, list]:
    """The lists of a task's ``Collected`` parameters: each iteration's value, in order."""
    found: dict[str, list] = {}
    for name, value in pipeline.tasks[task_id].parameters.items():
        if isinstance(value, Collected):
            found[name] = [
                nodes[i].values.get(value.name) for i in nodes[value.task_id].iterations or () if nodes[i].state in _DONE
            ]
    return found


def collected_inputs(pipeline: Pipeline, nodes: dict[str, Any], task_id: str) -> dict[str, list]:
    """The artifact lists of a task's ``Collected`` inputs, in iteration order."""
    found: dict[str, list] = {}
    for name, ref in pipeline.tasks[task_id].inputs.items():
        if isinstance(ref, Collected):
            found[name] = [
                nodes[i].outputs[ref.name] for i in nodes[ref.task_id].iterations or () if nodes[i].state in _DONE
            ]
    return found


def settled(nodes: dict[str, Any]) -> list[Any]:
    """EXPANDED templates whose iterations have all finished, now done.

    FAILED if an iteration failed; SKIPPED (unrecorded, as a node after a failure) if one was
    skipped because something it needs failed; else COMPLETE.
    """
    done = []
    for node in nodes.values():
        iterations = [nodes[i] for i in node.iterations or ()]
        if node.state == EXPANDED and all(i.state in _TERMINAL for i in iterations):
            if any(i.state == "FAILED" for i in iterations):
                node.state = "FAILED"
            elif any(i.state == "SKIPPED" and i.execution_id is None for i in iterations):
                node.state = "SKIPPED"
            else:
                node.state = "COMPLETE"
            done.append(node)
    return done

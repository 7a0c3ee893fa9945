"""Loops in a pipeline: ``ParallelFor`` over a list and ``Collected`` fan-in (KFP's ``dsl.ParallelFor``, ``dsl.Collected``).

::

    @pipeline(name="seeds")
    def seeds(configs: list = [{"seed": 1}, {"seed": 2}]) -> None:
        data = ingest(...)
        with ParallelFor(configs, parallelism=2) as config:
            trained = train(examples=data.outputs["examples"], seed=config["seed"])
        pick_best(models=Collected(trained.outputs["model"]), scores=Collected(trained.values["accuracy"]))

The items are a literal list, a pipeline parameter annotated ``list``, or a
task's output parameter declared ``Output[list]``. The loop item (or one key of
a dict item, ``config["seed"]``) is a task parameter inside the block. Every
task created inside runs once per item; a task in the loop that uses another
one's outputs gets those of the same iteration. A task outside the loop takes
the results of all iterations, in iteration order, through ``Collected``:
of an output artifact into an ``Input[List[T]]`` input, of an output
parameter into a ``list`` parameter. An empty list runs no iteration and the
fan-in gets empty lists (KFP's semantics). ``parallelism`` bounds how many
iterations run at once (0: no bound).

Checked when the pipeline is built: the items are a list; the loop item is used
only inside its block (and, for a literal list, fits the parameter's type);
``Collected`` takes an output of a task inside a loop and is used outside that
loop; a task outside a loop takes nothing else from a task inside it
(``.after()`` may wait for all iterations). Loops do not nest yet.

From the command line a task inside a loop is addressed like any other (``-p fit.rate=0.2``, or
``-p rate=0.2`` when only that task has ``rate``): every iteration gets the value. The parameter the
loop feeds (its item, or a ``Collected`` list) cannot be set that way; change the items instead
(``flywheel/dsl/addressing.py``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator

from flywheel.errors import ParameterError, PipelineDefinitionError


@dataclasses.dataclass(frozen=True, eq=False)
class Loop:
    """One ``ParallelFor`` block: what it iterates and how many iterations may run at once."""

    items: Any  # a list, a PipelineParam (list) or a ValueRef (Output[list])
    parallelism: int = 0
    number: int = 1  # the n-th loop of its pipeline

    @property
    def source_task(self) -> str | None:
        """The task whose output parameter holds the items, if any."""
        from flywheel.dsl.control import ValueRef

        return self.items.task_id if isinstance(self.items, ValueRef) else None

    def __str__(self) -> str:
        from flywheel.dsl.control import ValueRef
        from flywheel.dsl.pipeline import PipelineParam

        if isinstance(self.items, PipelineParam):
            return f"ParallelFor over pipeline parameter '{self.items.name}'"
        if isinstance(self.items, ValueRef):
            return f"ParallelFor over {self.items.task_id}.values['{self.items.name}']"
        return f"ParallelFor over {json.dumps(self.items)[:60]}"


@dataclasses.dataclass(frozen=True, eq=False)
class LoopItem:
    """The item of a ``ParallelFor`` (or ``item["key"]`` of a dict item), used as a task parameter."""

    loop: Loop
    key: str | None = None

    def __getitem__(self, key: Any) -> LoopItem:
        if self.key is not None or not isinstance(key, str) or not key.isidentifier():
            raise PipelineDefinitionError(
                f"The item of {self.loop} takes one key that is a Python name (item['name'], for a list of "
                "dicts; Kubeflow's loop arguments allow no other); "
                f"got item{'[' + repr(self.key) + ']' if self.key is not None else ''}[{key!r}]."
            )
        if isinstance(self.loop.items, list):
            missing = [i for i, item in enumerate(self.loop.items) if not isinstance(item, dict) or key not in item]
            if missing:
                raise PipelineDefinitionError(
                    f"item[{key!r}] of {self.loop}: item {missing[0]} "
                    f"({json.dumps(self.loop.items[missing[0]])[:60]}) is not a dict with key {key!r}."
                )
        return LoopItem(self.loop, key)

    def value_in(self, item: Any) -> Any:
        """This reference's value for one item (raises ValueError naming the problem)."""
        if self.key is None:
            return item
        if not isinstance(item, dict) or self.key not in item:
            raise ValueError(f"item {json.dumps(item)[:80]} of {self.loop} has no key {self.key!r}")
        return item[self.key]

    def literal_values(self) -> list[Any] | None:
        """The values this reference takes, when the items are a literal list."""
        if not isinstance(self.loop.items, list):
            return None
        return [self.value_in(item) for item in self.loop.items]

    def __str__(self) -> str:
        return f"item{'' if self.key is None else '[' + repr(self.key) + ']'} of {self.loop}"


@dataclasses.dataclass(frozen=True)
class Collected:
    """The outputs of a task inside a ``ParallelFor``, one per iteration in order, for a task outside it."""

    ref: Any  # an OutputRef (artifact) or a ValueRef (output parameter)

    def __post_init__(self) -> None:
        from flywheel.dsl.control import ValueRef
        from flywheel.dsl.pipeline import OutputRef

        if not isinstance(self.ref, (OutputRef, ValueRef)):
            raise PipelineDefinitionError(
                "Collected(...) takes an output of a task inside a ParallelFor: task.outputs['name'] (an "
                f"artifact) or task.values['name'] (an output parameter); got {self.ref!r}."
            )

    @property
    def task_id(self) -> str:
        return self.ref.task_id

    @property
    def name(self) -> str:
        return getattr(self.ref, "output", None) or self.ref.name


class ParallelFor:
    """Runs the tasks created inside the ``with`` block once per item (``as item`` gives the item)."""

    def __init__(self, items: Any, parallelism: int = 0) -> None:
        from flywheel.dsl.control import ValueRef
        from flywheel.dsl.pipeline import PipelineParam, current_builder

        builder = current_builder()
        if builder is None:
            raise PipelineDefinitionError("ParallelFor(...) is used inside a @pipeline function; it was called outside one.")
        where = f"In pipeline '{builder.pipeline_name}', ParallelFor"
        if isinstance(items, PipelineParam) and items.type is not list:
            raise PipelineDefinitionError(
                f"{where} iterates pipeline parameter '{items.name}', which is {items.type.__name__}; "
                f"annotate it `{items.name}: list` (a JSON list on the command line)."
            )
        if isinstance(items, ValueRef) and items.type is not list:
            raise PipelineDefinitionError(
                f"{where} iterates output parameter '{items.name}' of task '{items.task_id}', which is "
                f"{items.type.__name__}; declare it `{items.name}: Output[list]` on the component."
            )
        if isinstance(items, ValueRef) and builder.tasks.get(items.task_id) is None:
            raise PipelineDefinitionError(f"{where} iterates task '{items.task_id}', which is not part of this pipeline.")
        if isinstance(items, tuple):
            items = list(items)
        if not isinstance(items, (list, PipelineParam, ValueRef)):
            raise PipelineDefinitionError(
                f"{where} iterates a list: a literal list, a pipeline parameter annotated `list`, or a task's "
                f"output parameter declared Output[list] (task.values['name']); got {type(items).__name__} {items!r}."
            )
        if isinstance(items, list):
            try:
                json.dumps(items)
            except (TypeError, ValueError) as exc:
                raise PipelineDefinitionError(f"{where}: the items must be JSON values; got {items!r}.") from exc
        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 0:
            raise PipelineDefinitionError(
                f"{where}: parallelism is the most iterations at once, an int >= 0 (0: no bound); got {parallelism!r}."
            )
        if any(isinstance(scope, Loop) for scope in builder.scopes):
            raise PipelineDefinitionError(
                f"{where} is inside another ParallelFor; loops do not nest in flywheel yet. Iterate the "
                "combinations in one loop (a list of dicts, item['a'], item['b'])."
            )
        builder.loop_count += 1
        self._builder = builder
        self.loop = Loop(items, parallelism, builder.loop_count)
        self._before: set[str] = set()

    def __enter__(self) -> LoopItem:
        self._before = set(self._builder.tasks)
        self._builder.scopes.append(self.loop)
        self._builder.last_branch = None
        return LoopItem(self.loop)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._builder.scopes.pop()
        self._builder.last_branch = None
        if exc_type is None and not set(self._builder.tasks) - self._before:
            raise PipelineDefinitionError(
                f"In pipeline '{self._builder.pipeline_name}', the block of {self.loop} creates no task; "
                "call the components to repeat inside the `with`."
            )


def check_collected_input(builder: Any, where: str, spec: Any, name: str, value: Any) -> Collected:
    """Checks an argument of an ``Input[List[T]]`` input, or a ``Collected`` given to an input."""
    from flywheel.dsl.pipeline import OutputRef

    if not spec.collection:
        raise PipelineDefinitionError(
            f"{where}: input '{name}' takes one {spec.type.TYPE_NAME} but got Collected(...) (one per "
            f"iteration); declare it `{name}: Input[List[{spec.type.__name__}]]` to take the list."
        )
    if not isinstance(value, Collected) or not isinstance(value.ref, OutputRef):
        raise PipelineDefinitionError(
            f"{where}: input '{name}' is Input[List[{spec.type.__name__}]], the outputs of a task inside a "
            f"ParallelFor; pass Collected(task.outputs['name']). Got {_describe(value)}."
        )
    ref = value.ref
    if ref.task_id not in builder.tasks:
        raise PipelineDefinitionError(
            f"{where}: input '{name}' refers to task '{ref.task_id}', which is not part of pipeline "
            f"'{builder.pipeline_name}'."
        )
    if not issubclass(ref.type, spec.type):
        raise PipelineDefinitionError(
            f"{where}: input '{name}' expects a list of {spec.type.TYPE_NAME} but got Collected "
            f"{ref.type.TYPE_NAME} (output '{ref.output}' of task '{ref.task_id}')."
        )
    return value


def _describe(value: Any) -> str:
    if hasattr(value, "task_id") and hasattr(value, "output"):
        return f"output '{value.output}' of task '{value.task_id}' (one artifact)"
    return f"{type(value).__name__} {value!r}"


def check_loop_parameter(
    builder: Any, where: str, spec: Any, name: str, value: LoopItem | Collected, *, owner: str = ""
) -> Any:
    """Checks a loop item or a ``Collected`` output parameter given to a parameter."""
    from flywheel.dsl.control import ValueRef

    if isinstance(value, Collected):
        if not isinstance(value.ref, ValueRef):
            raise PipelineDefinitionError(
                f"{where}: parameter '{name}' gets Collected output artifact '{value.name}' of task "
                f"'{value.task_id}'; collected artifacts go to an Input[List[...]] input, a list parameter "
                "takes Collected(task.values['name'])."
            )
        if spec.type is not list:
            raise PipelineDefinitionError(
                f"{where}: parameter '{name}' is {spec.type.__name__} but gets Collected(...), a list (one "
                "value per iteration); annotate it `list`."
            )
        return value
    if value.loop not in builder.scopes:
        raise PipelineDefinitionError(
            f"{where}: parameter '{name}' gets the {value}, outside that loop's `with` block; create "
            "the task inside the block, or take the loop's results after it with Collected(...)."
        )
    bad = [v for v in value.literal_values() or () if not spec.check_value(v)]
    if bad:
        raise PipelineDefinitionError(
            f"{where}: parameter '{name}' expects {spec.type.__name__} but the {value} takes the value {bad[0]!r}."
        )
    for literal in value.literal_values() or ():  # literal items meet the parameter's declared rules too
        try:
            spec.check_rules(owner, literal)
        except ParameterError as exc:
            raise ParameterError(f"{where}: the {value} takes the value {literal!r}: {exc}") from exc
    return value


def dependencies(task: Any) -> Iterator[tuple[str, str, str]]:
    """``(upstream task id, kind, what)`` for every dependency of ``task``.

    kind: "data" (an input or the loop's items), "collected", "after" or "condition".
    """
    from flywheel.dsl.pipeline import OutputRef

    for name, ref in task.inputs.items():
        if isinstance(ref, OutputRef):
            yield ref.task_id, "data", f"output '{ref.output}' (input '{name}')"
        elif isinstance(ref, Collected):
            yield ref.task_id, "collected", f"Collected output '{ref.name}' (input '{name}')"
    for name, value in task.parameters.items():
        if isinstance(value, Collected):
            yield value.task_id, "collected", f"Collected output parameter '{value.name}' (parameter '{name}')"
    for up in task.explicit_upstream:
        yield up, "after", ".after()"
    for branch in task.conditions:
        for ref in branch.refs:
            yield ref.task_id, "condition", f"output parameter '{ref.name}' (a condition)"
    loop = task.loop
    if loop is not None and loop.source_task:
        yield loop.source_task, "data", f"output parameter '{loop.items.name}' (the items of its loop)"


def _prefix(outer: tuple, inner: tuple) -> bool:
    return len(outer) <= len(inner) and all(a is b for a, b in zip(outer, inner))


def check_scopes(pipeline_name: str, tasks: dict[str, Any]) -> None:
    """Raises PipelineDefinitionError when a dependency crosses an If or ParallelFor boundary the wrong way."""
    from flywheel.dsl.control import Branch

    for task in tasks.values():
        where = f"In pipeline '{pipeline_name}', task '{task.id}'"
        for up, kind, what in dependencies(task):
            if up not in tasks:
                continue  # reported by the graph check
            upstream = tasks[up]
            scopes = upstream.scopes
            loop = upstream.loop
            if kind == "collected":
                if loop is None:
                    raise PipelineDefinitionError(
                        f"{where} takes {what} of task '{up}', which is not inside a ParallelFor; Collected fans in "
                        f"the iterations of a loop. Pass {up}'s output directly."
                    )
                if loop in task.scopes:
                    raise PipelineDefinitionError(
                        f"{where} takes {what} of task '{up}' inside the same {loop}; Collected is for a task "
                        f"after the loop. Inside it, pass {up}'s output of the same iteration directly."
                    )
                at = scopes.index(loop)
                if scopes[at + 1:]:
                    raise PipelineDefinitionError(
                        f"{where} takes {what} of task '{up}', which is inside an If within its {loop}; collect "
                        "a task created directly in the loop's block."
                    )
                if not _prefix(scopes[:at], task.scopes):
                    raise PipelineDefinitionError(
                        f"{where} takes {what} of task '{up}', whose {loop} is inside an If block that '{task.id}' "
                        f"is not in; create '{task.id}' inside that If block too (Kubeflow requires it)."
                    )
                continue
            if _prefix(scopes, task.scopes):
                continue
            if loop is not None and loop not in task.scopes:
                outside = scopes[:scopes.index(loop)]
                if kind == "after" and _prefix(outside, task.scopes):
                    continue  # waits for every iteration, as KFP allows
                raise PipelineDefinitionError(
                    f"{where} takes {what} of task '{up}', which runs once per item of {loop}. Pass "
                    f"Collected({up}.{'values' if 'parameter' in what else 'outputs'}[...]) to get every iteration's, "
                    f"in order, or create '{task.id}' inside the loop."
                )
            outer = [scope for scope in scopes if isinstance(scope, Branch) and scope not in task.scopes]
            raise PipelineDefinitionError(
                f"{where} depends on '{up}', which runs only if {' and '.join(map(str, outer))}; create "
                f"'{task.id}' inside the same If block (Kubeflow does not let a task outside a condition wait "
                "for one inside)."
            )

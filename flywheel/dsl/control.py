"""Control flow in a pipeline: conditions (KFP's ``dsl.If``) and an exit handler (``dsl.ExitHandler``).

::

    checked = evaluate(...)
    with If(checked.values["blessed"] == True):   # an output parameter: Output[bool]
        push(...)

Tasks created inside ``If`` run only when the condition holds; otherwise they are
SKIPPED, and so is every task that depends on a skipped task (KFP's semantics).
A condition compares an output parameter (``task.values[name]``, declared
``Output[bool|int|float|str]``) with a constant of its type by ``==`` or ``!=``;
``If`` blocks nest (all conditions must hold). A task outside an ``If`` may not
depend on a task inside it (Kubeflow refuses that too).

::

    @pipeline(name="nightly")
    def nightly(data_path: str, webhook_url: str = "") -> None:
        with ExitHandler(notify(webhook_url=webhook_url)):
            rows = ingest(path=data_path)
            ...

The exit task runs once every task inside the ``with`` block has finished,
succeeded or failed (or was skipped), locally and on Kubeflow; a component
parameter annotated ``FinalStatus`` receives the state of those tasks
(``{"state": "SUCCEEDED" | "FAILED", "error": ..., "pipeline_run": ...}``,
filled by the local runner, or KFP's ``PipelineTaskFinalStatus`` on Kubeflow).
A failed task inside still fails the run: the exit task reports, it does not rescue.

Checked when the pipeline is built: the exit task is a task of this pipeline
created before the block, takes no artifact from another task and waits for
none (it must be able to run whatever failed), nothing depends on it, and
handlers do not nest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flywheel.errors import PipelineDefinitionError


@dataclasses.dataclass(frozen=True)
class ExitScope:
    """The exit task of a pipeline and the tasks it waits for."""

    exit_task: str
    guarded: frozenset[str]


@dataclasses.dataclass(frozen=True, eq=False)
class ValueRef:
    """An output parameter of a task; compare it with ``==``/``!=`` to make a ``Condition``."""

    task_id: str
    name: str
    type: type

    def _compare(self, operator: str, value: Any) -> Condition:
        from flywheel.dsl.component import value_matches_type

        if isinstance(value, ValueRef) or not value_matches_type(value, self.type):
            raise PipelineDefinitionError(
                f"A condition compares output parameter '{self.name}' of task '{self.task_id}' "
                f"({self.type.__name__}) with a constant of that type; got {value!r}."
            )
        return Condition(self, operator, value)

    def __eq__(self, value: Any) -> Condition:  # type: ignore[override]
        return self._compare("==", value)

    def __ne__(self, value: Any) -> Condition:  # type: ignore[override]
        return self._compare("!=", value)

    __hash__ = object.__hash__


@dataclasses.dataclass(frozen=True, eq=False)
class Condition:
    """``ref operator value``: when the tasks inside an ``If`` run."""

    ref: ValueRef
    operator: str
    value: Any

    def holds(self, actual: Any) -> bool:
        return (actual == self.value) if self.operator == "==" else (actual != self.value)

    def __str__(self) -> str:
        return f"{self.ref.task_id}.{self.ref.name} {self.operator} {self.value!r}"


class If:
    """Tasks created inside the ``with`` block run only when ``condition`` holds (else SKIPPED)."""

    def __init__(self, condition: Any) -> None:
        from flywheel.dsl.pipeline import current_builder

        self._builder = current_builder()
        if self._builder is None:
            raise PipelineDefinitionError("If(...) is used inside a @pipeline function; it was called outside one.")
        if not isinstance(condition, Condition):
            raise PipelineDefinitionError(
                f"In pipeline '{self._builder.pipeline_name}', If takes a comparison of a task's output "
                f"parameter with a constant, e.g. If(evaluate_task.values['blessed'] == True); got "
                f"{condition!r}. Artifacts (task.outputs[...]) and pipeline parameters cannot be tested; "
                "declare an Output[bool] (or int, float, str) on the component that decides."
            )
        if self._builder.tasks.get(condition.ref.task_id) is None:
            raise PipelineDefinitionError(
                f"In pipeline '{self._builder.pipeline_name}', If tests task '{condition.ref.task_id}', "
                "which is not part of this pipeline."
            )
        self.condition = condition

    def __enter__(self) -> If:
        self._builder.conditions.append(self.condition)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._builder.conditions.pop()


def check_conditions(pipeline_name: str, tasks: dict[str, Any]) -> None:
    """Raises PipelineDefinitionError when a task outside an If depends on a task inside it."""
    for task in tasks.values():
        for up in task.upstream:
            outer = tasks[up].conditions if up in tasks else ()
            inner = task.conditions[: len(outer)]
            if len(inner) != len(outer) or any(a is not b for a, b in zip(inner, outer)):
                raise PipelineDefinitionError(
                    f"In pipeline '{pipeline_name}', task '{task.id}' depends on '{up}', which runs only if "
                    f"{' and '.join(map(str, outer))}; create '{task.id}' inside the same If block (Kubeflow "
                    "does not let a task outside a condition wait for one inside)."
                )


class ExitHandler:
    """Runs ``exit_task`` after every task created inside the ``with`` block, whatever their outcome."""

    def __init__(self, exit_task: Any) -> None:
        from flywheel.dsl.pipeline import Task, current_builder

        self._builder = current_builder()
        if self._builder is None:
            raise PipelineDefinitionError(
                "ExitHandler(...) is used inside a @pipeline function, around the tasks it guards; "
                "it was called outside one."
            )
        where = f"In pipeline '{self._builder.pipeline_name}', ExitHandler"
        if not isinstance(exit_task, Task) or self._builder.tasks.get(exit_task.id) is not exit_task:
            raise PipelineDefinitionError(
                f"{where} takes a task of this pipeline, created before the block, e.g. "
                f"ExitHandler(notify(webhook_url=url)); got {exit_task!r}."
            )
        if exit_task.upstream:
            raise PipelineDefinitionError(
                f"{where}: exit task '{exit_task.id}' waits for {', '.join(exit_task.upstream)} "
                "(an artifact input or .after()); an exit task runs even when those fail, so it may take "
                "only parameters. Pass what it needs as parameters, or read the run's state from its "
                "FinalStatus parameter."
            )
        if self._builder.exit_scope is not None or getattr(self._builder, "exit_open", False):
            raise PipelineDefinitionError(
                f"{where}: pipeline '{self._builder.pipeline_name}' already has an exit handler "
                f"(exit task '{self._builder.exit_scope.exit_task if self._builder.exit_scope else '?'}'); "
                "use one exit handler per pipeline (Kubeflow runs them as the pipeline's last step)."
            )
        self._exit_task = exit_task
        self._before: set[str] = set()

    def __enter__(self) -> ExitHandler:
        self._before = set(self._builder.tasks)
        self._builder.exit_open = True
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._builder.exit_open = False
        if exc_type is not None:
            return
        guarded = frozenset(set(self._builder.tasks) - self._before)
        if not guarded:
            raise PipelineDefinitionError(
                f"In pipeline '{self._builder.pipeline_name}', the ExitHandler block of exit task "
                f"'{self._exit_task.id}' creates no task; call the components it guards inside the `with`."
            )
        self._builder.exit_scope = ExitScope(self._exit_task.id, guarded)


def check_exit_scope(pipeline_name: str, tasks: dict[str, Any], scope: ExitScope | None) -> None:
    """Raises PipelineDefinitionError when a task depends on the exit task or a FinalStatus is misplaced."""
    for task in tasks.values():
        status = task.component.final_status_parameter
        if status and (scope is None or task.id != scope.exit_task):
            raise PipelineDefinitionError(
                f"In pipeline '{pipeline_name}', task '{task.id}' has a FinalStatus parameter "
                f"('{status}'), which only an exit task receives; wrap the tasks it reports on in "
                f"`with ExitHandler({task.component.name}(...)):`."
            )
        if scope is not None and task.id not in scope.guarded and scope.guarded & set(task.upstream):
            raise PipelineDefinitionError(
                f"In pipeline '{pipeline_name}', task '{task.id}' is outside the ExitHandler block but depends "
                f"on {', '.join(sorted(scope.guarded & set(task.upstream)))} inside it; create it inside the "
                "block too (Kubeflow does not let a task outside a handler wait for one inside)."
            )
        if scope is not None and scope.exit_task in task.upstream:
            raise PipelineDefinitionError(
                f"In pipeline '{pipeline_name}', task '{task.id}' depends on exit task '{scope.exit_task}', "
                "which runs last whatever happened; nothing may take its outputs or run .after() it."
            )

"""Control flow in a pipeline: conditions (KFP's ``dsl.If``/``Elif``/``Else``) and an exit handler (``dsl.ExitHandler``).

Loops (``ParallelFor``, ``Collected``) are in ``flywheel.dsl.loops``.

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

``with Elif(cond):`` and ``with Else():`` directly after an ``If`` (or ``Elif``)
block at the same depth make a chain, as KFP's ``dsl.Elif``/``dsl.Else``: exactly
one arm runs, the first whose condition holds (``Else``: none held); the
tasks of the other arms are SKIPPED with the reason.

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
from typing import Any, Callable

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

        if self.type is list:
            raise PipelineDefinitionError(
                f"Output parameter '{self.name}' of task '{self.task_id}' is a list; a condition "
                "tests a bool, int, float or str output parameter (a list is what ParallelFor iterates)."
            )
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


@dataclasses.dataclass(frozen=True, eq=False)
class Branch:
    """One arm of an ``If`` / ``Elif`` / ``Else`` chain: its tasks run when ``condition`` holds
    (``None`` for ``Else``) and no condition of the arms before it (``earlier``) does."""

    kind: str  # "If", "Elif" or "Else"
    condition: Condition | None
    earlier: tuple[Condition, ...] = ()

    @property
    def refs(self) -> tuple[ValueRef, ...]:
        """The output parameters this arm reads."""
        own = (self.condition,) if self.condition is not None else ()
        return tuple(c.ref for c in (*self.earlier, *own))

    def false_because(self, actual: Callable[[ValueRef], Any]) -> str:
        """Why this arm does not run ("" when it runs); ``actual`` gives an output parameter's value."""
        for earlier in self.earlier:
            value = actual(earlier.ref)
            if earlier.holds(value):
                return (f"skipped: condition {earlier} of an earlier branch is true ({earlier.ref.name} = {value!r}), "
                        f"so this {self.kind} does not run")
        if self.condition is not None:
            value = actual(self.condition.ref)
            if not self.condition.holds(value):
                return f"skipped: condition {self.condition} is false ({self.condition.ref.name} = {value!r})"
        return ""

    def __str__(self) -> str:
        if self.condition is None:
            return "Else (" + " and ".join(f"not {c}" for c in self.earlier) + ")"
        return str(self.condition) if self.kind == "If" else f"Elif {self.condition}"


def _condition_of(builder: Any, condition: Any, kind: str) -> Condition:
    if not isinstance(condition, Condition):
        raise PipelineDefinitionError(
            f"In pipeline '{builder.pipeline_name}', {kind} takes a comparison of a task's output "
            f"parameter with a constant, e.g. {kind}(evaluate_task.values['blessed'] == True); got "
            f"{condition!r}. Artifacts (task.outputs[...]) and pipeline parameters cannot be tested; "
            "declare an Output[bool] (or int, float, str) on the component that decides."
        )
    if builder.tasks.get(condition.ref.task_id) is None:
        raise PipelineDefinitionError(
            f"In pipeline '{builder.pipeline_name}', {kind} tests task '{condition.ref.task_id}', "
            "which is not part of this pipeline."
        )
    return condition


def _open_builder(kind: str) -> Any:
    from flywheel.dsl.pipeline import current_builder

    builder = current_builder()
    if builder is None:
        raise PipelineDefinitionError(f"{kind}(...) is used inside a @pipeline function; it was called outside one.")
    return builder


class _BranchBlock:
    """The ``with`` block of one arm; remembers the arm so that an ``Elif``/``Else`` can follow it."""

    def _setup(self, builder: Any, branch: Branch) -> None:
        self._builder = builder
        self.branch = branch
        self._before: set[str] = set()

    def __enter__(self) -> Any:
        self._before = set(self._builder.tasks)
        self._builder.scopes.append(self.branch)
        self._builder.last_branch = None
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._builder.scopes.pop()
        if exc_type is not None:
            return
        created = bool(set(self._builder.tasks) - self._before)
        # An Elif/Else may follow only directly, at the same depth (add_task clears this).
        self._builder.last_branch = (len(self._builder.scopes), self.branch, created)


class If(_BranchBlock):
    """Tasks created inside the ``with`` block run only when ``condition`` holds (else SKIPPED)."""

    def __init__(self, condition: Any) -> None:
        builder = _open_builder("If")
        self.condition = _condition_of(builder, condition, "If")
        self._setup(builder, Branch("If", self.condition))


def _previous_branch(builder: Any, kind: str) -> Branch:
    last = builder.last_branch
    where = f"In pipeline '{builder.pipeline_name}', {kind}"
    if last is None or last[0] != len(builder.scopes) or last[1].kind == "Else":
        raise PipelineDefinitionError(
            f"{where} must directly follow a `with If(...)` or `with Elif(...)` block at the same depth, "
            "with no task created in between (as KFP's dsl.Elif / dsl.Else); move it right after that block."
        )
    if not last[2]:
        raise PipelineDefinitionError(
            f"{where} follows an {last[1].kind} block that creates no task; create that branch's tasks "
            "inside it (Kubeflow compiles an empty branch to nothing, which breaks the chain)."
        )
    return last[1]


class Elif(_BranchBlock):
    """After an ``If``/``Elif`` block: its tasks run when every earlier condition is false and this one holds."""

    def __init__(self, condition: Any) -> None:
        builder = _open_builder("Elif")
        previous = _previous_branch(builder, "Elif")
        self.condition = _condition_of(builder, condition, "Elif")
        self._setup(builder, Branch("Elif", self.condition, (*previous.earlier, previous.condition)))


class Else(_BranchBlock):
    """After an ``If``/``Elif`` block: its tasks run when every earlier condition is false."""

    def __init__(self) -> None:
        builder = _open_builder("Else")
        previous = _previous_branch(builder, "Else")
        self.condition = None
        self._setup(builder, Branch("Else", None, (*previous.earlier, previous.condition)))


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

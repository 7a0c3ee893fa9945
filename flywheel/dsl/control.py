"""Control flow in a pipeline: an exit handler (KFP's ``dsl.ExitHandler``).

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

"""Pipelines: components wired output-to-input, validated when built.

A pipeline is declared like a Kubeflow Pipelines v2 pipeline::

    @pipeline(name="training")
    def training(data_path: str, epochs: int = 10) -> None:
        rows = ingest(path=data_path)
        stats = validate(examples=rows.outputs["examples"])

The function runs once, when the decorator is applied, with placeholders for
its parameters; every component call inside it adds a ``Task``. Wiring is
checked on each call and the finished graph is checked for cycles, so a bad
pipeline fails at definition time with a message that names the component,
the input, what was expected and what was given.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import json
import typing
from typing import Any, Callable, Iterable, Iterator, Mapping

from flywheel.dsl import addressing
from flywheel.dsl.artifacts import Artifact
from flywheel.dsl.component import (
    _NO_DEFAULT,
    Component,
    ComponentOptions,
    ParameterSpec,
    _parameter_type,
    value_matches_type,
)
from flywheel.dsl.control import Branch, ExitScope, ValueRef, check_exit_scope
from flywheel.dsl.loops import Collected, Loop, LoopItem, check_collected_input, check_loop_parameter, check_scopes
from flywheel.dsl.parameters import coerce_parameter
from flywheel.dsl.resources import Placement, SecretEnv, Toleration, check_image_role
from flywheel.errors import ParameterError, PipelineDefinitionError
from flywheel.names import check_name

_BUILDER: contextvars.ContextVar[_PipelineBuilder | None] = contextvars.ContextVar(
    "flywheel_pipeline_builder", default=None
)


def current_builder() -> _PipelineBuilder | None:
    """The pipeline being built, if a ``@pipeline`` function is running."""
    return _BUILDER.get()


@dataclasses.dataclass(frozen=True)
class PipelineParam:
    """Placeholder for a pipeline parameter inside a pipeline function."""

    name: str
    type: type

    def __str__(self) -> str:
        return f"{{{{pipeline.{self.name}}}}}"


@dataclasses.dataclass(frozen=True)
class OutputRef:
    """An output artifact of a task, used as another task's input."""

    task_id: str
    output: str
    type: type[Artifact]


@dataclasses.dataclass(frozen=True)
class LatestRef:
    """The newest published artifact of an earlier run (TFX's LatestArtifactStrategy).

    Resolved by the runner when the task starts: the most recent LIVE output
    ``output`` of task ``task_id`` of this pipeline from a previous run, or
    nothing (the input must then be optional) on a first run. When a task
    refers to its own earlier output, runs on the same input data are passed
    over, so "the previous statistics" means those of the previous *different*
    data, and a re-run on identical data is served from the cache.
    """

    task_id: str
    output: str
    type: type[Artifact]


def latest(artifact_type: type[Artifact], *, task: str, output: str) -> LatestRef:
    """Refers to the newest ``output`` of ``task`` from an earlier run of this pipeline."""
    if not (isinstance(artifact_type, type) and issubclass(artifact_type, Artifact)):
        raise PipelineDefinitionError(f"latest() takes an artifact type; got {artifact_type!r}.")
    return LatestRef(task, output, artifact_type)


class Task:
    """One node of a pipeline: a component call with its arguments.

    Attributes:
        id: Unique node id in the pipeline (the component name, suffixed if
            the component is used more than once).
        component: The component this node runs.
        inputs: Input name -> ``OutputRef`` of the producing task, or a
            ``LatestRef`` resolved from earlier runs.
        parameters: Parameter name -> constant, ``PipelineParam``, ``LoopItem`` or ``Collected``.
        scopes: The ``If``/``Elif``/``Else`` arms (``Branch``) and ``ParallelFor`` (``Loop``)
            blocks the task was created in, outermost first.
        outputs: Output name -> ``OutputRef`` to wire into other tasks.
    """

    def __init__(self, task_id: str, comp: Component) -> None:
        self.id = task_id
        self.component = comp
        self.inputs: dict[str, OutputRef | LatestRef | Collected] = {}
        self.parameters: dict[str, Any] = {}
        self.explicit_upstream: list[str] = []
        self.options: ComponentOptions = comp.options
        self.outputs: Mapping[str, OutputRef] = {
            name: OutputRef(task_id, name, spec.type) for name, spec in comp.outputs.items()
        }
        self.values: Mapping[str, ValueRef] = {
            name: ValueRef(task_id, name, spec.type) for name, spec in comp.output_values.items()
        }
        self.scopes: tuple[Branch | Loop, ...] = ()

    @property
    def conditions(self) -> tuple[Branch, ...]:
        """The condition arms the task runs under, outermost first."""
        return tuple(scope for scope in self.scopes if isinstance(scope, Branch))

    @property
    def loop(self) -> Loop | None:
        """The ``ParallelFor`` the task runs in, if any."""
        return next((scope for scope in self.scopes if isinstance(scope, Loop)), None)

    @property
    def output(self) -> OutputRef:
        """The single output of a one-output component."""
        if len(self.outputs) != 1:
            raise PipelineDefinitionError(
                f"Task '{self.id}' has {len(self.outputs)} outputs "
                f"({', '.join(self.outputs) or 'none'}); use .outputs['name'] to pick one."
            )
        return next(iter(self.outputs.values()))

    @property
    def upstream(self) -> list[str]:
        """Ids of the tasks this one waits for (data, ``Collected``, explicit ``after``, the tasks its
        conditions test and the task whose output its loop iterates)."""
        from flywheel.dsl.loops import dependencies

        return list(dict.fromkeys(up for up, _, _ in dependencies(self)))

    def after(self, *tasks: Task) -> Task:
        """Runs this task only after the given tasks, without passing data."""
        for task in tasks:
            if not isinstance(task, Task):
                raise PipelineDefinitionError(
                    f"Task '{self.id}'.after() takes tasks; got {task!r}."
                )
            self.explicit_upstream.append(task.id)
        return self

    def set_retries(self, retries: int, backoff_s: float | None = None) -> Task:
        """Overrides the component's retry policy for this task."""
        self.options = dataclasses.replace(
            self.options,
            retries=retries,
            retry_backoff_s=self.options.retry_backoff_s if backoff_s is None else backoff_s,
        )
        return self

    def set_caching(self, enabled: bool) -> Task:
        """Turns caching on or off for this task."""
        self.options = dataclasses.replace(self.options, cache=enabled)
        return self

    def set_resources(
        self,
        *,
        cpu: str | None = None,
        memory: str | None = None,
        cpu_limit: str | None = None,
        memory_limit: str | None = None,
        accelerator: str | None = None,
        accelerator_count: int | None = None,
    ) -> Task:
        """Overrides the component's Kubernetes resources (requests, limits, accelerator) for this task."""
        resources = self.options.resources.merged(
            cpu=cpu, memory=memory, cpu_limit=cpu_limit, memory_limit=memory_limit,
            accelerator=accelerator, accelerator_count=accelerator_count,
        )
        self.options = dataclasses.replace(self.options, resources=resources)
        return self

    def set_placement(
        self, *, node_selector: Mapping[str, str] | None = None, tolerations: Iterable[Toleration] | None = None
    ) -> Task:
        """Replaces the node selector and/or tolerations of this task's pod (given ones only)."""
        current = self.options.placement
        placement = Placement.of(
            dict(current.node_selector) if node_selector is None else node_selector,
            current.tolerations if tolerations is None else tolerations,
            current.secret_env,
        )
        self.options = dataclasses.replace(self.options, placement=placement)
        return self

    def set_secret_env(self, env: str, *, secret: str, key: str) -> Task:
        """Sets environment variable ``env`` of this task from key ``key`` of Secret ``secret``."""
        placement = self.options.placement.with_secret(SecretEnv(env, secret, key))
        self.options = dataclasses.replace(self.options, placement=placement)
        return self

    def set_image(self, role: str) -> Task:
        """Overrides the image role this task runs in on Kubeflow ("component" or "serving")."""
        self.options = dataclasses.replace(self.options, image=check_image_role(role))
        return self

    def __repr__(self) -> str:
        return f"Task({self.id!r}, component={self.component.name!r})"


class _PipelineBuilder:
    def __init__(self, pipeline_name: str, params: dict[str, ParameterSpec]) -> None:
        self.pipeline_name = pipeline_name
        self.params = params
        self.tasks: dict[str, Task] = {}
        self.exit_scope: ExitScope | None = None
        self.exit_open = False
        self.scopes: list[Branch | Loop] = []
        self.last_branch: tuple[int, Branch, bool] | None = None  # what an Elif/Else may follow
        self.loop_count = 0

    def _task_id(self, name: str) -> str:
        if name not in self.tasks:
            return name
        n = 2
        while f"{name}-{n}" in self.tasks:
            n += 1
        return f"{name}-{n}"

    def add_task(self, comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
        where = f"In pipeline '{self.pipeline_name}', component '{comp.name}'"
        if args:
            raise PipelineDefinitionError(
                f"{where} was called with {len(args)} positional argument(s); pass inputs "
                "and parameters by name, e.g. train(examples=ingest_task.outputs['examples'])."
            )
        task = Task(self._task_id(comp.name), comp)
        task.scopes = tuple(self.scopes)
        self.last_branch = None
        for arg_name, value in kwargs.items():
            if arg_name in comp.inputs:
                task.inputs[arg_name] = self._check_input(where, comp, arg_name, value)
            elif arg_name == comp.final_status_parameter:
                raise PipelineDefinitionError(
                    f"{where}: '{arg_name}' is its FinalStatus parameter, filled when it runs as an exit "
                    f"task; do not pass it. Use `with ExitHandler({comp.name}(...)):` around the tasks to report on."
                )
            elif arg_name in comp.parameters:
                task.parameters[arg_name] = self._check_parameter(where, comp, arg_name, value)
            elif arg_name in comp.outputs or arg_name in comp.output_values:
                raise PipelineDefinitionError(
                    f"{where}: '{arg_name}' is an output; outputs are created by the runner "
                    f"and read as task.outputs['{arg_name}'], not passed in."
                )
            else:
                raise PipelineDefinitionError(
                    f"{where} has no input or parameter '{arg_name}'. "
                    f"{_describe_interface(comp)}"
                )
        for name, spec in comp.inputs.items():
            if name not in task.inputs and not spec.optional:
                raise PipelineDefinitionError(
                    f"{where} is missing its required input '{name}' "
                    f"(expected {spec.type.TYPE_NAME})."
                )
        for name, spec in comp.parameters.items():
            if name not in task.parameters and spec.required:
                raise PipelineDefinitionError(
                    f"{where} is missing its required parameter '{name}' "
                    f"(expected {spec.type.__name__})."
                )
        self.tasks[task.id] = task
        return task

    def _check_input(self, where: str, comp: Component, name: str, value: Any) -> OutputRef | LatestRef | Collected:
        spec = comp.inputs[name]
        if spec.collection or isinstance(value, Collected):
            return check_collected_input(self, where, spec, name, value)
        if isinstance(value, LoopItem):
            raise PipelineDefinitionError(
                f"{where}: input '{name}' expects an artifact of type {spec.type.TYPE_NAME} but got the {value}; "
                "a loop item is a parameter value."
            )
        if isinstance(value, LatestRef):
            if not spec.optional:
                raise PipelineDefinitionError(
                    f"{where}: input '{name}' gets latest(...) but is required; the first run has "
                    f"no earlier artifact, so declare it optional ({name}: Input[...] = None)."
                )
            if not issubclass(value.type, spec.type):
                raise PipelineDefinitionError(
                    f"{where}: input '{name}' expects {spec.type.TYPE_NAME} but latest(...) gives "
                    f"{value.type.TYPE_NAME}."
                )
            return value
        if isinstance(value, Task):
            if len(value.outputs) == 1:
                value = value.output
            else:
                raise PipelineDefinitionError(
                    f"{where}: input '{name}' expects {spec.type.TYPE_NAME} but got task "
                    f"'{value.id}', which has outputs {', '.join(value.outputs) or '(none)'}; "
                    f"pass {value.id}.outputs['<name>']."
                )
        if not isinstance(value, OutputRef):
            raise PipelineDefinitionError(
                f"{where}: input '{name}' expects an artifact of type {spec.type.TYPE_NAME} "
                f"(another task's output) but got {_describe_value(value)}."
            )
        if value.task_id not in self.tasks:
            raise PipelineDefinitionError(
                f"{where}: input '{name}' refers to task '{value.task_id}', which is not part "
                f"of pipeline '{self.pipeline_name}'."
            )
        if not issubclass(value.type, spec.type):
            raise PipelineDefinitionError(
                f"{where}: input '{name}' expects {spec.type.TYPE_NAME} but got "
                f"{value.type.TYPE_NAME} (output '{value.output}' of task '{value.task_id}')."
            )
        return value

    def _check_parameter(self, where: str, comp: Component, name: str, value: Any) -> Any:
        spec = comp.parameters[name]
        if isinstance(value, (LoopItem, Collected)):
            return check_loop_parameter(self, where, spec, name, value, owner=comp.name)
        if isinstance(value, ValueRef):
            raise PipelineDefinitionError(
                f"{where}: parameter '{name}' gets output parameter '{value.name}' of task '{value.task_id}'; "
                "output parameters are tested by If(...), iterated by ParallelFor(...) or collected after a "
                "loop with Collected(...), not passed between tasks."
            )
        if isinstance(value, (OutputRef, Task)):
            raise PipelineDefinitionError(
                f"{where}: parameter '{name}' expects {spec.type.__name__} but got "
                f"an artifact ({_describe_value(value)}); artifacts go to Input[...] arguments."
            )
        if isinstance(value, PipelineParam):
            compatible = value.type is spec.type or (value.type is int and spec.type is float)
            if not compatible:
                raise PipelineDefinitionError(
                    f"{where}: parameter '{name}' expects {spec.type.__name__} but got pipeline "
                    f"parameter '{value.name}' of type {value.type.__name__}."
                )
            return value
        if not spec.check_value(value):
            raise PipelineDefinitionError(
                f"{where}: parameter '{name}' expects {spec.type.__name__} but got "
                f"{_describe_value(value)}."
            )
        try:
            spec.check_rules(comp.name, value)
        except ParameterError as exc:
            raise ParameterError(f"{where}: {exc}") from exc
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise PipelineDefinitionError(
                f"{where}: parameter '{name}' must be JSON-serialisable; got {value!r}."
            ) from exc
        return value


def _describe_value(value: Any) -> str:
    if isinstance(value, OutputRef):
        return f"{value.type.TYPE_NAME} (output '{value.output}' of task '{value.task_id}')"
    if isinstance(value, Task):
        return f"task '{value.id}'"
    return f"{type(value).__name__} {value!r}"


def _describe_interface(comp: Component) -> str:
    inputs = ", ".join(
        f"{n} ({s.type.TYPE_NAME}{', optional' if s.optional else ''})" for n, s in comp.inputs.items()
    )
    params = ", ".join(f"{n} ({s.type.__name__})" for n, s in comp.parameters.items())
    return f"Its inputs are: {inputs or '(none)'}; its parameters are: {params or '(none)'}."


class Pipeline:
    """A validated graph of tasks with typed parameters.

    Attributes:
        name: Pipeline name (context name in ML Metadata, KFP pipeline name).
        description: The pipeline function's docstring.
        parameters: Pipeline parameter specs by name.
        tasks: Tasks by id, in definition order (a valid topological order).
        derived_defaults: Parameter name -> function of the other values, used
            when that parameter is left "" (``model_name`` from ``data_path``).
    """

    def __init__(
        self,
        name: str,
        parameters: dict[str, ParameterSpec],
        tasks: dict[str, Task],
        description: str = "",
        source_file: str | None = None,
        derived_defaults: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
        exit_scope: ExitScope | None = None,
    ) -> None:
        self.name = name
        self.exit_scope = exit_scope
        self.parameters = parameters
        self.tasks = tasks
        self.description = description
        self.source_file = source_file
        self.derived_defaults = dict(derived_defaults or {})
        unknown = sorted(set(self.derived_defaults) - set(parameters))
        if unknown:
            raise PipelineDefinitionError(
                f"derived_defaults of pipeline '{name}' names {unknown[0]!r}, which is not one of its "
                f"parameters ({', '.join(parameters) or 'none'})."
            )
        self._check_graph()

    def _check_graph(self) -> None:
        check_name("pipeline", self.name)
        if not self.tasks:
            raise PipelineDefinitionError(f"Pipeline '{self.name}' has no tasks.")
        for task in self.tasks.values():
            check_name(f"task (in pipeline '{self.name}')", task.id)
            for output in task.outputs:
                check_name(f"output (of task '{task.id}')", output)
            for up in task.upstream:
                if up not in self.tasks:
                    raise PipelineDefinitionError(
                        f"In pipeline '{self.name}', task '{task.id}' depends on '{up}', "
                        "which is not part of this pipeline."
                    )
        check_exit_scope(self.name, self.tasks, self.exit_scope)
        check_scopes(self.name, self.tasks)
        # A pipeline's own defaults must meet the rules of the task parameters they feed.
        self.check_task_parameters({
            n: spec.default for n, spec in self.parameters.items()
            if not spec.required and not (n in self.derived_defaults and spec.default in ("", None))
        })
        cycle = self._find_cycle()
        if cycle:
            raise PipelineDefinitionError(
                f"Pipeline '{self.name}' has a cycle: {' -> '.join(cycle)}. "
                "A task cannot (indirectly) depend on itself; check the .after() calls."
            )

    def _find_cycle(self) -> list[str] | None:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> list[str] | None:
            state[node] = 1
            stack.append(node)
            for up in self.tasks[node].upstream:
                if state.get(up) == 1:
                    return stack[stack.index(up):] + [up]
                if up not in state:
                    found = visit(up)
                    if found:
                        return found
            stack.pop()
            state[node] = 2
            return None

        for task_id in self.tasks:
            if task_id not in state:
                found = visit(task_id)
                if found:
                    return found
        return None

    def topological_order(self) -> list[str]:
        """Task ids with every task after all of its upstream tasks."""
        order: list[str] = []
        done: set[str] = set()

        def visit(node: str) -> None:
            if node in done:
                return
            for up in self.tasks[node].upstream:
                visit(up)
            done.add(node)
            order.append(node)

        for task_id in self.tasks:
            visit(task_id)
        return order

    def downstream_of(self, task_ids: set[str]) -> set[str]:
        """The given tasks plus every task that depends on them."""
        result = set(task_ids)
        for task_id in self.topological_order():
            if any(up in result for up in self.tasks[task_id].upstream):
                result.add(task_id)
        return result

    def resolve_parameters(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Pipeline parameter values: defaults, then overrides.

        String overrides (from ``--param k=v``) are converted to the declared
        type. ``TASK.PARAM`` overrides, and plain names that only one task has
        (``expand_names``), come back as ``TASK.PARAM`` entries. Raises
        ParameterError on unknown names, missing required values and values
        that do not fit the type.
        """
        overrides = self.expand_names(overrides or {})
        task_values = {f"{task_id}.{name}": value for (task_id, name), value in self.task_overrides(overrides).items()}
        overrides = {name: value for name, value in overrides.items() if name not in task_values}
        unknown = sorted(set(overrides) - set(self.parameters))
        if unknown:
            raise ParameterError(addressing.unknown_message(self, unknown))
        values: dict[str, Any] = {}
        for name, spec in self.parameters.items():
            if name in overrides:
                values[name] = coerce_parameter(self.name, spec, overrides[name])
            elif spec.required:
                raise ParameterError(
                    f"Pipeline '{self.name}' needs a value for parameter '{name}' "
                    f"({spec.type.__name__}); pass --param {name}=VALUE."
                )
            else:
                values[name] = spec.default
        for name, derive in self.derived_defaults.items():
            if values.get(name) in ("", None):
                values[name] = derive(dict(values))
        self.check_task_parameters(values)
        values.update(task_values)
        return values

    def expand_names(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with each plain name that is not a pipeline parameter but the parameter of
        exactly one task renamed ``TASK.NAME`` (``-p epochs=5`` -> ``train.epochs``).

        Raises:
            ParameterError: several tasks have that name (the error lists the ``-p TASK.NAME=`` forms).
        """
        return addressing.expand_names(self, values)

    def task_overrides(self, values: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
        """The ``TASK.PARAM`` entries of ``values`` (``-p train.epochs=50``), checked against the
        component's own parameter (type and declared rules) and coerced: ``{(task, param): value}``.

        Any parameter of any task can be set this way, whether or not the pipeline exposes it,
        and so can a plain name that is no pipeline parameter but one task's (``expand_names``);
        pipeline parameters are left to ``resolve_parameters``. A parameter a ParallelFor feeds
        (its item, a Collected list) is refused: the loop's items decide it.

        Raises:
            ParameterError: no such task or parameter, or a value that does not fit.
        """
        result: dict[tuple[str, str], Any] = {}
        for key, raw in self.expand_names(values).items():
            if "." not in key:
                continue
            task_id, _, name = key.partition(".")
            task = self.tasks.get(task_id)
            if task is None:
                raise ParameterError(
                    f"-p {key}: pipeline '{self.name}' has no task {task_id!r}. Its tasks are: {', '.join(self.tasks)}."
                )
            spec = task.component.parameters.get(name)
            if spec is not None and addressing.loop_fed(task, name):
                raise ParameterError(
                    f"-p {key}: task '{task_id}' gets {name!r} from its ParallelFor ({task.parameters[name]}); "
                    "change the loop's items instead."
                )
            if spec is None or name == task.component.final_status_parameter:
                known = addressing.addressable(task)
                raise ParameterError(
                    f"-p {key}: task '{task_id}' ({task.component.name}) has no parameter {name!r}. "
                    f"Its parameters are: {', '.join(known) or '(none)'}."
                )
            try:
                value = coerce_parameter(self.name, spec, raw)
                spec.check_rules(task.component.name, value)
            except ParameterError as exc:
                raise ParameterError(f"-p {key}: {exc}") from exc
            result[(task_id, name)] = value
        return result

    def with_task_overrides(self, values: Mapping[str, Any]) -> Pipeline:
        """A copy in which the ``TASK.PARAM`` entries of ``values`` are that task's parameter,
        in place of whatever the pipeline passed it (a constant, a pipeline parameter or the
        component's default). Other entries are ignored. Checked as ``task_overrides`` does."""
        import copy

        overrides = self.task_overrides(values)
        if not overrides:
            return self
        tasks: dict[str, Task] = {}
        for task_id, task in self.tasks.items():
            mine = {name: value for (owner, name), value in overrides.items() if owner == task_id}
            if mine:
                task = copy.copy(task)
                task.parameters = {**task.parameters, **mine}
            tasks[task_id] = task
        return Pipeline(self.name, self.parameters, tasks, self.description, self.source_file,
                        self.derived_defaults, self.exit_scope)

    def check_task_parameters(self, values: Mapping[str, Any]) -> None:
        """Checks the pipeline parameter values in ``values`` against the rules of every task
        parameter they feed (declared in the component's signature).

        Raises:
            ParameterError: naming the pipeline parameter, the task and the rule.
        """
        for task_id, task in self.tasks.items():
            for name, value in task.parameters.items():
                if isinstance(value, PipelineParam) and value.name in values:
                    try:
                        task.component.parameters[name].check_rules(task.component.name, values[value.name])
                    except ParameterError as exc:
                        raise ParameterError(
                            f"Pipeline '{self.name}', parameter '{value.name}' (task '{task_id}'): {exc}"
                        ) from exc

    def bind(self, values: Mapping[str, Any]) -> Pipeline:
        """A copy in which the named pipeline parameters are constants (``flywheel compile -p``).

        A bound parameter leaves the pipeline's signature; every task argument
        that referred to it takes the value. Compilers can then see it, e.g. a
        random ``tune`` with a constant search space fans out its trials on
        Kubeflow. Values are checked and coerced as ``resolve_parameters`` does.

        Raises:
            ParameterError: an unknown name, or a value that does not fit the type.
        """
        import copy

        if not values:
            return self
        values = self.expand_names(values)
        if any("." in name for name in values):  # TASK.PARAM: that task's parameter becomes a constant
            return self.with_task_overrides(values).bind({n: v for n, v in values.items() if "." not in n})
        unknown = sorted(set(values) - set(self.parameters))
        if unknown:
            self.resolve_parameters({name: values[name] for name in unknown})  # raises, naming them
        bound = {name: coerce_parameter(self.name, self.parameters[name], value) for name, value in values.items()}
        self.check_task_parameters(bound)
        # A loop over a bound parameter iterates the value: new Loop objects, and the items and scopes using them.
        loops = {
            loop: dataclasses.replace(loop, items=bound[loop.items.name])
            for loop in self.loops
            if isinstance(loop.items, PipelineParam) and loop.items.name in bound
        }

        def rebind(value: Any) -> Any:
            if isinstance(value, PipelineParam) and value.name in bound:
                return bound[value.name]
            if isinstance(value, LoopItem) and value.loop in loops:
                return LoopItem(loops[value.loop], value.key)
            return value

        tasks: dict[str, Task] = {}
        for task_id, task in self.tasks.items():
            clone = copy.copy(task)
            clone.parameters = {name: rebind(value) for name, value in task.parameters.items()}
            clone.scopes = tuple(loops.get(scope, scope) if isinstance(scope, Loop) else scope for scope in task.scopes)
            tasks[task_id] = clone
        parameters = {name: spec for name, spec in self.parameters.items() if name not in bound}
        derived = {n: f for n, f in self.derived_defaults.items() if n in parameters}
        return Pipeline(self.name, parameters, tasks, self.description, self.source_file, derived, self.exit_scope)

    def task_parameters(
        self,
        task_id: str,
        pipeline_values: Mapping[str, Any],
        *,
        item: Any = _NO_DEFAULT,
        collected: Mapping[str, list] | None = None,
    ) -> dict[str, Any]:
        """Concrete parameter values of one task for a run.

        ``item`` is the loop item of the iteration (a ``LoopItem`` parameter without one is
        shown as its description), ``collected`` the lists of ``Collected`` parameters.

        Raises:
            ValueError: a ``LoopItem`` with a key, and an item that is not a dict holding it.
        """
        task = self.tasks[task_id]
        values: dict[str, Any] = {}
        for name, spec in task.component.parameters.items():
            if name in task.parameters:
                value = task.parameters[name]
                if isinstance(value, PipelineParam):
                    value = pipeline_values[value.name]
                elif isinstance(value, LoopItem):
                    value = str(value) if item is _NO_DEFAULT else value.value_in(item)
                elif isinstance(value, Collected):
                    value = list((collected or {}).get(name, []))
                values[name] = value
            else:
                values[name] = spec.default
        return values

    @property
    def loops(self) -> list[Loop]:
        """The ``ParallelFor`` blocks, in definition order."""
        found = [task.loop for task in self.tasks.values() if task.loop is not None]
        return list(dict.fromkeys(found))

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, tasks={list(self.tasks)})"


def pipeline(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    derived_defaults: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
) -> Any:
    """Builds a ``Pipeline`` from a function that calls components.

    ``derived_defaults`` maps a parameter to a function of all parameter values
    that gives its value when it is left "" (e.g. a model name from the data path).

    Raises:
        PipelineDefinitionError: wiring is wrong (unknown input, type
            mismatch, missing input, cycle) or a parameter is not annotated.
    """

    def build(func: Callable[..., Any]) -> Pipeline:
        pipeline_name = name or func.__name__.replace("_", "-")
        params = _pipeline_parameters(func, pipeline_name)
        builder = _PipelineBuilder(pipeline_name, params)
        token = _BUILDER.set(builder)
        try:
            func(**{p: PipelineParam(p, spec.type) for p, spec in params.items()})
        finally:
            _BUILDER.reset(token)
        source = inspect.getsourcefile(func)
        return Pipeline(
            pipeline_name,
            params,
            builder.tasks,
            description=description if description is not None else (inspect.getdoc(func) or ""),
            source_file=source,
            derived_defaults=derived_defaults,
            exit_scope=builder.exit_scope,
        )

    if fn is not None:
        return build(fn)
    return build


def _pipeline_parameters(func: Callable[..., Any], pipeline_name: str) -> dict[str, ParameterSpec]:
    hints = typing.get_type_hints(func)
    params: dict[str, ParameterSpec] = {}
    for pname, param in inspect.signature(func).parameters.items():
        ptype = _parameter_type(hints[pname]) if pname in hints else None
        if ptype is None:
            raise PipelineDefinitionError(
                f"Parameter '{pname}' of pipeline '{pipeline_name}' needs an annotation of "
                f"int, float, str, bool, dict or list; got {hints.get(pname, 'none')!r}."
            )
        default = param.default
        if default is not _NO_DEFAULT and default is not None and not value_matches_type(default, ptype):
            raise PipelineDefinitionError(
                f"Parameter '{pname}' of pipeline '{pipeline_name}' is a {ptype.__name__} but its "
                f"default is {default!r}."
            )
        params[pname] = ParameterSpec(pname, ptype, default)
    return params

"""Typed components: plain annotated Python functions.

A component's interface comes from its type hints::

    @component
    def count_rows(examples: Input[Examples], stats: Output[ExampleStatistics],
                   min_rows: int = 1) -> None:
        ...

``Input[T]`` / ``Output[T]`` mark artifacts (``T`` an ``Artifact`` subclass);
every other argument is a parameter of type int, float, str, bool, dict or
list. A missing or unsupported annotation is a ``ComponentDefinitionError``
raised when the decorator runs, naming the function and the argument.

Called inside a ``@pipeline`` function a component returns a ``Task`` (a node
of the pipeline); called anywhere else it simply runs the function, so the
body stays ordinary, testable library code.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import re
import sys
import types
import typing
from typing import Any, Callable, Mapping

from flywheel.dsl.artifacts import Artifact
from flywheel.dsl.constraints import is_rule, validate_parameter
from flywheel.dsl.resources import Placement, Resources, check_image_role
from flywheel.errors import ComponentDefinitionError, FlywheelError

PARAMETER_TYPES: tuple[type, ...] = (int, float, str, bool, dict, list)


class _ArtifactMarker:
    """Metadata placed in ``Annotated`` to mark an input or output artifact."""

    def __init__(self, direction: str) -> None:
        self.direction = direction

    def __repr__(self) -> str:
        return f"<{self.direction}>"


_INPUT = _ArtifactMarker("input")
_OUTPUT = _ArtifactMarker("output")
_INPUT_LIST = _ArtifactMarker("input list")  # Input[List[T]]: the Collected outputs of a ParallelFor


class _ArtifactAnnotation:
    def __init__(self, marker: _ArtifactMarker) -> None:
        self._marker = marker

    def __getitem__(self, artifact_type: type[Artifact]) -> Any:
        if self._marker is _INPUT and typing.get_origin(artifact_type) is list:
            (element,) = typing.get_args(artifact_type) or (None,)
            if not (isinstance(element, type) and issubclass(element, Artifact)):
                raise ComponentDefinitionError(
                    f"Input[List[...]] takes an artifact type (Input[List[Model]]); got {artifact_type!r} instead."
                )
            return typing.Annotated[list[element], _INPUT_LIST]  # type: ignore[valid-type]
        if self._marker is _OUTPUT and artifact_type in OUTPUT_VALUE_TYPES:
            return typing.Annotated[OutputValue, _OutputValueMarker(artifact_type)]
        if not (isinstance(artifact_type, type) and issubclass(artifact_type, Artifact)):
            raise ComponentDefinitionError(
                f"{self._marker.direction.capitalize()}[...] takes an artifact type "
                f"(a subclass of flywheel.Artifact such as Examples or Model)"
                f"{', or for an output parameter bool, int, float, str or list' if self._marker is _OUTPUT else ''}; "
                f"got {artifact_type!r} instead."
            )
        return typing.Annotated[artifact_type, self._marker]


# list too: a list output parameter is what a ParallelFor may iterate.
OUTPUT_VALUE_TYPES: tuple[type, ...] = (bool, int, float, str, list)


@dataclasses.dataclass(frozen=True)
class _OutputValueMarker:
    type: type


class OutputValue:
    """An output parameter (``Output[bool]``, ...): the component calls ``.set(value)`` once.

    Other tasks cannot take it as data; it is what a condition (``If``) tests.
    """

    def __init__(self, value_type: type, name: str = "") -> None:
        self.type = value_type
        self.name = name
        self.value: Any = None
        self.is_set = False

    def set(self, value: Any) -> None:
        if not value_matches_type(value, self.type):
            raise TypeError(f"Output parameter '{self.name}' is a {self.type.__name__}; got {value!r}.")
        self.value = float(value) if self.type is float else value
        self.is_set = True


Input = _ArtifactAnnotation(_INPUT)
Output = _ArtifactAnnotation(_OUTPUT)

_FINAL_STATUS = _ArtifactMarker("final status")
# The parameter of an exit task that receives the state of the tasks it guards (``ExitHandler``):
# a dict filled by the runner (KFP's ``PipelineTaskFinalStatus`` on Kubeflow); declare it ``= None``.
FinalStatus = typing.Annotated[dict, _FINAL_STATUS]


@dataclasses.dataclass(frozen=True)
class ArtifactSpec:
    """An input or output artifact of a component."""

    name: str
    type: type[Artifact]
    optional: bool = False
    collection: bool = False  # Input[List[T]]: a list of artifacts (``Collected`` of a loop's outputs)


_NO_DEFAULT = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """A parameter (a plain value) of a component or pipeline."""

    name: str
    type: type
    default: Any = _NO_DEFAULT
    rules: tuple[Any, ...] = ()  # Interval/Options/predicates from Annotated[...] (flywheel.dsl.constraints)

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    def check_rules(self, owner: str, value: Any) -> None:
        """Raises ParameterError (the uniform message) when ``value`` breaks a declared rule.

        None for a parameter that defaults to None means "not given" and passes.
        """
        if self.rules and not (value is None and self.default is None):
            validate_parameter(owner, self.name, value, list(self.rules))

    def check_value(self, value: Any) -> bool:
        """Whether ``value`` may be passed to this parameter."""
        if value is None:
            return not self.required and self.default is None
        return value_matches_type(value, self.type)


def value_matches_type(value: Any, expected: type) -> bool:
    """Whether a plain value fits a parameter type (an int may go to a float)."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


@dataclasses.dataclass(frozen=True)
class ComponentOptions:
    """How a component runs; set on the decorator, overridable per task.

    Attributes:
        retries: Extra attempts after a failure (``retries + 1`` in all).
        retry_backoff_s: Wait before the first retry; doubles each retry.
        cache: Whether an earlier identical execution may be reused.
        version: Bump to invalidate caches when behaviour changes outside the
            component's own source file.
        resources: CPU/memory requests and limits and an accelerator, on Kubernetes.
        placement: Node selector, tolerations and secrets as env, on Kubernetes.
        isolated: Locally, the worker process that runs it exits afterwards,
            so what the component imports (e.g. TFDV and Beam for ``validate``)
            does not stay in memory while the following nodes run. Costs a
            fresh worker for the next node (forked from the run's warm parent,
            with TensorFlow already imported, when there is one: runner/warm.py).
            On Kubeflow every task is its own pod anyway.
        image: The image role the task runs in on Kubeflow (``resources.IMAGE_ROLES``):
            "component" (default) or "serving". Locally every task runs in this process's
            environment.
    """

    retries: int = 0
    retry_backoff_s: float = 1.0
    cache: bool = True
    version: str = "1"
    resources: Resources = Resources()
    placement: Placement = Placement()
    isolated: bool = False
    image: str = "component"

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ComponentDefinitionError(
                f"The 'retries' option must be an int >= 0. Got {self.retries!r} instead."
            )
        if not isinstance(self.retry_backoff_s, (int, float)) or self.retry_backoff_s < 0:
            raise ComponentDefinitionError(
                "The 'retry_backoff_s' option must be a number >= 0. "
                f"Got {self.retry_backoff_s!r} instead."
            )
        if not isinstance(self.resources, Resources) or not isinstance(self.placement, Placement):
            raise ComponentDefinitionError(
                "The 'resources' option takes flywheel.Resources(...) and 'placement' flywheel.Placement.of(...); "
                f"got {self.resources!r} and {self.placement!r}."
            )
        if not isinstance(self.isolated, bool):
            raise ComponentDefinitionError(f"The 'isolated' option must be True or False. Got {self.isolated!r} instead.")
        check_image_role(self.image)


def _parameter_type(annotation: Any) -> type | None:
    """Maps an annotation to a parameter type, or None if unsupported."""
    origin = typing.get_origin(annotation)
    if origin in (dict, list):
        return origin
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _parameter_type(args[0])
        return None
    if annotation in PARAMETER_TYPES:
        return annotation
    return None


def _output_value_marker(annotation: Any) -> _OutputValueMarker | None:
    if typing.get_origin(annotation) is typing.Annotated:
        return next((e for e in typing.get_args(annotation)[1:] if isinstance(e, _OutputValueMarker)), None)
    return None


def _artifact_annotation(annotation: Any) -> tuple[str, type[Artifact]] | None:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, _ArtifactMarker):
                return extra.direction, base
    return None


class Component:
    """A component: an annotated function plus its interface and options.

    Attributes:
        fn: The original function; call it directly in unit tests.
        name: Component name (the function name unless given).
        inputs / outputs: Artifact specs by argument name.
        parameters: Parameter specs by argument name.
        options: Default run options.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None,
        options: ComponentOptions,
        reads: tuple[str, ...] | Callable[[dict[str, Any]], list[dict[str, Any]]] = (),
        kfp_expansion: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.options = options
        self.reads = reads
        self._kfp_expansion = kfp_expansion
        self.description = inspect.getdoc(fn) or ""
        self.inputs: dict[str, ArtifactSpec] = {}
        self.outputs: dict[str, ArtifactSpec] = {}
        self.parameters: dict[str, ParameterSpec] = {}
        self.final_status_parameter: str | None = None
        self.output_values: dict[str, ParameterSpec] = {}
        self._read_interface()
        self._check_reads()
        if kfp_expansion is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", kfp_expansion):
            raise ComponentDefinitionError(
                f"The 'kfp_expansion' option of component '{self.name}' must be 'MODULE:FUNCTION' (e.g. "
                f"'flywheel.components.tune.fanout:expansion'). Got {kfp_expansion!r} instead."
            )
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__module__ = fn.__module__
        self.__qualname__ = fn.__qualname__
        self.__wrapped__ = fn

    def _read_interface(self) -> None:
        where = f"component '{self.name}' ({self.fn.__module__}.{self.fn.__qualname__})"
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception as exc:  # noqa: BLE001 - any failure to evaluate hints is a definition error
            raise ComponentDefinitionError(
                f"Cannot read the type hints of {where}: {exc}. "
                "Every argument needs an annotation that can be evaluated."
            ) from exc
        signature = inspect.signature(self.fn)
        for pname, param in signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ComponentDefinitionError(
                    f"Argument '{pname}' of {where} is *args/**kwargs; components need "
                    "named, annotated arguments."
                )
            if pname not in hints:
                raise ComponentDefinitionError(
                    f"Argument '{pname}' of {where} has no type annotation. Annotate it as "
                    "Input[SomeArtifact], Output[SomeArtifact] or one of int, float, str, "
                    "bool, dict, list."
                )
            annotation = hints[pname]
            if typing.get_origin(annotation) is typing.Annotated and _FINAL_STATUS in typing.get_args(annotation):
                if param.default is not None or self.final_status_parameter:
                    raise ComponentDefinitionError(
                        f"FinalStatus parameter '{pname}' of {where} must default to None (it is filled only "
                        "when the task is an exit task), and a component has at most one."
                    )
                self.final_status_parameter = pname
                self.parameters[pname] = ParameterSpec(pname, dict, None)
                continue
            value_marker = _output_value_marker(annotation)
            if value_marker is not None:
                if param.default is not _NO_DEFAULT:
                    raise ComponentDefinitionError(f"Output parameter '{pname}' of {where} has a default value; outputs cannot be optional.")
                self.output_values[pname] = ParameterSpec(pname, value_marker.type)
                continue
            artifact = _artifact_annotation(annotation)
            if artifact is not None:
                direction, artifact_type = artifact
                if direction == "input list":
                    if param.default is not _NO_DEFAULT:
                        raise ComponentDefinitionError(
                            f"Input '{pname}' of {where} is Input[List[...]] with a default; it is always given "
                            "(an empty list when the loop had no item)."
                        )
                    (element,) = typing.get_args(artifact_type)
                    self.inputs[pname] = ArtifactSpec(pname, element, collection=True)
                    continue
                if direction == "output":
                    if param.default is not _NO_DEFAULT:
                        raise ComponentDefinitionError(
                            f"Output '{pname}' of {where} has a default value; outputs cannot be optional."
                        )
                    self.outputs[pname] = ArtifactSpec(pname, artifact_type)
                else:
                    if param.default not in (_NO_DEFAULT, None):
                        raise ComponentDefinitionError(
                            f"Input '{pname}' of {where} has default {param.default!r}; "
                            "an input artifact may only default to None (optional)."
                        )
                    self.inputs[pname] = ArtifactSpec(
                        pname, artifact_type, optional=param.default is None
                    )
                continue
            rules: tuple[Any, ...] = ()
            if typing.get_origin(annotation) is typing.Annotated:
                annotation, *extras = typing.get_args(annotation)
                rules = tuple(extra for extra in extras if is_rule(extra))
            ptype = _parameter_type(annotation)
            if ptype is None:
                raise ComponentDefinitionError(
                    f"Argument '{pname}' of {where} is annotated {annotation!r}, which is "
                    "neither an artifact (Input[...]/Output[...]) nor a parameter type "
                    "(int, float, str, bool, dict, list)."
                )
            if param.default is not _NO_DEFAULT and param.default is not None:
                if not value_matches_type(param.default, ptype):
                    raise ComponentDefinitionError(
                        f"Parameter '{pname}' of {where} is a {ptype.__name__} but its default "
                        f"is {param.default!r}."
                    )
            spec = ParameterSpec(pname, ptype, param.default, rules)
            if rules and param.default is not _NO_DEFAULT:
                try:
                    spec.check_rules(self.name, param.default)
                except FlywheelError as exc:
                    raise ComponentDefinitionError(f"The default of {where} breaks its own rule: {exc}") from exc
            self.parameters[pname] = spec
        returns = hints.get("return", None)
        if returns not in (None, type(None)):
            raise ComponentDefinitionError(
                f"{where} returns {returns!r}; components return None and write "
                "their results to Output[...] artifacts."
            )

    def _check_reads(self) -> None:
        if callable(self.reads):
            return
        for pname in self.reads:
            spec = self.parameters.get(pname)
            if spec is None or spec.type is not str:
                raise ComponentDefinitionError(
                    f"The 'reads' option of component '{self.name}' names {pname!r}, which must be a str "
                    f"parameter (a path or URI). Got {'a ' + spec.type.__name__ + ' parameter' if spec else 'no such parameter'} "
                    f"instead; its str parameters are: {', '.join(n for n, p in self.parameters.items() if p.type is str) or 'none'}."
                )

    @property
    def kfp_expansion(self) -> Callable[[Any], Any] | None:
        """The declared Kubeflow fan-out, ``task -> ParallelExpansion | None`` (see
        ``flywheel/kubeflow/compiler.py``), imported on first use: only compiling needs it."""
        if self._kfp_expansion is None:
            return None
        import importlib

        module, _, attr = self._kfp_expansion.partition(":")
        return getattr(importlib.import_module(module), attr)

    def check_parameters(self, values: Mapping[str, Any]) -> None:
        """Checks parameter values against the rules declared in the signature.

        Raises:
            ParameterError: the first value that breaks a rule, in the uniform message.
        """
        for name, value in values.items():
            spec = self.parameters.get(name)
            if spec is not None:
                spec.check_rules(self.name, value)

    @functools.cached_property
    def code_fingerprint(self) -> str:
        """Code version: the component's name and version option, plus the source of its module
        and of the project modules it imports (``flywheel.dsl.code_fingerprint``), taken on first
        use. An edit to another component's module leaves this one's cache valid."""
        from flywheel.dsl.code_fingerprint import module_fingerprint

        digest = hashlib.sha256()
        digest.update(f"{self.fn.__module__}:{self.fn.__qualname__}:{self.options.version}".encode())
        module = sys.modules.get(self.fn.__module__)
        if getattr(module, "__file__", None):
            digest.update(module_fingerprint(self.fn.__module__).encode())
        else:  # defined in a string or an interactive session: the function's own source
            try:
                source = inspect.getsource(self.fn)
            except (OSError, TypeError):
                source = ""
            digest.update(source.encode())
        return digest.hexdigest()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from flywheel.dsl.pipeline import current_builder

        builder = current_builder()
        if builder is None:  # a plain call (unit tests, notebooks): the declared rules still hold
            try:
                given = inspect.signature(self.fn).bind_partial(*args, **kwargs).arguments
            except TypeError:
                given = {}
            self.check_parameters(given)
            return self.fn(*args, **kwargs)
        return builder.add_task(self, args, kwargs)

    def __repr__(self) -> str:
        return f"Component({self.name!r})"


def component(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_backoff_s: float = 1.0,
    cache: bool = True,
    version: str = "1",
    cpu: str | None = None,
    memory: str | None = None,
    resources: Resources | Mapping[str, Any] | None = None,
    placement: Placement | None = None,
    isolated: bool = False,
    image: str = "component",
    reads: tuple[str, ...] | Callable[[dict[str, Any]], list[dict[str, Any]]] = (),
    kfp_expansion: str | None = None,
) -> Any:
    """Turns an annotated function into a component (with or without arguments).

    ``reads`` declares data the component reads from outside the store, which
    becomes part of its cache key: str parameters that hold a path or URI, or a
    function from the node's parameters to source records
    (``flywheel.data_sources.describe_source``).

    ``resources`` and ``placement`` (``flywheel.dsl.resources``) apply on
    Kubernetes; ``cpu``/``memory`` are shorthands for the requests of ``resources``.
    ``retries`` with ``retry_backoff_s`` (doubling) apply locally and on Kubeflow.
    ``image`` is the image role the task runs in on Kubeflow ("component" or "serving").
    ``kfp_expansion`` ("MODULE:FUNCTION") declares how the component fans out on Kubeflow: a
    function of the task that returns a ``ParallelExpansion`` (or None to compile it as one
    task), imported only by the compiler (``tune``'s trials are one).

    Raises:
        ComponentDefinitionError: an argument lacks an annotation or has an
            unsupported one, or an option is invalid.
    """
    options = ComponentOptions(
        retries=retries,
        retry_backoff_s=retry_backoff_s,
        cache=cache,
        version=version,
        resources=Resources.coerce(resources).merged(cpu=cpu, memory=memory),
        placement=placement or Placement(),
        isolated=isolated,
        image=image,
    )

    def wrap(func: Callable[..., Any]) -> Component:
        if not callable(func):
            raise ComponentDefinitionError(f"@component decorates a function; got {func!r}.")
        return Component(
            func, name=name, options=options, reads=tuple(reads) if not callable(reads) else reads,
            kfp_expansion=kfp_expansion,
        )

    if fn is not None:
        return wrap(fn)
    return wrap

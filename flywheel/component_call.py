"""Calling a component's function with concrete artifacts and parameters.

This is the one boundary where user code runs: the local runner's workers and
the Kubeflow executor (``python -m flywheel.kubeflow.entrypoint``) both call
``call_component``, so a component behaves the same everywhere. Errors raised
by the component are wrapped in ``UserCodeError`` and chained.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from flywheel.dsl.artifacts import Artifact
from flywheel.dsl.component import Component, OutputValue
from flywheel.errors import FlywheelError, UserCodeError

# An artifact whose properties hold ``ABSENT_PROPERTY: True`` stands for "nothing": the producer found
# nothing to hand over (``registry_reference`` on a first run, when no version serves yet), as a
# ``latest()`` input is nothing on a first local run. An optional input then receives None; a required
# one is an error carrying the producer's ``ABSENT_REASON_PROPERTY``.
ABSENT_PROPERTY = "flywheel_absent"
ABSENT_REASON_PROPERTY = "flywheel_absent_reason"


def call_component(
    comp: Component,
    inputs: Mapping[str, Artifact | list[Artifact] | None],
    outputs: Mapping[str, Artifact],
    parameters: Mapping[str, Any],
) -> None:
    """Runs ``comp`` with the given artifacts; output directories are created first.

    Raises:
        FlywheelError: an input or output is missing or of the wrong type.
        UserCodeError: the component's own code raised (the cause is chained).
    """
    kwargs: dict[str, Any] = {}
    for name, spec in comp.inputs.items():
        artifact = inputs.get(name)
        if spec.collection:  # Input[List[T]]: the Collected outputs of a ParallelFor, maybe none
            artifacts = list(artifact or [])
            wrong = [a for a in artifacts if not isinstance(a, spec.type)]
            if wrong:
                raise FlywheelError(
                    f"Component '{comp.name}' input '{name}' expects a list of {spec.type.TYPE_NAME}, "
                    f"got {type(wrong[0]).TYPE_NAME}."
                )
            kwargs[name] = artifacts
            continue
        if artifact is not None and artifact.properties.get(ABSENT_PROPERTY) is True:
            if not spec.optional:
                raise FlywheelError(
                    f"Component '{comp.name}' input '{name}' is required, but its producer found nothing to "
                    f"hand over: {artifact.properties.get(ABSENT_REASON_PROPERTY) or 'no reason recorded'}. "
                    "Feed it from a task that always writes the artifact, or make the input optional."
                )
            artifact = None
        if artifact is None:
            if not spec.optional:
                raise FlywheelError(f"Component '{comp.name}' got no artifact for required input '{name}'.")
        elif not isinstance(artifact, spec.type):
            raise FlywheelError(
                f"Component '{comp.name}' input '{name}' expects {spec.type.TYPE_NAME}, "
                f"got {type(artifact).TYPE_NAME}."
            )
        kwargs[name] = artifact
    for name, spec in comp.outputs.items():
        artifact = outputs.get(name)
        if artifact is None:
            raise FlywheelError(f"Component '{comp.name}' got no location for output '{name}'.")
        if not isinstance(artifact, spec.type):
            artifact = spec.type(uri=artifact.uri, properties=artifact.properties, name=artifact.name)
        os.makedirs(artifact.uri, exist_ok=True)
        kwargs[name] = artifact
    for name, spec in comp.output_values.items():
        holder = outputs.get(name)
        if not isinstance(holder, OutputValue):
            raise FlywheelError(f"Component '{comp.name}' got no holder for output parameter '{name}'.")
        kwargs[name] = holder
    given = {k: v for k, v in parameters.items() if k in comp.parameters}
    comp.check_parameters(given)  # a value given at run time (a KFP run parameter) meets the rules too
    kwargs.update(given)
    try:
        comp.fn(**kwargs)
    except FlywheelError:
        raise
    except Exception as exc:
        raise UserCodeError(f"{type(exc).__name__}: {exc}") from exc
    unset = [name for name in comp.output_values if not outputs[name].is_set]
    if unset:
        raise FlywheelError(
            f"Component '{comp.name}' finished without setting its output parameter(s) {', '.join(unset)}; "
            f"call {unset[0]}.set(value) before returning."
        )
    # Hand back the very objects the function filled in (properties it set).
    if isinstance(outputs, dict):
        for name in comp.outputs:
            outputs[name] = kwargs[name]

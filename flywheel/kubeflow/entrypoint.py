"""The container entrypoint of every flywheel task on Kubeflow Pipelines.

::

    python -m flywheel.kubeflow.entrypoint --executor_input JSON --component MODULE:NAME
        [--component-source-b64 SOURCE] [--code-fingerprint SHA256]

Reads KFP's executor input (``inputs.parameterValues``, ``inputs.artifacts``,
``outputs.artifacts`` with uri and metadata, ``outputs.outputFile``), maps
artifact URIs to the local paths where the KFP launcher puts them (``gs://`` ->
``/gcs/``, ``minio://`` -> ``/minio/``, ``s3://`` -> ``/s3/``), runs the component
through ``flywheel.component_call.call_component`` (the very function the local
runner calls) and writes the executor output JSON (artifacts with their
metadata = the flywheel properties) to ``outputs.outputFile``, as
``kfp/dsl/executor.py`` does. Exit status: 0 on success, 1 when the component
or the platform fails, 2 on a malformed command line; the error goes to
stderr. kfp is not imported.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import traceback
import types
import typing
from typing import Any, Mapping, Sequence

from flywheel.component_call import call_component
from flywheel.dsl.artifacts import Artifact
from flywheel.dsl.component import Component, OutputValue
from flywheel.errors import FlywheelError, UserCodeError
from flywheel.kubeflow.uris import REMOTE_PREFIXES, local_path, remote_uri

# The KFP UI renders an HTML/Markdown artifact by reading its URI as ONE file,
# while a flywheel artifact is a directory. A report directory holding exactly
# one file is therefore published as that file; the file name is kept here so
# a downstream flywheel component gets a directory back.
REPORT_SCHEMA_TITLES = ("system.HTML", "system.Markdown")
REPORT_FILE_PROPERTY = "flywheel_report_file"
# An input fed several artifacts (KFP's ``dsl.Collected`` fan-in) reaches the component as one
# artifact: the first one, with every artifact's ``{"uri", "metadata"}`` under this property.
COLLECTED_PROPERTY = "collected"
# A task whose KFP component declares this extra input parameter gets KFP's run id in it (the compiler
# passes ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``); the executor exports it as ``KFP_RUN_ID``, which push
# records as the version's lineage. It is no parameter of the flywheel component.
RUN_ID_PARAMETER = "flywheel_kfp_run_id"
RUN_ID_ENV = "KFP_RUN_ID"


class ExecutorError(FlywheelError):
    """The executor input or the component reference is unusable."""


def load_component(reference: str, source: str | None = None) -> Component:
    """Finds the component named by ``MODULE:NAME``.

    Args:
        reference: Importable module path and attribute, e.g.
            ``flywheel.components.ingest:ingest``.
        source: The module's source when it is not installed in the image;
            it is executed as module ``MODULE``.

    Raises:
        ExecutorError: bad reference, module not importable, or the name is
            not a flywheel component.
    """
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise ExecutorError(
            f"--component must be MODULE:NAME (e.g. flywheel.components.ingest:ingest); got {reference!r}."
        )
    if source is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ExecutorError(
                f"Cannot import module '{module_name}' of component {reference!r}: {exc}. "
                "Is the image built from the same flywheel version as the compiled pipeline?"
            ) from exc
    else:
        module = _module_from_source(module_name, source)
    comp = getattr(module, attr, None)
    if not isinstance(comp, Component):
        raise ExecutorError(f"{reference!r} is not a flywheel component (got {type(comp).__name__}).")
    return comp


def _module_from_source(module_name: str, source: str) -> Any:
    directory = tempfile.mkdtemp(prefix="flywheel-component-")
    path = os.path.join(directory, module_name.rsplit(".", 1)[-1] + ".py")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExecutorError(f"Cannot load the embedded source of module '{module_name}'.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and type hints look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure of the embedded module is reported the same way
        sys.modules.pop(module_name, None)
        raise ExecutorError(
            f"The embedded source of module '{module_name}' failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _runtime_artifact(entry: Mapping[str, Any], name: str, direction: str) -> Mapping[str, Any] | None:
    artifacts = (entry or {}).get("artifacts") or []
    if len(artifacts) > 1 and direction == "Input":  # a fan-in: fold the list (see COLLECTED_PROPERTY)
        return {
            **artifacts[0],
            "metadata": {
                COLLECTED_PROPERTY: [{"uri": a.get("uri", ""), "metadata": a.get("metadata") or {}} for a in artifacts]
            },
        }
    if len(artifacts) > 1:
        raise ExecutorError(
            f"{direction} '{name}' has {len(artifacts)} artifacts; flywheel components write exactly one."
        )
    return artifacts[0] if artifacts else None


def _input_artifact(artifact_type: type[Artifact], runtime: Mapping[str, Any]) -> Artifact:
    metadata = dict(runtime.get("metadata") or {})
    path = local_path(runtime.get("uri", ""))
    if os.path.isfile(path) and REPORT_FILE_PROPERTY in metadata:
        # A report published as one file (see REPORT_FILE_PROPERTY): hand it over as a directory.
        directory = tempfile.mkdtemp(prefix="flywheel-input-")
        shutil.copyfile(path, os.path.join(directory, str(metadata[REPORT_FILE_PROPERTY])))
        path = directory
    return artifact_type(uri=path, properties=metadata, name=runtime.get("name", ""))


def _coerce_parameter(comp: Component, name: str, value: Any) -> Any:
    """Restores the declared type of a parameter from KFP's JSON, at every depth.

    KFP passes parameters through protobuf's JSON ``Value``, where every number is a double:
    an ``int`` arrives as ``16.0``, also inside lists and dicts. A parametrised annotation
    (``list[int]``, ``dict[str, float]``) is followed element by element; inside a bare
    ``list``/``dict`` an integral double is restored to the int it was written as.
    """
    expected = comp.parameters[name].type
    if value is None:
        return None
    if expected is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if expected in (dict, list) and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    annotation = _declared_annotations(comp).get(name, expected)
    coerced = _coerce_value(value, annotation)
    if not isinstance(coerced, expected) or (expected is int and isinstance(coerced, bool)):
        raise ExecutorError(
            f"Parameter '{name}' of component '{comp.name}' is {_article(expected)}; the executor "
            f"input gives {type(value).__name__} {value!r}."
        )
    return coerced


def _declared_annotations(comp: Component) -> dict[str, Any]:
    try:
        return typing.get_type_hints(comp.fn)
    except Exception:  # noqa: BLE001 - unreadable hints fail at definition time; fall back to the specs
        return {}


def _coerce_value(value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation) or annotation
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce_value(value, members[0]) if len(members) == 1 else value
    element_types = typing.get_args(annotation)
    if origin is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        item = element_types[0] if origin is list and element_types else Any
        return [_coerce_value(v, item) for v in value]
    if isinstance(value, dict):
        item = element_types[1] if origin is dict and len(element_types) == 2 else Any
        return {k: _coerce_value(v, item) for k, v in value.items()}
    if annotation is Any and isinstance(value, float) and value.is_integer():
        return int(value)  # inside an untyped container: the int protobuf's JSON made a double
    return value


def _article(kind: type) -> str:
    name = kind.__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _publish_report(artifact: Artifact) -> None:
    entries = os.listdir(artifact.uri)
    if len(entries) == 1 and os.path.isfile(os.path.join(artifact.uri, entries[0])):
        staged = artifact.uri.rstrip("/") + ".flywheel-report"
        shutil.move(os.path.join(artifact.uri, entries[0]), staged)
        os.rmdir(artifact.uri)
        shutil.move(staged, artifact.uri)
        artifact.properties[REPORT_FILE_PROPERTY] = entries[0]


def execute(executor_input: Mapping[str, Any], comp: Component) -> dict[str, Any]:
    """Runs ``comp`` for one KFP task and writes the executor output file.

    Returns:
        The executor output that was written (``{"artifacts": {...}}``).

    Raises:
        ExecutorError: the executor input lacks something the component needs.
        UserCodeError: the component's own code raised.
    """
    inputs_section = executor_input.get("inputs") or {}
    outputs_section = executor_input.get("outputs") or {}
    output_file = outputs_section.get("outputFile")
    if not output_file:
        raise ExecutorError("The executor input has no outputs.outputFile; it does not come from a KFP launcher.")

    inputs: dict[str, Artifact | list[Artifact] | None] = {}
    for name, spec in comp.inputs.items():
        if spec.collection:  # Input[List[T]] fed by dsl.Collected: every artifact, in iteration order
            entries = ((inputs_section.get("artifacts") or {}).get(name) or {}).get("artifacts") or []
            inputs[name] = [_input_artifact(spec.type, entry) for entry in entries]
            continue
        runtime = _runtime_artifact((inputs_section.get("artifacts") or {}).get(name), name, "Input")
        inputs[name] = None if runtime is None else _input_artifact(spec.type, runtime)

    runtimes: dict[str, Mapping[str, Any]] = {}
    outputs: dict[str, Artifact] = {}
    for name, spec in comp.outputs.items():
        runtime = _runtime_artifact((outputs_section.get("artifacts") or {}).get(name), name, "Output")
        if runtime is None:
            raise ExecutorError(
                f"The executor input has no location for output '{name}' of component '{comp.name}'."
            )
        runtimes[name] = runtime
        outputs[name] = spec.type(
            uri=local_path(runtime.get("uri", "")),
            properties=dict(runtime.get("metadata") or {}),
            name=runtime.get("name", ""),
        )

    parameter_values = inputs_section.get("parameterValues") or {}
    parameters = {
        name: _coerce_parameter(comp, name, value)
        for name, value in parameter_values.items()
        if name in comp.parameters
    }
    run_id = parameter_values.get(RUN_ID_PARAMETER)
    if isinstance(run_id, str) and run_id and not run_id.startswith("{{"):  # an unresolved placeholder is no id
        os.environ[RUN_ID_ENV] = run_id

    for artifact in outputs.values():
        _make_writable_dir(artifact.uri, "output artifact")
    _make_writable_dir(os.path.dirname(os.path.abspath(output_file)), "executor output")

    values = {name: OutputValue(spec.type, name) for name, spec in comp.output_values.items()}
    call_component(comp, inputs, {**outputs, **values}, parameters)

    executor_output: dict[str, Any] = {"artifacts": {}}
    if values:
        # KFP reads output parameters from the executor output (and, without one, from each outputFile).
        executor_output["parameterValues"] = {name: holder.value for name, holder in values.items()}
        for name, holder in values.items():
            target = ((outputs_section.get("parameters") or {}).get(name) or {}).get("outputFile")
            if target:
                _make_writable_dir(os.path.dirname(os.path.abspath(target)), "output parameter")
                with open(target, "w", encoding="utf-8") as handle:
                    handle.write(json.dumps(holder.value) if not isinstance(holder.value, str) else holder.value)
    for name, artifact in outputs.items():
        if artifact.SCHEMA_TITLE in REPORT_SCHEMA_TITLES:
            _publish_report(artifact)
        runtime = runtimes[name]
        try:
            metadata = _portable_uris(json.loads(json.dumps(artifact.properties)))
        except (TypeError, ValueError) as exc:
            raise ExecutorError(
                f"Output '{name}' of component '{comp.name}' has properties that are not JSON: {exc}. "
                "Set only int, float, str, bool, list and dict values."
            ) from exc
        executor_output["artifacts"][name] = {
            "artifacts": [{"name": runtime.get("name", ""), "uri": runtime.get("uri", ""), "metadata": metadata}]
        }
    with open(output_file, "w", encoding="utf-8") as handle:
        json.dump(executor_output, handle)
    return executor_output


def _make_writable_dir(path: str, what: str) -> None:
    """Creates ``path``; where the user may not, one line names the volume KFP must mount."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        mount = next(
            (local_path(scheme) for scheme, _ in REMOTE_PREFIXES if path.startswith(local_path(scheme))),
            os.path.dirname(path),
        )
        raise ExecutorError(
            f"Cannot create the {what} directory {path} as uid {os.getuid()}: {exc.strerror}. The task needs a "
            f"writable volume at {mount.rstrip('/')}: use a KFP backend that mounts one there (see k8s/README.md, "
            f"'Minimum KFP backend'), or add an emptyDir volume at {mount.rstrip('/')} to the task."
        ) from exc


def _portable_uris(value: Any) -> Any:
    """``value`` with every container-local artifact path (``/minio/b/k``) as its URI (``minio://b/k``)."""
    if isinstance(value, str):
        return remote_uri(value)
    if isinstance(value, list):
        return [_portable_uris(v) for v in value]
    if isinstance(value, dict):
        return {k: _portable_uris(v) for k, v in value.items()}
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flywheel.kubeflow.entrypoint", description="Runs one flywheel component as a Kubeflow Pipelines task."
    )
    parser.add_argument("--executor_input", required=True, help="KFP executor input JSON (the {{$}} placeholder).")
    parser.add_argument("--component", required=True, help="MODULE:NAME of the component.")
    parser.add_argument(
        "--component-source-b64", default=None, help="Base64 source of MODULE when it is not installed."
    )
    parser.add_argument("--code-fingerprint", default=None, help="The component's code fingerprint at compile time.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        try:
            executor_input = json.loads(args.executor_input)
        except ValueError as exc:
            raise ExecutorError(f"--executor_input is not JSON: {exc}") from exc
        source = None
        if args.component_source_b64 is not None:
            try:
                source = base64.b64decode(args.component_source_b64, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ExecutorError(f"--component-source-b64 is not base64 UTF-8 text: {exc}") from exc
        comp = load_component(args.component, source)
        if args.code_fingerprint and args.code_fingerprint != comp.code_fingerprint:
            print(
                f"warning: component {args.component} in this image differs from the code the pipeline "
                "was compiled from (code fingerprint mismatch); rebuild the image or recompile.",
                file=sys.stderr,
            )
        execute(executor_input, comp)
    except UserCodeError as exc:
        # The pod log is the only place the user sees this: show where their code failed.
        cause = exc.__cause__
        if cause is not None:
            traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        print(f"error: component {args.component} failed: {exc}", file=sys.stderr)
        return 1
    except FlywheelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

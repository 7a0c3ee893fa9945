"""Loading a pipeline file (a Python file that defines a ``@pipeline``)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys

from flywheel.dsl.pipeline import Pipeline
from flywheel.errors import DefinitionError, PipelineFileError


def module_name_for(path: str) -> str:
    """A stable, unique module name for a pipeline file path."""
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    stem = os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    return f"flywheel_pipeline_{stem}_{digest}"


def _module_file(name: str) -> str | None:
    """The source file of an importable module named like ``a.b.c``, if ``name`` is one."""
    if os.path.exists(name) or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", name):
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return origin if origin and origin.endswith(".py") else None


def pipeline_path(path: str) -> str:
    """The absolute path of a pipeline file given as a path or an installed module name.

    Raises:
        PipelineFileError: neither a file nor an importable module.
    """
    resolved = _module_file(path) or os.path.abspath(path)
    if not os.path.isfile(resolved):
        raise PipelineFileError(
            f"Pipeline file not found: {resolved}. Pass the path of a .py file that defines a @pipeline "
            "(or an installed module such as flywheel.pipelines.training)."
        )
    return resolved


def load_pipeline(path: str, name: str | None = None) -> Pipeline:
    """Executes a pipeline file and returns the pipeline it defines.

    Args:
        path: The Python file, or the dotted name of an installed module
            (``flywheel.pipelines.training``), which is how a pipeline is found
            inside the container image.
        name: Which pipeline, when the file defines several.

    Raises:
        PipelineFileError: the file is missing, fails to import, or holds no
            (or more than one, with no name given) pipeline.
        DefinitionError: the pipeline is wired wrongly.
    """
    path = pipeline_path(path)
    module_name = module_name_for(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PipelineFileError(f"Cannot load {path} as Python; a pipeline file must be a .py file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # components defined in the file must be findable by name
    try:
        spec.loader.exec_module(module)
    except DefinitionError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PipelineFileError(f"Pipeline file {path} failed to load: {type(exc).__name__}: {exc}") from exc
    found = {obj.name: obj for obj in vars(module).values() if isinstance(obj, Pipeline)}
    if not found:
        raise PipelineFileError(f"{path} defines no pipeline; decorate a function with @pipeline.")
    if name is not None:
        if name not in found:
            raise PipelineFileError(f"{path} has no pipeline '{name}'; it has: {', '.join(sorted(found))}.")
        pipe = found[name]
    elif len(found) > 1:
        raise PipelineFileError(
            f"{path} defines several pipelines ({', '.join(sorted(found))}); choose one with --pipeline NAME."
        )
    else:
        pipe = next(iter(found.values()))
    pipe.source_file = path
    return pipe

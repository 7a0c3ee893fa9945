"""Apache Beam options shared by the components that run on Beam (validate, transform).

As TFX's ``beam_pipeline_args``, ``beam_args`` is a list of Beam command-line
options passed to ``PipelineOptions`` unchanged, so the user picks the runner
(``["--runner=FlinkRunner", "--flink_master=host:8081"]``, ``--runner=SparkRunner``,
``--runner=DataflowRunner --project=... --temp_location=gs://...``); [] runs the
DirectRunner in the component's process. One row threshold decides when a split
goes to Beam without being asked, the same for every component.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flywheel.errors import ParameterError

from flywheel.components import examples_io

if TYPE_CHECKING:
    from flywheel.dsl.artifacts import Artifact

# A split with more rows than this goes through Beam even when no beam_args are given:
# below it the in-memory path is faster (no pipeline start-up), above it memory would grow with the data.
BEAM_MIN_ROWS = 200_000


def check_beam_args(beam_args: Any, component: str) -> list[str]:
    """The ``beam_args`` parameter of ``component``, checked: a list of ``--option[=value]`` strings.

    Raises:
        ParameterError: not a list of strings that each start with "--".
    """
    if not isinstance(beam_args, (list, tuple)) or not all(isinstance(a, str) and a.startswith("--") for a in beam_args):
        raise ParameterError(
            f"The 'beam_args' parameter of {component} must be a list of Beam options, each starting with '--' "
            f"(e.g. ['--runner=FlinkRunner', '--flink_master=localhost:8081']). Got {beam_args!r} instead."
        )
    return list(beam_args)


def use_beam(examples: Artifact, split: str, beam_args: list[str]) -> bool:
    """Whether ``split`` goes to Beam: beam_args were given, or it has more than ``BEAM_MIN_ROWS`` rows."""
    return bool(beam_args) or examples_io.split_rows(examples, split) > BEAM_MIN_ROWS


def pipeline_options(beam_args: list[str]) -> Any:
    """Beam ``PipelineOptions`` from the user's arguments, unchanged (DirectRunner when none names a runner)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(list(beam_args))


def shard_pattern(examples: Artifact, split: str) -> str:
    """A file pattern Beam's Parquet source expands to the split's shards."""
    paths = examples_io.shard_paths(examples, split)
    if len(paths) == 1:
        return paths[0]
    return os.path.join(examples_io.split_dir(examples, split), examples_io.SHARD_GLOB)

"""Fixtures of the component tests: empty output artifacts under tmp_path."""

from __future__ import annotations

import os
from typing import Callable

import pytest

from flywheel.dsl.artifacts import Artifact


@pytest.fixture
def new_artifact(tmp_path) -> Callable[[type[Artifact], str], Artifact]:
    """Makes an artifact of the given type with a fresh, empty directory under tmp_path."""

    def make(cls: type[Artifact], name: str) -> Artifact:
        uri = tmp_path / "artifacts" / name
        os.makedirs(uri)
        return cls(uri=str(uri))

    return make


@pytest.fixture
def beam_pipeline_options(monkeypatch) -> list:
    """The ``PipelineOptions`` of every ``beam.Pipeline`` built while the test runs, in order (the pipelines still run)."""
    import apache_beam as beam

    seen: list = []
    real_pipeline = beam.Pipeline

    class RecordingPipeline(real_pipeline):
        # A subclass, not a function: modules imported while the patch is on (tf.Transform's Beam
        # package) use beam.Pipeline as a type hint, which must be a type.
        def __init__(self, *args, options=None, **kwargs):
            seen.append(options)
            super().__init__(*args, options=options, **kwargs)

    monkeypatch.setattr(beam, "Pipeline", RecordingPipeline)
    return seen

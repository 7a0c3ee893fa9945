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

"""Fixtures of the container tests: they need the images `make images` builds and podman.

These tests run real containers (podman's Docker-compatible API, served per session) and
take minutes; `make test` builds the images first (`make images`). Without the images they
fail with the command that builds them, never skip.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from flywheel import __version__
from flywheel.kubeflow.container_run import podman_docker_api

REPO = pathlib.Path(__file__).resolve().parents[2]
COMPONENT_IMAGE = f"localhost/flywheel:{__version__}"
SERVING_IMAGE = f"localhost/flywheel-serving:{__version__}"


def _require_image(image: str) -> None:
    assert shutil.which("podman"), "podman is not installed: run `make images` (docker/engine-setup.sh) as root"
    found = subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0
    assert found, f"image {image} is not built: run `make images`"


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory):
    """DOCKER_HOST of a podman API service running for the session."""
    _require_image(COMPONENT_IMAGE)
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    previous = os.environ.get("DOCKER_HOST")
    with podman_docker_api(socket) as host:
        os.environ["DOCKER_HOST"] = host
        yield host
    if previous is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = previous

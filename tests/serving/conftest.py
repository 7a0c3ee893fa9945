"""Fixtures of the serving tests: one real penguins model, trained once per session, and HTTP helpers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from typing import Any, Iterator

import pytest

PENGUIN = {
    "island": "Biscoe",
    "bill_length_mm": 48.0,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 220.0,
    "body_mass_g": 5200.0,
    "sex": "male",
    "year": 2008,
}


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory) -> str:
    """A train output (model.keras, serving/ SavedModel, model.json) of a small penguins model (few epochs)."""
    try:
        from tests.components.model_fixtures import penguin_examples, transform_and_train
    except ImportError:  # tests/ is not a package: pytest put the directory on sys.path
        from components.model_fixtures import penguin_examples, transform_and_train

    root = tmp_path_factory.mktemp("serving-model")
    examples = penguin_examples(str(root / "examples"))
    _, model = transform_and_train(examples, str(root / "train"), epochs=8, hidden_units=[8], early_stopping_patience=0)
    return model.uri


@pytest.fixture
def registry_with_model(tmp_path, trained_model_dir):
    """(registry, home) with version 1 of 'penguins' pushed and serving."""
    from flywheel.registry import ModelRegistry

    registry = ModelRegistry(str(tmp_path / "registry"))
    version = registry.push("penguins", trained_model_dir).version
    registry.set_serving("penguins", version, reason="test")
    return registry, str(tmp_path / "home")


@contextlib.contextmanager
def serving_one_version(root, trained_model_dir: str, **options) -> Iterator[Any]:
    """A ``BackgroundServer`` on a free loopback port over a new registry in ``root`` where version 1 serves."""
    from flywheel.registry import ModelRegistry
    from flywheel.serving.background import BackgroundServer
    from flywheel.serving.server import ServeConfig

    registry = ModelRegistry(str(root / "registry"))
    registry.set_serving("penguins", registry.push("penguins", trained_model_dir).version)
    config = ServeConfig(registry=registry.root, home=str(root / "home"), port=0, **options)
    with BackgroundServer(config) as background:
        yield background


def push_copy(registry, trained_model_dir: str, tag: str) -> int:
    """Pushes the trained model again as a new version (a distinct fingerprint) without serving it."""
    return registry.push("penguins", trained_model_dir, fingerprint=f"copy-{tag}").version


def call(url: str, body=None, *, method: str | None = None, headers: dict | None = None, timeout: float = 30.0):
    """(status, decoded JSON or text, headers) of one HTTP request; 4xx/5xx are returned, not raised."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers={**sent, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, got = error.code, error.read(), dict(error.headers)
    text = raw.decode()
    if got.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(text), got
    return status, text, got


def start_serve_cli(
    registry: str, home: str, *extra: str, env: dict[str, str] | None = None, drain: bool = False, timeout: float = 120
) -> tuple[subprocess.Popen, int, list[str]]:
    """``flywheel serve`` as a real subprocess on free loopback ports (REST and gRPC), once it says ``Ready:``.

    Returns ``(process, REST port, output lines so far)``. With ``drain`` a
    thread keeps appending the output to that list (a long test never fills the
    pipe); without it the caller reads the rest (``communicate``).
    """
    command = [
        sys.executable, "-m", "flywheel.cli.serve_commands", "--home", home, "serve",
        "--registry", registry, "--port", "0", "--grpc-port", "0", *extra,
    ]  # fmt: skip
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    lines: list[str] = []
    port = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else port
        if line.startswith("Ready:"):
            if drain:
                threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
            return process, port, lines
    process.kill()
    raise AssertionError("server did not become ready:\n" + "".join(lines))

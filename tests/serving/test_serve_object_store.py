"""``flywheel serve --registry s3://...``: the registry on an object store (moto's S3 API on loopback).

The server is a real subprocess; the S3 server is stopped and started again
on the same port to play an outage (moto keeps its buckets in the test
process, so they survive the restart).
"""

from __future__ import annotations

import glob
import os
import re
import signal
import time
import uuid

import pytest

from flywheel import storage
from flywheel.registry import ModelRegistry, is_unreachable
from flywheel.serving.errors import ServingError
from flywheel.serving.inputs import FeatureSchema
from flywheel.serving.models import LoadedModel, ModelStore
from tests.conftest import S3_TEST_CREDENTIALS
from tests.serving.conftest import PENGUIN, call, push_copy, start_serve_cli

try:
    from tests.components.model_fixtures import fake_model_dir
except ImportError:  # tests/ is not a package: pytest put the directory on sys.path
    from components.model_fixtures import fake_model_dir


class RestartableS3:
    """moto's S3 server on a fixed loopback port that can be stopped and started again."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        self.endpoint = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()


@pytest.fixture
def s3_store(monkeypatch, tmp_path):
    """(S3 server, ``s3://bucket``): a fresh bucket on a restartable server; the environment points at it."""
    import boto3

    server = RestartableS3()
    monkeypatch.setenv("FLYWHEEL_S3_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("FLYWHEEL_REGISTRY_CACHE", str(tmp_path / "cache"))
    for name, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = f"serve-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket)
    yield server, f"s3://{bucket}"
    server.stop()


def _predict(url: str) -> tuple[int, int | None]:
    status, body, _ = call(f"{url}/v1/models/penguins:predict", {"instances": [PENGUIN]}, timeout=10)
    return status, body.get("model_version") if status == 200 else None


def _wait_for(condition, seconds: float = 90.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _reload_errors(url: str) -> float:
    _, text, _ = call(f"{url}/metrics")
    found = re.search(r'^flywheel_serving_reload_errors_total\{model="penguins"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_flywheel_serve_follows_an_s3_registry_through_push_rollback_and_an_outage(s3_store, trained_model_dir, tmp_path):
    s3, bucket = s3_store
    registry = ModelRegistry(f"{bucket}/registry", cache_dir=str(tmp_path / "pusher-cache"))
    assert registry.publish("penguins", trained_model_dir, reason="first").version == 1
    cache = str(tmp_path / "cache")

    def copies() -> list[str]:
        """The versions the server holds on disk (its private cache; no download in progress counts)."""
        return sorted(os.path.basename(p) for p in glob.glob(os.path.join(cache, "serve-*", "*", "penguins", "*")))

    process, port, lines = start_serve_cli(
        registry.root, str(tmp_path / "home"), "--poll-seconds", "0.2", "--max-loaded-versions", "1", drain=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert _predict(url) == (200, 1)
        assert copies() == ["1"]

        # A push moves the alias: the server downloads version 2, swaps, and drops version 1's copy.
        version = push_copy(registry, trained_model_dir, "v2")
        registry.set_serving("penguins", version, reason="push")
        assert _wait_for(lambda: _predict(url) == (200, 2))
        assert _wait_for(lambda: copies() == ["2"])
        # A version not in memory: its model.json is read from the bucket.
        status, metadata, _ = call(f"{url}/v1/models/penguins/versions/1/metadata")
        assert status == 200 and metadata["model_spec"]["version"] == "1"
        assert set(metadata["flywheel"]["features"]) == set(PENGUIN)

        # A rollback moves the alias back.
        registry.set_serving("penguins", 1, reason="rollback")
        assert _wait_for(lambda: _predict(url) == (200, 1))
        assert _wait_for(lambda: copies() == ["1"])

        # The store goes away for a few seconds (at least two polls fail): the current model keeps
        # answering, and each failed poll is counted.
        errors_before = _reload_errors(url)
        s3.stop()
        outage_started = time.monotonic()
        answers = []
        while time.monotonic() - outage_started < 3.0 or (
            _reload_errors(url) < errors_before + 2 and time.monotonic() - outage_started < 30.0
        ):
            answers.append(_predict(url))
            time.sleep(0.1)
        errors_during = _reload_errors(url)
        status, body, _ = call(f"{url}/v1/models/penguins/versions/2/metadata")  # not in memory: needs the store
        s3.start()
        assert status == 503 and "cannot be reached" in body["error"], body
        assert len(answers) > 10 and set(answers) == {(200, 1)}
        assert errors_during >= errors_before + 2
        assert _predict(url) == (200, 1)

        # Back: the next alias move is picked up.
        registry.set_serving("penguins", 2, reason="after the outage")
        assert _wait_for(lambda: _predict(url) == (200, 2))
        assert _wait_for(lambda: copies() == ["2"])
        assert not glob.glob(os.path.join(cache, "serve-*", "*", "penguins", "*.tmp-*"))

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert f"Serving model 'penguins' from {registry.root}" in output
    assert "reload check failed" in output and "the endpoint cannot be reached" in output
    assert "reload check works again" in output
    assert output.count("reload check failed") < 10, output  # an outage logs its first failure, not every poll
    assert copies() == []  # a clean stop removes the server's private cache


def test_a_download_cut_midway_leaves_no_copy_and_the_next_one_is_whole(s3_store, trained_model_dir, tmp_path, monkeypatch):
    _, bucket = s3_store
    registry = ModelRegistry(f"{bucket}/registry", cache_dir=str(tmp_path / "copies"))
    registry.publish("penguins", trained_model_dir)
    remote = {e.uri.split("/penguins/1/", 1)[1]: e.size for e in storage.list_files(registry.version_dir("penguins", 1), recursive=True)}
    assert len(remote) > 3
    real_open = storage.open_input_stream
    opened = []

    def cut_after_two_files(uri):
        opened.append(uri)
        if len(opened) > 2:
            try:
                raise ConnectionResetError("connection reset by peer")
            except ConnectionResetError as exc:
                raise storage.StorageError(f"Cannot read {uri}: {exc}") from exc
        return real_open(uri)

    monkeypatch.setattr(storage, "open_input_stream", cut_after_two_files)
    with pytest.raises(storage.StorageError) as caught:
        registry.local_version_dir("penguins", 1)
    assert is_unreachable(caught.value)
    assert registry.cached_versions("penguins") == []
    assert glob.glob(str(tmp_path / "copies" / "*" / "penguins" / "*")) == []  # no copy and no staging left

    monkeypatch.setattr(storage, "open_input_stream", real_open)
    local = registry.local_version_dir("penguins", 1)
    copied = {
        os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/"): os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(local)
        for f in files
    }
    assert copied == remote
    assert registry.cached_versions("penguins") == [1]
    assert registry.prune_cache("penguins", keep=[]) == [1] and registry.cached_versions("penguins") == []


SPEC = {"numeric_features": ["x"], "categorical_features": [], "label_vocabulary": ["a", "b"], "features": {}}


def test_a_store_that_does_not_answer_is_retried_at_the_next_poll_and_a_broken_version_waits(tmp_path):
    registry = ModelRegistry(str(tmp_path / "reg"))
    registry.push("m", fake_model_dir(str(tmp_path / "src1"), content="w1"))
    registry.push("m", fake_model_dir(str(tmp_path / "src2"), content="w2"))
    failures = {1: "unreachable", 2: "broken"}
    calls = []

    def loader(registry, name, version):
        calls.append(version)
        kind = failures.pop(version, None)
        if kind == "unreachable":
            try:
                raise ConnectionRefusedError("connection refused")
            except ConnectionRefusedError as exc:
                raise storage.StorageError("Cannot read s3://b/registry/m/1/model.json") from exc
        if kind == "broken":
            raise ServingError("version 2 is corrupt")
        return LoadedModel(name, version, SPEC, FeatureSchema.from_spec(SPEC), 0.0, lambda columns: None)

    store = ModelStore(registry, "m", loader=loader, retry_failed_s=3600)
    registry.set_serving("m", 1)
    with pytest.raises(storage.StorageError):
        store.refresh()
    assert store.refresh() and store.serving().version == 1  # retried at once, not after retry_failed_s
    registry.set_serving("m", 2)
    with pytest.raises(ServingError, match="keeping version 1"):
        store.refresh()
    assert not store.refresh() and store.serving().version == 1  # a broken version waits retry_failed_s
    assert calls == [1, 1, 2]


def test_a_server_cache_left_by_a_dead_process_is_removed_and_live_downloads_are_kept(tmp_path):
    import socket
    import subprocess
    import sys

    from flywheel import registry_cache

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    base = tmp_path / "cache"
    for pid in (dead.pid, os.getppid()):
        (base / f"serve-{host}-{pid}" / "k" / "m" / "1").mkdir(parents=True)
    mine = registry_cache.process_cache_dir(str(base))
    assert mine == str(base / f"serve-{host}-{os.getpid()}")
    assert sorted(os.listdir(base)) == [f"serve-{host}-{os.getppid()}"]  # the dead process's copies are gone

    model_dir = tmp_path / "copies" / "m"
    for entry in ("1", "2", "3", f"4.tmp-{host}-{dead.pid}-abc", f"5.tmp-{host}-{os.getpid()}-def"):
        (model_dir / entry).mkdir(parents=True)
    assert registry_cache.prune(str(model_dir), keep=[2]) == [1, 3]
    assert sorted(os.listdir(model_dir)) == ["2", f"5.tmp-{host}-{os.getpid()}-def"]  # a live download stays
    assert registry_cache.cached_versions(str(model_dir)) == [2]

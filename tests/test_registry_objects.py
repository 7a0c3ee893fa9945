"""The registry on an object store (S3 API of moto on loopback): manifest last, leases, the alias."""

from __future__ import annotations

import os

import pytest

from flywheel import registry as registry_module
from flywheel import storage
from flywheel.errors import FlywheelError
from flywheel.registry import ModelRegistry, fingerprint_dir

from tests.test_registry import fake_model


@pytest.fixture
def reg(s3_bucket, tmp_path) -> ModelRegistry:
    return ModelRegistry(f"{s3_bucket}/registry", lease_s=30, lock_wait_s=2, cache_dir=str(tmp_path / "cache"))


def test_publish_on_s3_lays_out_versions_and_the_alias(reg, tmp_path):
    source = fake_model(tmp_path / "m1", "one")
    reference = tmp_path / "ref"
    reference.mkdir()
    (reference / "reference.json").write_text("{}")

    first = reg.publish("penguins", source, metadata={"metrics": {"accuracy": 0.9}}, extra_trees={"reference": str(reference)})
    second = reg.publish("penguins", fake_model(tmp_path / "m2", "two"), reason="newer")

    assert (first.version, second.version, second.serving_version) == (1, 2, 2)
    assert reg.models() == ["penguins"] and reg.versions("penguins") == [1, 2]
    assert reg.serving_version("penguins") == 2 and reg.serving_info("penguins")["previous_version"] == 1
    assert reg.version_info("penguins", 1)["fingerprint"] == fingerprint_dir(source)
    assert reg.version_info("penguins", 1)["metrics"] == {"accuracy": 0.9}
    names = {e.uri.split("/penguins/1/", 1)[1] for e in storage.list_files(reg.version_dir("penguins", 1), recursive=True)}
    assert names == {"saved_model.pb", "variables/variables.index", "model.keras", "model.json", "reference/reference.json", "version.json"}
    assert reg.push("penguins", source) == (1, False)  # same content: the existing version
    assert reg.reference_uri("penguins", "reference.json", version=1) == f"{reg.root}/penguins/1/reference/reference.json"
    with pytest.raises(FlywheelError, match="carries no reference/schema .*push it again"):
        reg.reference_uri("penguins")  # v2 serves and was pushed without a reference
    local = reg.local_version_dir("penguins", 1)
    assert open(os.path.join(local, "model.keras")).read() == "keras one"
    assert reg.set_serving("penguins", 1, reason="back")["version"] == 1
    with pytest.raises(FlywheelError, match="has no version 7"):
        reg.set_serving("penguins", 7)


def test_a_crash_between_files_leaves_no_visible_version_and_the_next_push_cleans_it(reg, tmp_path, monkeypatch):
    reg.publish("m", fake_model(tmp_path / "a", "one"))
    uploaded = []
    real_upload = registry_module._upload_file

    def upload_then_crash(source, uri):
        if len(uploaded) == 2:
            raise OSError("simulated crash: the pod was killed between two files")
        real_upload(source, uri)
        uploaded.append(uri)

    monkeypatch.setattr(registry_module, "_upload_file", upload_then_crash)
    with pytest.raises(OSError, match="simulated crash"):
        reg.publish("m", fake_model(tmp_path / "b", "two"))
    monkeypatch.setattr(registry_module, "_upload_file", real_upload)

    partial = storage.list_files(reg.version_dir("m", 2), recursive=True)
    assert len(partial) == 2  # the files are there ...
    assert reg.versions("m") == [1] and reg.serving_version("m") == 1  # ... but no version is visible
    assert ModelRegistry(reg.root).versions("m") == [1]  # nor to another reader
    assert not storage.exists(storage.join(reg.model_dir("m"), registry_module.REMOTE_LOCK_FILE))  # lease released

    again = reg.publish("m", fake_model(tmp_path / "c", "three"))
    assert (again.version, again.serving_version) == (2, 2)
    files = {e.uri.rsplit("/m/2/", 1)[1] for e in storage.list_files(reg.version_dir("m", 2), recursive=True)}
    assert files == {"saved_model.pb", "variables/variables.index", "model.keras", "model.json", "version.json"}
    assert storage.read_bytes(reg.version_file("m", 2, "model.keras")) == b"keras three"


def test_a_lease_left_by_a_dead_pusher_expires_and_a_live_one_is_waited_for(reg, tmp_path):
    lock = storage.join(reg.root, "m", registry_module.REMOTE_LOCK_FILE)
    storage.write_json(lock, {"owner": "dead-pod-1", "expires": 0})
    assert reg.push("m", fake_model(tmp_path / "a", "one")).version == 1

    storage.write_json(lock, {"owner": "live-pod-2", "expires": 4e9})
    with pytest.raises(FlywheelError, match="lease .* is held by live-pod-2 .*delete the lease object"):
        reg.push("m", fake_model(tmp_path / "b", "two"))
    assert reg.versions("m") == [1]


KILLED_PUSH = """
import os, signal, sys
from flywheel import registry as registry_module
from flywheel.registry import ModelRegistry
real, done = registry_module._upload_file, []
def upload_then_die(source, uri):
    if len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # the pod is killed between two files
    real(source, uri)
    done.append(uri)
registry_module._upload_file = upload_then_die
ModelRegistry(sys.argv[1], lease_s=float(sys.argv[3])).publish("m", sys.argv[2])
"""


def test_a_pusher_killed_mid_push_leaves_no_visible_version_and_its_lease_expires(reg, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    reg.publish("m", fake_model(tmp_path / "a", "one"))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PUSH, reg.root, fake_model(tmp_path / "b", "two"), "3"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=120,
    )
    assert killed.returncode == -9
    assert len(storage.list_files(reg.version_dir("m", 2), recursive=True)) == 2  # its files, invisible
    assert reg.versions("m") == [1] and reg.serving_version("m") == 1
    assert storage.exists(storage.join(reg.model_dir("m"), registry_module.REMOTE_LOCK_FILE))  # its lease, left behind

    patient = ModelRegistry(reg.root, lease_s=30, lock_wait_s=20, cache_dir=str(tmp_path / "cache"))
    result = patient.publish("m", fake_model(tmp_path / "c", "three"))  # waits for the lease to expire
    assert (result.version, result.serving_version) == (2, 2)
    assert storage.read_bytes(patient.version_file("m", 2, "model.keras")) == b"keras three"
    assert len(storage.list_files(patient.version_dir("m", 2), recursive=True)) == 5

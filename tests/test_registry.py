"""The model registry: TF Serving layout, atomic publish, concurrency, the serving alias."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from flywheel import registry as registry_module
from flywheel.errors import FlywheelError
from flywheel.registry import ModelRegistry, fingerprint_dir


def fake_model(path, content: str = "weights-1"):
    """A train-shaped model directory: serving/ SavedModel files plus model.keras and model.json."""
    os.makedirs(os.path.join(path, "serving", "variables"))
    with open(os.path.join(path, "serving", "saved_model.pb"), "w") as f:
        f.write(f"graph {content}")
    with open(os.path.join(path, "serving", "variables", "variables.index"), "w") as f:
        f.write(content)
    with open(os.path.join(path, "model.keras"), "w") as f:
        f.write(f"keras {content}")
    with open(os.path.join(path, "model.json"), "w") as f:
        json.dump({"label_vocabulary": ["a", "b"]}, f)
    return str(path)


def test_push_lays_out_a_tf_serving_version(tmp_path):
    reg = ModelRegistry(str(tmp_path / "reg"))
    source = fake_model(tmp_path / "m1")

    result = reg.push("penguins", source, metadata={"metrics": {"accuracy": 0.97}, "run": "r1"})

    assert result == (1, True)
    version_dir = tmp_path / "reg" / "penguins" / "1"
    assert (version_dir / "saved_model.pb").read_text() == "graph weights-1"
    assert (version_dir / "variables" / "variables.index").is_file()
    assert (version_dir / "model.keras").is_file() and (version_dir / "model.json").is_file()
    info = reg.version_info("penguins", 1)
    assert info["version"] == 1
    assert info["fingerprint"] == fingerprint_dir(source)
    assert info["metrics"] == {"accuracy": 0.97}
    assert info["metadata"] == {"run": "r1"}
    assert info["source_uri"] == os.path.abspath(source)
    assert info["pushed_at"]


def test_versions_increment_and_same_fingerprint_is_a_no_op(tmp_path):
    reg = ModelRegistry(str(tmp_path / "reg"))
    first = reg.push("m", fake_model(tmp_path / "a", "one"))
    second = reg.push("m", fake_model(tmp_path / "b", "two"))
    again = reg.push("m", str(tmp_path / "a"))

    assert (first.version, second.version) == (1, 2)
    assert again == (1, False)
    assert reg.versions("m") == [1, 2]
    assert reg.find_version("m", fingerprint_dir(str(tmp_path / "b"))) == 2


def test_a_crash_while_copying_leaves_no_version_dir(tmp_path, monkeypatch):
    reg = ModelRegistry(str(tmp_path / "reg"))
    source = fake_model(tmp_path / "m")
    calls = []

    def copy_then_crash(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return registry_module.shutil.copy2(src, dst)

    monkeypatch.setattr(registry_module, "_copy_file", copy_then_crash)
    with pytest.raises(OSError, match="simulated"):
        reg.push("m", source)

    assert len(calls) == 2  # the copy really was interrupted midway
    assert reg.versions("m") == []
    assert [n for n in os.listdir(tmp_path / "reg" / "m") if n != ".lock"] == []  # staging removed too

    monkeypatch.undo()
    assert reg.push("m", source) == (1, True)


def test_leftover_staging_dir_of_a_killed_push_is_invisible(tmp_path):
    reg = ModelRegistry(str(tmp_path / "reg"))
    os.makedirs(tmp_path / "reg" / "m" / ".tmp-deadbeef")
    (tmp_path / "reg" / "m" / ".tmp-deadbeef" / "saved_model.pb").write_text("half")

    assert reg.versions("m") == []
    assert reg.push("m", fake_model(tmp_path / "src")) == (1, True)


def test_concurrent_pushes_get_distinct_versions(tmp_path, monkeypatch):
    reg = ModelRegistry(str(tmp_path / "reg"))
    listing = ModelRegistry.versions

    def slow_versions(self, name):
        found = listing(self, name)
        time.sleep(0.005)  # widen the read-then-rename window so an unlocked registry would collide
        return found

    monkeypatch.setattr(ModelRegistry, "versions", slow_versions)
    sources = [fake_model(tmp_path / f"m{i}", f"content-{i}") for i in range(8)]
    results: list = []
    errors: list = []
    barrier = threading.Barrier(len(sources))

    def worker(src):
        try:
            barrier.wait()
            results.append(ModelRegistry(str(tmp_path / "reg")).push("m", src))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(r.version for r in results) == list(range(1, 9))
    assert all(r.created for r in results)
    fingerprints = {reg.version_info("m", v)["fingerprint"] for v in reg.versions("m")}
    assert fingerprints == {fingerprint_dir(s) for s in sources}


def test_serving_alias_tracks_previous_and_rejects_unknown_versions(tmp_path):
    reg = ModelRegistry(str(tmp_path / "reg"))
    reg.push("m", fake_model(tmp_path / "a", "one"))
    reg.push("m", fake_model(tmp_path / "b", "two"))
    assert reg.serving_version("m") is None

    reg.set_serving("m", 1)
    alias = reg.set_serving("m", 2, reason="pushed")

    assert reg.serving_version("m") == 2
    assert alias["previous_version"] == 1
    assert [h["version"] for h in reg.serving_info("m")["history"]] == [1, 2]
    with pytest.raises(FlywheelError, match="no version 7"):
        reg.set_serving("m", 7)
    assert reg.serving_version("m") == 2


def test_serving_alias_update_is_atomic(tmp_path, monkeypatch):
    reg = ModelRegistry(str(tmp_path / "reg"))
    reg.push("m", fake_model(tmp_path / "a", "one"))
    reg.push("m", fake_model(tmp_path / "b", "two"))
    reg.set_serving("m", 1)
    before = (tmp_path / "reg" / "m" / "serving.json").read_text()

    def crash(src, dst):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(registry_module.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        reg.set_serving("m", 2)
    monkeypatch.undo()

    assert (tmp_path / "reg" / "m" / "serving.json").read_text() == before
    assert reg.serving_version("m") == 1
    assert not [n for n in os.listdir(tmp_path / "reg" / "m") if n.endswith(".tmp")]


def test_errors_name_the_problem(tmp_path):
    reg = ModelRegistry(str(tmp_path / "reg"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FlywheelError, match="No SavedModel"):
        reg.push("m", str(empty))
    with pytest.raises(FlywheelError, match="model name"):
        reg.versions("../escape")
    with pytest.raises(FlywheelError, match="No version of model 'm' serves"):
        reg.load_keras("m")
    assert reg.models() == []


def test_a_bare_saved_model_dir_can_be_pushed(tmp_path):
    reg = ModelRegistry(str(tmp_path / "reg"))
    source = tmp_path / "sm"
    source.mkdir()
    (source / "saved_model.pb").write_text("graph")

    assert reg.push("m", str(source)) == (1, True)
    assert (tmp_path / "reg" / "m" / "1" / "saved_model.pb").read_text() == "graph"
    assert reg.models() == ["m"]


@pytest.mark.parametrize("alias", [{"version": None}, {"version": "2"}, [], {"version": 1, "history": [None, 3]}])
def test_publish_on_a_damaged_alias_is_a_clear_error_and_set_serving_repairs_it(tmp_path, alias):
    reg = ModelRegistry(str(tmp_path / "reg"))
    reg.publish("m", fake_model(tmp_path / "a", "one"))
    with open(tmp_path / "reg" / "m" / "serving.json", "w") as f:
        json.dump(alias, f)

    if alias == {"version": 1, "history": [None, 3]}:
        # A valid version with damaged history entries: publish goes on, the bad entries are dropped.
        result = reg.publish("m", fake_model(tmp_path / "b", "two"))
        assert (result.version, result.serving_version) == (2, 2)
        assert reg.serving_info("m")["served_versions"] == [1, 2]
        return
    second = fake_model(tmp_path / "b", "two")
    with pytest.raises(FlywheelError, match="rollback m --to"):
        reg.publish("m", second)
    assert reg.versions("m") == [1]  # nothing was pushed past the damaged alias

    repaired = reg.set_serving("m", 1, reason="repair")
    assert repaired["version"] == 1 and repaired["served_versions"] == [1]
    assert reg.publish("m", second).serving_version == 2

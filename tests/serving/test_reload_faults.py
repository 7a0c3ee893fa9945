"""Fault injection over hot reload: damaged or partial registry files at every step of a poll.

The watch thread is the only thing that ever swaps versions, so one odd file
must never kill it. Each case below damages one registry file (the serving
alias or a version's ``model.json``), runs one poll of the real watcher code
(``ModelServer._refresh``), and checks that it did not raise, that the good
version kept serving, that the error was counted in ``/metrics``, and that
once the file is good again the next poll swaps the new version in.

The model loader is swapped for one that reads the real ``model.json``
contract (``read_contract``) but builds no TensorFlow graph, so hundreds of
cases run in a second or two.
"""

from __future__ import annotations

import json
import os

import pytest

from flywheel.serving.models import LoadedModel, read_contract
from flywheel.serving.server import ModelServer, ServeConfig

MODEL = "toy"
GOOD_SPEC = {
    "numeric_features": ["size"],
    "categorical_features": ["color"],
    "features": {"size": {"dtype": "float"}, "color": {"dtype": "string", "vocabulary": ["red", "blue"]}},
    "label": "kind",
    "label_vocabulary": ["a", "b"],
}


def _contract_loader(registry, name, version):
    spec, schema = read_contract(registry, name, version)
    return LoadedModel(name, int(version), spec, schema, 0.0, predict_fn=lambda columns: None)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _alias(version) -> bytes:
    return json.dumps({"model_name": MODEL, "version": version, "reason": "test"}).encode()


def _serving_json_damages() -> list[tuple[str, bytes]]:
    good = _alias(2)
    cases = [(f"alias truncated to {n} bytes", good[:n]) for n in range(len(good))]
    cases += [
        ("alias is a JSON list", b"[]"),
        ("alias is JSON null", b"null"),
        ("alias version null", _alias(None)),
        ("alias version a string", _alias("2")),
        ("alias version a float", _alias(2.5)),
        ("alias version true", _alias(True)),
        ("alias version zero", _alias(0)),
        ("alias version negative", _alias(-1)),
        ("alias version 5000 digits", b'{"version": ' + b"9" * 5000 + b"}"),
        ("alias version a list", _alias([2])),
        ("alias version absent from the registry", _alias(7)),
        ("alias not UTF-8", b'{"version": 2, "reason": "\xff\xfe"}'),
        ("alias NaN", b'{"version": NaN}'),
    ]
    return cases


def _model_json_damages() -> list[tuple[str, bytes]]:
    good = json.dumps(GOOD_SPEC).encode()
    cases = [(f"model.json truncated to {n} bytes", good[:n]) for n in range(0, len(good), 3)]
    for key in GOOD_SPEC:
        cases.append((f"model.json without {key}", json.dumps({k: v for k, v in GOOD_SPEC.items() if k != key}).encode()))
        for wrong in (None, 5, "x", [1], {"a": 1}):
            cases.append((f"model.json {key}={wrong!r}", json.dumps({**GOOD_SPEC, key: wrong}).encode()))
    cases += [
        ("model.json is []", b"[]"),
        ("model.json is a string", b'"model"'),
        ("model.json not UTF-8", b"\xff\xfe\x00"),
        ("model.json image without shape", json.dumps({"modality": "image", "label_vocabulary": ["a"]}).encode()),
    ]
    return cases


@pytest.fixture
def watched(tmp_path):
    """A server (not listening) over a registry with versions 1 and 2 of MODEL, serving 1."""
    registry_root = tmp_path / "registry"
    for version in (1, 2):
        directory = registry_root / MODEL / str(version)
        directory.mkdir(parents=True)
        _write(str(directory / "model.json"), json.dumps(GOOD_SPEC).encode())
    alias_path = str(registry_root / MODEL / "serving.json")
    _write(alias_path, _alias(1))
    server = ModelServer(ServeConfig(registry=str(registry_root), home=str(tmp_path / "home"), model=MODEL))
    server.store._loader = _contract_loader  # noqa: SLF001 - no TensorFlow in this test
    server.store.retry_failed_s = 0.0
    server._refresh()  # noqa: SLF001 - one poll of the watcher
    assert server.store.serving().version == 1
    yield server, alias_path, str(registry_root / MODEL / "2" / "model.json")
    server.log.close()


def _errors(server) -> float:
    return server.metrics.sample("flywheel_serving_reload_errors_total", {"model": MODEL})


def _poll_survives(server, expect_version: int) -> None:
    server._refresh()  # noqa: SLF001 - raising here is what killed the watch thread
    assert server.store.serving().version == expect_version


@pytest.mark.parametrize("label,damage", _serving_json_damages(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_damaged_alias_is_counted_and_the_next_good_alias_is_picked_up(watched, label, damage):
    server, alias_path, _ = watched
    _write(alias_path, damage)
    _poll_survives(server, expect_version=1)
    assert _errors(server) == 1, label
    _write(alias_path, _alias(2))
    _poll_survives(server, expect_version=2)
    assert server.metrics.sample("flywheel_serving_reloads_total", {"model": MODEL}) == 2


@pytest.mark.parametrize("label,damage", _model_json_damages(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_damaged_model_json_keeps_the_old_version_until_it_is_fixed(watched, label, damage):
    server, alias_path, model_json = watched
    _write(model_json, damage)
    _write(alias_path, _alias(2))
    server._refresh()  # noqa: SLF001
    serving = server.store.serving().version
    if serving == 1:  # refused: counted, reported in the status, retried once fixed
        assert _errors(server) == 1, label
        assert "model.json" in server.store.status()[-1]["status"]["error_message"]
        _write(model_json, json.dumps(GOOD_SPEC).encode())
        _poll_survives(server, expect_version=2)
    else:  # a damage that still reads as a valid contract (e.g. no "label") loads
        assert serving == 2 and _errors(server) == 0, label


def test_a_missing_version_directory_and_a_file_in_its_place_are_survived(watched):
    server, alias_path, model_json = watched
    version_dir = os.path.dirname(model_json)
    os.remove(model_json)
    os.rmdir(version_dir)
    _write(version_dir, b"not a directory")
    _write(alias_path, _alias(2))
    _poll_survives(server, expect_version=1)
    assert _errors(server) == 1
    os.remove(version_dir)
    os.mkdir(version_dir)
    _write(model_json, json.dumps(GOOD_SPEC).encode())
    _poll_survives(server, expect_version=2)


def test_a_loader_bug_is_counted_not_fatal(watched):
    server, alias_path, _ = watched

    def broken_loader(registry, name, version):
        raise AttributeError("'list' object has no attribute 'get'")

    server.store._loader = broken_loader  # noqa: SLF001
    _write(alias_path, _alias(2))
    _poll_survives(server, expect_version=1)
    assert _errors(server) == 1
    assert "AttributeError" in server.store.status()[-1]["status"]["error_message"]
    server.store._loader = _contract_loader  # noqa: SLF001
    _poll_survives(server, expect_version=2)


def test_a_failed_version_waits_retry_failed_s_before_it_is_tried_again(watched):
    server, alias_path, model_json = watched
    server.store.retry_failed_s = 3600.0
    _write(model_json, b"[]")
    _write(alias_path, _alias(2))
    _poll_survives(server, expect_version=1)
    _write(model_json, json.dumps(GOOD_SPEC).encode())
    _poll_survives(server, expect_version=1)  # not retried yet: a corrupt model is not reloaded every poll
    server.store.retry_failed_s = 0.0
    _poll_survives(server, expect_version=2)

"""Which version serves, hot reload and on-demand loading, with a stand-in loader (no TensorFlow)."""

from __future__ import annotations

import threading

import pytest

try:
    from tests.components.model_fixtures import fake_model_dir
except ImportError:  # tests/ is not a package: pytest put the directory on sys.path
    from components.model_fixtures import fake_model_dir

from flywheel.registry import ModelRegistry
from flywheel.serving.errors import RequestError, ServingError
from flywheel.serving.inputs import FeatureSchema
from flywheel.serving.models import LoadedModel, ModelStore

SPEC = {"numeric_features": ["x"], "categorical_features": [], "label_vocabulary": ["a", "b"], "features": {}}


class FakeLoader:
    def __init__(self, broken=()):
        self.broken = set(broken)
        self.calls: list[int] = []

    def __call__(self, registry, name, version):
        self.calls.append(version)
        if version in self.broken:
            raise ServingError(f"version {version} is corrupt")
        return LoadedModel(name, version, SPEC, FeatureSchema.from_spec(SPEC), 0.0, lambda columns: None)


def _registry(tmp_path, versions: int) -> ModelRegistry:
    registry = ModelRegistry(str(tmp_path / "reg"))
    for i in range(versions):
        registry.push("m", fake_model_dir(str(tmp_path / f"src{i}"), content=f"w{i}"))
    return registry


def test_serves_the_alias_else_the_newest_and_swaps_when_the_alias_moves(tmp_path):
    registry = _registry(tmp_path, 2)
    changes = []
    store = ModelStore(registry, "m", loader=FakeLoader(), on_change=lambda m: changes.append(m.version))

    assert store.target_version() == 2 and store.refresh() and store.serving().version == 2
    registry.set_serving("m", 1, reason="rollback")
    assert store.refresh() and store.serving().version == 1
    assert not store.refresh()  # nothing changed
    assert changes == [2, 1]


def test_a_version_that_fails_to_load_keeps_the_old_one_serving(tmp_path):
    registry = _registry(tmp_path, 2)
    loader = FakeLoader(broken={2})
    registry.set_serving("m", 1)
    store = ModelStore(registry, "m", loader=loader)
    store.refresh()
    registry.set_serving("m", 2)

    with pytest.raises(ServingError, match="keeping version 1: version 2 is corrupt"):
        store.refresh()  # the watcher logs and counts this
    assert not store.refresh()
    assert store.serving().version == 1
    assert loader.calls == [1, 2]  # the broken version is not retried every poll
    status = {e["version"]: e for e in store.status()}
    assert status["1"]["state"] == "AVAILABLE" and status["2"]["state"] == "END"
    assert "corrupt" in status["2"]["status"]["error_message"]


def test_other_versions_load_on_demand_and_the_cache_is_bounded(tmp_path):
    registry = _registry(tmp_path, 3)
    loader = FakeLoader()
    store = ModelStore(registry, "m", loader=loader, max_loaded=2)
    store.refresh()  # version 3

    assert store.get(1).version == 1 and store.get(1).version == 1
    assert store.get(2).version == 2
    assert loader.calls == [3, 1, 2]
    assert [e["version"] for e in store.status()] == ["3", "2"]  # serving first; 1 was evicted
    with pytest.raises(RequestError) as caught:
        store.get(9)
    assert caught.value.status == 404 and "versions in the registry: [1, 2, 3]" in str(caught.value)


def test_concurrent_requests_for_one_version_load_it_once(tmp_path):
    registry = _registry(tmp_path, 2)
    loader = FakeLoader()
    store = ModelStore(registry, "m", loader=loader)
    threads = [threading.Thread(target=store.get, args=(1,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.calls.count(1) == 1


def test_no_version_yet_means_nothing_serves(tmp_path):
    store = ModelStore(ModelRegistry(str(tmp_path / "empty")), "m", loader=FakeLoader())
    assert not store.refresh() and store.serving() is None and store.status() == []


def test_a_bad_model_name_fails_at_construction(tmp_path):
    with pytest.raises(Exception, match="A model name must start"):
        ModelStore(ModelRegistry(str(tmp_path)), "../etc", loader=FakeLoader())

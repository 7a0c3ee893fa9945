"""push: only blessed models, idempotent, versions increment, serving alias follows."""

from __future__ import annotations

import json
import os

import pytest

try:
    from tests.components.model_fixtures import fake_model_dir, run
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import fake_model_dir, run

from flywheel.components.push import push
from flywheel.dsl.artifacts import InfraBlessing, Model, ModelBlessing, PushedModel
from flywheel.registry import ModelRegistry


def _blessing(tmp_path, name, blessed, reasons=("balanced_accuracy 0.99 >= threshold 0.8",)):
    return ModelBlessing(
        uri=str(tmp_path / name),
        properties={"blessed": blessed, "reasons": list(reasons), "metrics": {"accuracy": 0.97}},
    )


def _push(tmp_path, model_uri, blessing, out_name, **params):
    params.setdefault("model_name", "penguins")
    out = run(
        push,
        {"model": Model(uri=model_uri, properties={"diagnosis": "fine"}), "blessing": blessing},
        {"pushed_model": PushedModel(uri=str(tmp_path / out_name))},
        **params,
    )
    return out["pushed_model"]


def test_unblessed_model_is_not_pushed_and_the_node_succeeds(tmp_path):
    registry = str(tmp_path / "reg")
    model = fake_model_dir(str(tmp_path / "m"))
    refused = _blessing(tmp_path, "b", False, ["balanced_accuracy 0.41 is below the threshold 0.8"])

    pushed = _push(tmp_path, model, refused, "p", registry=registry)

    assert pushed.properties["pushed"] is False
    assert pushed.properties["version"] is None
    assert "not blessed" in pushed.properties["reason"]
    assert "0.41 is below the threshold" in pushed.properties["reason"]
    assert ModelRegistry(registry).models() == []
    with open(pushed.path("pushed.json")) as f:
        assert json.load(f)["pushed"] is False


def test_blessed_push_creates_version_and_serves_it_and_repeat_is_a_no_op(tmp_path):
    registry = str(tmp_path / "reg")
    model = fake_model_dir(str(tmp_path / "m"))

    first = _push(tmp_path, model, _blessing(tmp_path, "b", True), "p1", registry=registry, model_name="pen")
    again = _push(tmp_path, model, _blessing(tmp_path, "b", True), "p2", registry=registry, model_name="pen")

    store = ModelRegistry(registry)
    assert first.properties["pushed"] is True and first.properties["created"] is True
    assert first.properties["version"] == 1
    assert first.properties["registry_uri"] == store.root
    assert first.properties["model_name"] == "pen"
    assert store.serving_version("pen") == 1
    assert os.path.isfile(os.path.join(store.version_dir("pen", 1), "saved_model.pb"))
    assert store.version_info("pen", 1)["metrics"] == {"accuracy": 0.97}
    assert again.properties["version"] == 1 and again.properties["created"] is False
    assert store.versions("pen") == [1]


def test_versions_increment_and_alias_follows_new_pushes_only(tmp_path):
    registry = str(tmp_path / "reg")
    store = ModelRegistry(registry)
    one = fake_model_dir(str(tmp_path / "m1"), "one")
    two = fake_model_dir(str(tmp_path / "m2"), "two")

    _push(tmp_path, one, _blessing(tmp_path, "b", True), "p1", registry=registry)
    second = _push(tmp_path, two, _blessing(tmp_path, "b", True), "p2", registry=registry)
    assert second.properties["version"] == 2
    assert store.serving_version("penguins") == 2

    store.set_serving("penguins", 1, reason="rollback")
    _push(tmp_path, two, _blessing(tmp_path, "b", True), "p3", registry=registry)
    assert store.serving_version("penguins") == 1  # re-pushing an old model does not undo a rollback


def test_blessing_file_is_read_when_properties_are_absent_and_home_registry_is_default(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "home"))
    blessing_dir = tmp_path / "b"
    blessing_dir.mkdir()
    (blessing_dir / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": ["ok"]}))
    model = fake_model_dir(str(tmp_path / "m"))

    pushed = _push(tmp_path, model, ModelBlessing(uri=str(blessing_dir)), "p")

    assert pushed.properties["pushed"] is True
    assert pushed.properties["registry_uri"] == str(tmp_path / "home" / "registry")
    assert ModelRegistry(str(tmp_path / "home" / "registry")).versions("penguins") == [1]


def test_an_empty_model_name_pushes_under_the_name_the_blessing_was_made_for(tmp_path):
    # A KFP run started with the pipeline's defaults passes model_name "" (the derived default is
    # resolved by flywheel run and submit only); evaluate records the data's name on the blessing.
    registry = str(tmp_path / "reg")
    blessing = _blessing(tmp_path, "b", True)
    blessing.properties["model_name"] = "own"

    pushed = _push(tmp_path, fake_model_dir(str(tmp_path / "m")), blessing, "p", registry=registry, model_name="")

    assert pushed.properties["model_name"] == "own"
    assert ModelRegistry(registry).versions("own") == [1]


def _push_with_infra(tmp_path, blessed: bool, reasons: list[str]):
    """Pushes a blessed fake model with an infra blessing; returns (pushed_model, registry)."""
    registry = str(tmp_path / "reg")
    infra = InfraBlessing(uri=str(tmp_path / "infra"), properties={"blessed": blessed, "reasons": reasons})
    out = run(
        push,
        {"model": Model(uri=fake_model_dir(str(tmp_path / "m"))), "blessing": _blessing(tmp_path, "b", True),
         "infra_blessing": infra},
        {"pushed_model": PushedModel(uri=str(tmp_path / "p"))},
        registry=registry,
        model_name="penguins",
    )
    return out["pushed_model"], ModelRegistry(registry)


def test_a_blessed_model_without_the_infra_blessing_is_not_pushed_and_the_reason_is_kept(tmp_path):
    out, registry = _push_with_infra(tmp_path, False, ["HTTP 400 on island"])

    assert out.properties["pushed"] is False
    assert out.properties["reason"] == "model not infra-blessed (serving could not answer with it): HTTP 400 on island"
    assert registry.versions("penguins") == []


def test_both_blessings_push_and_the_infra_reasons_are_recorded_in_the_version(tmp_path):
    out, registry = _push_with_infra(tmp_path, True, ["served 3 requests"])

    assert out.properties["pushed"] is True
    assert registry.version_info("penguins", 1)["metadata"]["infra_blessing_reasons"] == ["served 3 requests"]


def test_a_blessed_model_without_any_model_name_is_an_error_naming_the_parameter(tmp_path):
    # push's default model_name is "" (never the demo's name): the blessing's name is used, and when the
    # Examples had no dataset name either, pushing under a made-up name would mix models; it is refused.
    registry = str(tmp_path / "reg")
    blessing = _blessing(tmp_path, "b", True)
    blessing.properties.pop("model_name", None)
    with pytest.raises(Exception, match="pass model_name=") as raised:
        _push(tmp_path, fake_model_dir(str(tmp_path / "m")), blessing, "p", registry=registry, model_name="")
    assert ModelRegistry(registry).models() == [], raised.value

"""Names that become paths are checked once (flywheel/names.py) before any path is built."""

from __future__ import annotations

import os

import pytest

from flywheel import Dataset, Output, component, pipeline
from flywheel.home import Home
from flywheel.metadata.store import MetadataStore
from flywheel.names import InvalidNameError, check_name, safe_name
from flywheel.registry import ModelRegistry
from flywheel.runner.runner import LocalRunner

HOSTILE = [
    "../../../escaped",
    "a/b",
    "..",
    ".",
    ".hidden",
    "",
    "/abs",
    "with space",
    "nul\x00byte",
    "back\\slash",
    "x" * 129,
    "-starts-with-dash",
]


@component
def write_marker(out: Output[Dataset]) -> None:
    with open(out.path("marker.txt"), "w", encoding="utf-8") as handle:
        handle.write("written")


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_with_the_value_and_a_safe_alternative(name):
    with pytest.raises(InvalidNameError) as caught:
        check_name("pipeline", name)
    message = str(caught.value)
    assert "A pipeline name must start with a letter or digit" in message
    assert repr(name[:200]) in message
    suggestion = safe_name(name)
    assert f"Use a name such as {suggestion!r}" in message
    assert check_name("pipeline", suggestion) == suggestion  # the suggestion itself is valid


@pytest.mark.parametrize("name", ["training", "penguins-v2", "run_1.final", "A" * 128, "7"])
def test_plain_names_pass_unchanged(name):
    assert check_name("run", name) == name


def test_non_string_names_are_refused():
    with pytest.raises(InvalidNameError, match="must be a string. Got int 5"):
        check_name("model", 5)


def test_a_pipeline_named_to_escape_the_home_fails_when_it_is_defined():
    with pytest.raises(InvalidNameError, match=r"A pipeline name .*'\.\./\.\./\.\./escaped'"):

        @pipeline(name="../../../escaped")
        def escaped() -> None:
            write_marker()


def test_a_run_id_that_escapes_is_refused_before_any_directory_is_made(tmp_path):
    home = Home(str(tmp_path / "deep" / "home"))

    @pipeline(name="marker")
    def marker() -> None:
        write_marker()

    with pytest.raises(InvalidNameError, match="A run name"):
        LocalRunner(home, max_workers=0).run(marker, run_id="../../../run-escaped")

    assert not os.path.exists(tmp_path / "run-escaped")
    assert not os.path.exists(tmp_path / "deep" / "run-escaped")
    assert os.listdir(home.artifacts) == [] and os.listdir(home.logs) == []
    assert MetadataStore(home).list_runs() == []


def test_registry_model_names_use_the_same_rule(tmp_path):
    store = ModelRegistry(str(tmp_path / "reg"))
    with pytest.raises(InvalidNameError, match="A model name"):
        store.model_dir("../outside")
    assert store.model_dir("penguins") == os.path.join(store.root, "penguins")


def test_schedule_names_and_serving_log_directories_use_the_same_rule(home, tmp_path):
    from flywheel.scheduling import ScheduleStore
    from flywheel.serving.logs import log_dir

    with pytest.raises(InvalidNameError, match=r"A schedule name .*'\.\./nightly'"):
        ScheduleStore(home).create("../nightly", "0 3 * * *", str(tmp_path / "p.py"), pipeline_name="p")
    assert ScheduleStore(home).list() == []
    with pytest.raises(InvalidNameError, match="A model name"):
        log_dir(home.root, "../../outside", "requests")
    assert log_dir(home.root, "penguins", "requests") == os.path.join(home.root, "serving", "penguins", "requests")

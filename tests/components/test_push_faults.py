"""Fault injection over push: a crash at every line of the push write, then recovery.

Each case forks a child that runs the push component with a line tracer on
``components/push.py`` and ``flywheel/registry.py``, and ends the child with
``os._exit`` (no ``finally``, no cleanup: what SIGKILL leaves) at the N-th
distinct line reached. The parent then checks that what the crash left is readable,
re-runs push (what ``flywheel run --resume`` does for the failed push node)
and checks that the step converged: the new model is a complete version and
it is the one serving.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

try:
    from tests.components.model_fixtures import fake_model_dir, run
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import fake_model_dir, run

from flywheel import registry as registry_module
from flywheel.components import push as push_module
from flywheel.components.push import push
from flywheel.dsl.artifacts import Model, ModelBlessing, PushedModel
from flywheel.registry import ModelRegistry, fingerprint_dir

CRASH_STATUS = 71
TRACED_FILES = {os.path.abspath(registry_module.__file__), os.path.abspath(push_module.__file__)}


def _blessing(tmp_path):
    return ModelBlessing(uri=str(tmp_path / "blessing"), properties={"blessed": True, "reasons": ["ok"], "metrics": {}})


def _push(tmp_path, registry, model_uri, out_name):
    out = run(
        push,
        {"model": Model(uri=model_uri), "blessing": _blessing(tmp_path)},
        {"pushed_model": PushedModel(uri=str(tmp_path / "out" / out_name))},
        registry=registry,
        model_name="m",
    )
    return out["pushed_model"].properties


def _push_crashing_at(tmp_path, registry, model_uri, crash_line: int | None) -> tuple[int, int]:
    """Runs push in a forked child that exits at the ``crash_line``-th traced line.

    Returns:
        (exit status of the child, traced lines it executed).
    """
    counter_path = str(tmp_path / "lines")
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        seen: set[tuple[str, int]] = set()
        executed = 0

        def local_trace(frame, event, arg):
            nonlocal executed
            # A crash point is a line reached for the first time: loops over files add no new points.
            if event == "line" and (frame.f_code.co_filename, frame.f_lineno) not in seen:
                seen.add((frame.f_code.co_filename, frame.f_lineno))
                executed += 1
                if executed == crash_line:
                    os._exit(CRASH_STATUS)
            return local_trace

        def global_trace(frame, event, arg):
            return local_trace if os.path.abspath(frame.f_code.co_filename) in TRACED_FILES else None

        status = 0
        try:
            sys.settrace(global_trace)
            _push(tmp_path, registry, model_uri, f"child-{crash_line}")
        except BaseException:  # noqa: BLE001 - the child reports any failure by its exit status
            status = 1
        finally:
            sys.settrace(None)
            with open(counter_path, "w") as handle:
                handle.write(str(executed))
        os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    lines = -1
    if os.path.exists(counter_path):
        with open(counter_path) as handle:
            lines = int(handle.read())
        os.remove(counter_path)
    return os.waitstatus_to_exitcode(wait_status), lines


def _assert_readable(store: ModelRegistry, fingerprints: dict[str, str]) -> None:
    """What any crash may leave: only complete versions, and an alias naming one of them."""
    for version in store.versions("m"):
        info = store.version_info("m", version)
        assert info["fingerprint"] in fingerprints.values()
        assert os.path.isfile(os.path.join(store.version_dir("m", version), "saved_model.pb"))
    serving = store.serving_version("m")
    assert serving in store.versions("m")


@pytest.fixture
def base_registry(tmp_path):
    """A registry where model A is version 1 and serves; model B is ready to push."""
    registry = str(tmp_path / "base")
    model_a = fake_model_dir(str(tmp_path / "model-a"), "A")
    model_b = fake_model_dir(str(tmp_path / "model-b"), "B")
    _push(tmp_path, registry, model_a, "a")
    return registry, model_a, model_b


def test_a_crash_at_every_line_of_push_converges_when_push_runs_again(tmp_path, base_registry):
    base, model_a, model_b = base_registry
    fingerprints = {"A": fingerprint_dir(model_a), "B": fingerprint_dir(model_b)}
    clean = str(tmp_path / "clean")
    shutil.copytree(base, clean)
    status, total_lines = _push_crashing_at(tmp_path, clean, model_b, crash_line=None)
    assert status == 0 and total_lines > 20  # the uninterrupted push: how many crash points there are
    print(f"push crash points: {total_lines}")

    outcomes = {"alias left on v1": 0, "alias already on v2": 0}
    for crash_line in range(1, total_lines + 1):
        registry = str(tmp_path / f"r{crash_line}")
        shutil.copytree(base, registry)
        status, _ = _push_crashing_at(tmp_path, registry, model_b, crash_line)
        assert status == CRASH_STATUS, f"line {crash_line}: the child was not stopped by the injected crash"
        store = ModelRegistry(registry)
        _assert_readable(store, fingerprints)
        outcomes["alias left on v1" if store.serving_version("m") == 1 else "alias already on v2"] += 1

        recovered = _push(tmp_path, registry, model_b, f"recover-{crash_line}")

        assert store.versions("m") == [1, 2], f"crash at line {crash_line}"
        assert store.version_info("m", 2)["fingerprint"] == fingerprints["B"]
        assert store.serving_version("m") == 2, f"crash at line {crash_line}: the new version is not serving"
        assert recovered["version"] == 2 and recovered["serving_version"] == 2
        leftovers = [n for n in os.listdir(store.model_dir("m")) if n.startswith(("serving.json.", ".tmp-"))]
        assert leftovers == [], f"crash at line {crash_line}: {leftovers}"
        shutil.rmtree(registry)
    # Both sides of the dangerous window were hit: crashes before and after the alias moved.
    assert outcomes["alias left on v1"] > 10 and outcomes["alias already on v2"] >= 1


def test_re_push_after_a_crash_between_version_and_alias_serves_the_new_version(tmp_path, base_registry):
    registry, _, model_b = base_registry
    store = ModelRegistry(registry)
    store.push("m", model_b)  # the version is written; the process dies before the alias moves
    assert store.serving_version("m") == 1

    again = _push(tmp_path, registry, model_b, "again")

    assert again["created"] is False and again["serving_set"] is True
    assert store.serving_version("m") == 2
    assert "it had never served, so it serves now" in again["reason"]


def test_re_push_never_undoes_a_rollback_nor_displaces_a_newer_version(tmp_path, base_registry):
    registry, model_a, model_b = base_registry
    store = ModelRegistry(registry)
    _push(tmp_path, registry, model_b, "b")
    store.set_serving("m", 1, reason="rollback from v2: live accuracy dropped")

    again = _push(tmp_path, registry, model_b, "b-again")
    assert again["serving_set"] is False and store.serving_version("m") == 1

    model_c = fake_model_dir(str(tmp_path / "model-c"), "C")
    store.push("m", model_c)  # crashed before its alias moved: version 3
    _push(tmp_path, registry, fake_model_dir(str(tmp_path / "model-d"), "D"), "d")  # version 4 serves
    late = _push(tmp_path, registry, model_c, "c-again")
    assert late["version"] == 3 and late["serving_set"] is False
    assert store.serving_version("m") == 4
    with open(os.path.join(store.model_dir("m"), "serving.json")) as handle:
        assert json.load(handle)["served_versions"] == [1, 2, 4]

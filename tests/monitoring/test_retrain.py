"""Monitor-triggered retraining with the real launcher: parameters travel faithfully,
a launch that fails spends no budget and the alert says what failed."""

from __future__ import annotations

import os
import time

import pytest

from flywheel.dsl.parameters import param_argument
from flywheel.errors import RunNotFoundError
from flywheel.metadata import MetadataStore
from flywheel.monitoring import retrain
from flywheel.monitoring.rules import RetrainSettings
from flywheel.monitoring.store import Alert, MonitorStore

TOY_PIPELINE = """
from flywheel import pipeline
from tests.runner.toy import produce

@pipeline(name="toy-params")
def toy_params(slice_features: list = [], options: dict = {}, epochs: int = 1, rate: float = 0.5,
               flag: bool = False, text: str = "x"):
    produce(text=text)
"""


@pytest.fixture
def pipeline_file(tmp_path, monkeypatch):
    from tests.conftest import REPO

    monkeypatch.chdir(REPO)  # the toy pipeline imports tests.runner.toy
    path = tmp_path / "toy.py"
    path.write_text(TOY_PIPELINE)
    return str(path)


def _alert(store: MonitorStore, ts: float) -> Alert:
    alert = Alert(ts, "drift", "m", 1, "drifted_features", 2.0, 2.0, "retrain", "drifted_features = 2 >= 2")
    alert.id = store.add_alert(alert)
    return alert


def _wait_for_end(home, run_id: str) -> str:
    deadline, state = time.monotonic() + 90, "not started"
    while time.monotonic() < deadline and state in ("not started", "RUNNING"):
        try:
            state = MetadataStore(home).get_run(run_id).state
        except RunNotFoundError:
            pass
        time.sleep(0.3)
    return state


@pytest.mark.parametrize(
    "value, text",
    [
        (["island", "sex"], 'k=["island", "sex"]'),
        ({"a": [1, 2]}, 'k={"a": [1, 2]}'),
        (True, "k=true"),
        (3, "k=3"),
        (0.25, "k=0.25"),
        ("plain text", "k=plain text"),
    ],
)
def test_parameters_are_passed_as_json_not_python_repr(value, text):
    assert param_argument("k", value) == text


def test_list_and_dict_parameters_and_task_parameters_reach_the_run_unchanged(home, pipeline_file):
    store = MonitorStore(home)
    pipeline_values = {"slice_features": ["island", "sex"], "options": {"depth": 2}, "epochs": 3, "rate": 0.1, "flag": True}
    parameters = {**pipeline_values, "sleep_s": 0.01}  # produce's own parameter, no pipeline parameter
    settings = RetrainSettings(pipeline=pipeline_file, parameters=parameters, max_runs=2)
    alert = _alert(store, time.time())

    outcome = retrain.trigger_retrain(store, alert, settings, retrain.local_launcher(home), now=time.time())

    run_id = outcome["started"]
    assert _wait_for_end(home, run_id) == "COMPLETE"
    run = MetadataStore(home).get_run(run_id)
    assert run.parameters == {**pipeline_values, "text": "x", "produce.sleep_s": 0.01}
    assert MetadataStore(home).latest_nodes(run)["produce"].parameters["sleep_s"] == 0.01
    assert store.alerts(model="m")[0].run_id == run_id


def test_a_run_that_cannot_start_is_recorded_as_failed_and_spends_no_budget(home, pipeline_file):
    store = MonitorStore(home)
    settings = RetrainSettings(pipeline=pipeline_file, parameters={"epochs": "many"}, max_runs=1)
    launcher = retrain.local_launcher(home)
    now = time.time()

    first = retrain.trigger_retrain(store, _alert(store, now), settings, launcher, now=now)

    assert "started" not in first
    assert first["failed"].startswith("RunError: The retraining run retrain-m-")
    assert "did not start: `flywheel run` exited with status 1" in first["failed"]
    assert "Parameter 'epochs' of pipeline 'toy-params' is an int; got 'many'" in first["failed"]
    [stored] = store.alerts(model="m")
    assert stored.run_id is None  # no claim of a run that does not exist
    assert store.count_retrains("m", now - 10) == 0
    assert MetadataStore(home).list_runs() == []

    # The budget (max_runs=1) is intact: a corrected launch still starts.
    fixed = RetrainSettings(pipeline=pipeline_file, parameters={"epochs": 2}, max_runs=1)
    second = retrain.trigger_retrain(store, _alert(store, now + 1), fixed, launcher, now=now + 1)
    assert _wait_for_end(home, second["started"]) == "COMPLETE"
    assert store.count_retrains("m", now - 10) == 1


def test_a_launch_that_never_records_its_run_is_stopped_and_reported(home, tmp_path):
    import subprocess
    import sys

    log_path = str(tmp_path / "stalled.out")
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import time; print('loading'); time.sleep(60)"],
            stdout=log,
            start_new_session=True,
        )
    with pytest.raises(retrain.RunError, match=r"did not record itself within 0.5s, so it was stopped"):
        retrain.wait_until_recorded(process, home, "never-recorded", log_path, timeout_s=0.5)
    assert process.poll() is not None  # no unrecorded run is left going


def test_a_model_name_that_would_escape_the_log_directory_fails_the_launch(home, pipeline_file):
    store = MonitorStore(home)
    alert = Alert(time.time(), "drift", "../../escape", 1, "drifted_features", 2.0, 2.0, "retrain", "m")
    alert.id = store.add_alert(alert)
    settings = RetrainSettings(pipeline=pipeline_file, parameters={}, max_runs=1)

    outcome = retrain.trigger_retrain(store, alert, settings, retrain.local_launcher(home), now=time.time())

    assert outcome["failed"].startswith("InvalidNameError: A run name must start with a letter or digit")
    assert not os.path.exists(os.path.join(home.logs, "escape"))
    assert store.count_retrains("../../escape", 0) == 0

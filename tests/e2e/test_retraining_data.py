"""Recurring retraining sees new data: appended rows, new spans, scheduled firings, a user's own CSV.

Each scenario has its own home and drives the CLI, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import palmerpenguins
import pytest

from flywheel.errors import RunNotFoundError
from flywheel.home import Home
from flywheel.metadata import MetadataStore
from flywheel.registry import ModelRegistry
from flywheel.scheduling import ScheduleStore
from tests.conftest import REPO
from tests.realistic_data import write_realistic_csv

PIPELINE = os.path.join(REPO, "pipelines", "training.py")
QUICK = ["-p", "epochs=40"]  # penguins reach ~0.97 balanced accuracy well before 40 epochs


def _home(tmp_path):
    home = Home(str(tmp_path / "home")).ensure()
    return home, dict(os.environ, FLYWHEEL_HOME=home.root)


def _cli(environ, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args], cwd=REPO, env=environ, capture_output=True, text=True, timeout=timeout
    )


def _newest(home):
    store = MetadataStore(home)
    run = store.list_runs(1)[0]
    return run, store.latest_nodes(run)


def _shuffled_penguins():
    # The CSV is ordered by species: a head of it lacks Chinstrap, and a model that later learns a
    # new class is refused a comparison with the served one (evaluate's label-vocabulary gate).
    return palmerpenguins.load_penguins().sample(frac=1, random_state=0).reset_index(drop=True)


def _states(nodes):
    return {n: e.state for n, e in nodes.items()}


def test_appended_rows_retrain_and_push_while_a_touched_file_is_served_from_cache(tmp_path):
    home, environ = _home(tmp_path)
    penguins = _shuffled_penguins()
    data = tmp_path / "data.csv"
    penguins.iloc[:200].to_csv(data, index=False)
    first = _cli(environ, "run", PIPELINE, "-p", f"data_path={data}", *QUICK)
    assert first.returncode == 0, first.stdout + first.stderr

    penguins.to_csv(data, index=False)  # the same file, now with all 344 rows
    # A slack regression gate: this test is about the data reaching a new model, not the gate's margin.
    second = _cli(environ, "run", PIPELINE, "-p", f"data_path={data}", "-p", "max_regression=0.2", *QUICK)
    assert second.returncode == 0, second.stdout + second.stderr
    run, nodes = _newest(home)
    assert nodes["push"].outputs["pushed_model"].properties["pushed"] is True, nodes["push"].outputs["pushed_model"].properties
    assert nodes["ingest"].state == "COMPLETE" and nodes["train"].state == "COMPLETE"
    assert sum(nodes["ingest"].outputs["examples"].properties["row_counts"].values()) == 344
    assert nodes["ingest"].details["cache_reason"].startswith("input data changed: data.csv size ")
    assert ModelRegistry(home.registry).versions("data") == [1, 2]
    shown = _cli(environ, "runs", "show", run.run_id)
    assert "miss: input data changed: data.csv size" in shown.stdout

    os.utime(data)  # touched, content unchanged
    third = _cli(environ, "run", PIPELINE, "-p", f"data_path={data}", "-p", "max_regression=0.2", *QUICK)
    assert third.returncode == 0, third.stdout + third.stderr
    _, nodes = _newest(home)
    assert set(_states(nodes).values()) == {"CACHED"}
    assert ModelRegistry(home.registry).versions("data") == [1, 2]


def _wait_for_run(home, run_id, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = MetadataStore(home).get_run(run_id)
            if run.state not in ("RUNNING",):
                return run
        except RunNotFoundError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def test_each_schedule_firing_trains_on_the_newest_span(tmp_path):
    home, environ = _home(tmp_path)
    penguins = _shuffled_penguins()
    spans = tmp_path / "penguin-export"
    (spans / "span-1").mkdir(parents=True)
    penguins.iloc[:250].to_csv(spans / "span-1" / "rows.csv", index=False)
    pattern = str(spans / "span-{SPAN}")
    created = _cli(environ, "schedule", "create", "nightly", "--cron", "* * * * *", PIPELINE,
                   "--param", f"data_path={pattern}", "--param", "epochs=40")
    assert created.returncode == 0, created.stderr
    schedules = ScheduleStore(home)

    def fire():
        with schedules._db() as db:  # pretend a slot is due now
            db.execute("UPDATE schedules SET created_at = created_at - 120, last_slot = NULL")
        fired = _cli(environ, "scheduler", "--once")
        assert fired.returncode == 0 and "firing slot" in fired.stdout, fired.stdout + fired.stderr
        run_id = schedules.firings("nightly")[0][1]
        run = _wait_for_run(home, run_id)
        assert run.state == "COMPLETE", run.error
        return MetadataStore(home).latest_nodes(run)

    first = fire()
    (spans / "span-2").mkdir()
    penguins.iloc[100:].to_csv(spans / "span-2" / "rows.csv", index=False)
    with schedules._db() as db:
        db.execute("DELETE FROM firings")
    second = fire()

    assert [n["ingest"].outputs["examples"].properties["span"] for n in (first, second)] == [1, 2]
    assert first["train"].outputs["model"].id != second["train"].outputs["model"].id
    assert "new span 2 (was 1)" in second["ingest"].details["cache_reason"]
    registry = ModelRegistry(home.registry)
    assert registry.versions("penguin-export") == [1, 2]  # model_name from the folder before {SPAN}
    spans_pushed = [json.loads(open(os.path.join(registry.version_dir("penguin-export", v), "version.json")).read())
                    for v in (1, 2)]
    assert [v["metadata"]["model_properties"]["data_span"] for v in spans_pushed] == [1, 2]
    lineage = _cli(environ, "lineage", str(second["train"].outputs["model"].id))
    assert "(data span 2)" in lineage.stdout


def test_own_data_after_the_demo_gets_its_own_schema_model_and_baseline(tmp_path):
    home, environ = _home(tmp_path)
    demo = _cli(environ, "demo", "-p", "epochs=40")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    own = write_realistic_csv(str(tmp_path / "churn.csv"), rows=20_000)

    result = _cli(environ, "run", PIPELINE, "-p", f"data_path={own}")  # defaults otherwise

    assert result.returncode == 0, result.stdout + result.stderr
    run, nodes = _newest(home)
    assert run.parameters["model_name"] == "churn" and run.parameters["label"] == ""
    assert set(_states(nodes).values()) == {"COMPLETE"}
    assert "curated_schema" not in nodes["validate"].inputs and "previous_statistics" not in nodes["validate"].inputs
    schema = nodes["validate"].outputs["schema"].properties
    assert schema["source"] == "inferred" and "merchant" in schema["features"] and "island" not in schema["features"]
    anomalies = nodes["validate"].outputs["anomalies"].properties
    assert anomalies["blocking_count"] == 0
    assert "distance_km" not in (anomalies.get("severity") or {}).get("skew", {})  # heavy tail, no false skew
    evaluation = json.loads(open(os.path.join(nodes["evaluate"].outputs["evaluation"].uri, "evaluation.json")).read())
    assert evaluation["baseline"] is None and evaluation["label"] == "label"
    assert evaluation["overall"]["balanced_accuracy"] > 0.8
    assert nodes["push"].outputs["pushed_model"].properties["model_name"] == "churn"
    assert ModelRegistry(home.registry).versions("penguins") == [1]

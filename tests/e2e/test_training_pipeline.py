"""The training pipeline end to end through the CLI, on penguins (one home per test module,
since each cold run pays TensorFlow's import in its worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import palmerpenguins
import pytest

from flywheel.home import Home
from flywheel.metadata import MetadataStore
from tests.conftest import REPO

PIPELINE = os.path.join(REPO, "pipelines", "training.py")
NODES = ["ingest", "validate", "transform", "train", "infra_validate", "evaluate", "is_blessed", "push"]
LINEAGE = [n for n in NODES if n != "is_blessed"]  # push reads the blessing itself; is_blessed only gates it


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = root / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(data, index=False)
    home = Home(str(root / "home")).ensure()
    environ = dict(os.environ, FLYWHEEL_HOME=home.root)
    return {"root": root, "data": data, "home": home, "environ": environ}


def flywheel(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args], cwd=REPO, env=env["environ"], capture_output=True, text=True, timeout=300
    )


def newest(env):
    store = MetadataStore(env["home"])
    run = store.list_runs(1)[0]
    return run, store.latest_nodes(run)


@pytest.fixture(scope="module")
def first_run(env):
    result = flywheel(env, "run", PIPELINE, "-p", f"data_path={env['data']}")
    assert result.returncode == 0, result.stdout + result.stderr
    return newest(env)


def test_penguins_run_trains_blesses_and_pushes(env, first_run):
    run, nodes = first_run
    assert run.state == "COMPLETE"
    assert [n for n in NODES if nodes[n].state == "COMPLETE"] == NODES
    evaluation = nodes["evaluate"].outputs["evaluation"].properties
    assert evaluation["accuracy"] >= 0.95 and evaluation["balanced_accuracy"] >= 0.95
    assert nodes["evaluate"].outputs["blessing"].properties["blessed"] is True
    infra = nodes["infra_validate"].outputs["infra_blessing"].properties
    assert infra["blessed"] is True and infra["max_abs_difference"] <= 1e-4, infra["reasons"]
    pushed = nodes["push"].outputs["pushed_model"].properties
    assert pushed["pushed"] is True and pushed["version"] == 1
    version_dir = os.path.join(env["home"].registry, "penguins", "1")
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.path.isfile(os.path.join(version_dir, "model.keras"))


def test_lineage_runs_from_the_pushed_model_back_to_the_input_file(env, first_run):
    _, nodes = first_run
    pushed_uri = nodes["push"].outputs["pushed_model"].uri
    result = flywheel(env, "lineage", pushed_uri)
    assert result.returncode == 0, result.stderr
    order = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and "execution #" in line]
    assert order[0] == "push" and set(order) == set(LINEAGE)
    # Nearest producers first: push reads the examples and validate's outputs itself (its drift
    # reference), so ingest and validate are one step away; transform only reaches it through train.
    assert order.index("transform") > order.index("train")
    store = MetadataStore(env["home"])
    chain = store.lineage(nodes["push"].outputs["pushed_model"].id)
    assert {e.node_id for e in chain} == set(LINEAGE)
    ingest = next(e for e in chain if e.node_id == "ingest")
    assert ingest.parameters["path"] == str(env["data"])
    assert ingest.outputs["examples"].properties["source"] == str(env["data"])


def test_second_run_with_identical_inputs_is_fully_cached(env, first_run):
    result = flywheel(env, "run", PIPELINE, "-p", f"data_path={env['data']}")
    assert result.returncode == 0, result.stderr
    run, nodes = newest(env)
    assert {n: e.state for n, e in nodes.items()} == {n: "CACHED" for n in NODES}
    assert run.state == "COMPLETE"


@pytest.mark.parametrize("damage, feature", [("drop", "body_mass_g"), ("wrong_type", "flipper_length_mm")])
def test_bad_data_stops_the_run_at_validate_naming_the_feature(env, first_run, damage, feature):
    frame = palmerpenguins.load_penguins()
    if damage == "drop":
        frame = frame.drop(columns=[feature])
    else:
        frame[feature] = frame[feature].astype(object)
        frame.loc[frame.index[::3], feature] = "unknown"
    path = env["root"] / f"{damage}.csv"
    frame.to_csv(path, index=False)

    result = flywheel(env, "run", PIPELINE, "-p", f"data_path={path}", "-p", "model_name=penguins")

    assert result.returncode == 1
    assert "node 'validate' failed" in result.stdout
    assert f"'{feature}'" in result.stdout
    _, nodes = newest(env)
    assert nodes["validate"].state == "FAILED"
    assert "transform" not in nodes and "train" not in nodes


def test_unblessed_model_is_not_pushed(env, first_run):
    versions_before = sorted(os.listdir(os.path.join(env["home"].registry, "penguins")))
    result = flywheel(env, "run", PIPELINE, "-p", f"data_path={env['data']}", "-p", 'thresholds={"balanced_accuracy": 1.01}')
    assert result.returncode == 0, result.stdout + result.stderr
    _, nodes = newest(env)
    blessing = nodes["evaluate"].outputs["blessing"].properties
    assert blessing["blessed"] is False
    assert any("1.01" in reason for reason in blessing["reasons"])
    assert nodes["is_blessed"].details["output_values"] == {"blessed": False}
    assert nodes["push"].state == "SKIPPED" and nodes["push"].outputs == {}  # If(blessed == True) was false
    assert "condition is_blessed.blessed == True is false" in nodes["push"].error
    assert sorted(os.listdir(os.path.join(env["home"].registry, "penguins"))) == versions_before


def test_run_on_new_data_compares_against_the_pushed_model(env, first_run):
    frame = pd.read_csv(env["data"])
    path = env["root"] / "new.csv"
    frame.sample(frac=0.9, random_state=1).to_csv(path, index=False)

    # The same model (schema, statistics and baseline are looked up per model_name) on a new file.
    result = flywheel(env, "run", PIPELINE, "-p", f"data_path={path}", "-p", "model_name=penguins")

    assert result.returncode == 0, result.stdout + result.stderr
    _, nodes = newest(env)
    assert nodes["ingest"].state == "COMPLETE" and nodes["evaluate"].state == "COMPLETE"
    blessing = nodes["evaluate"].outputs["blessing"].properties
    assert blessing["baseline_version"] == 1
    assert any("serving" in reason or "version 1" in reason for reason in blessing["reasons"]), blessing["reasons"]
    # validate compared the new data with the first run's statistics (drift) and kept its schema.
    validate_inputs = nodes["validate"].inputs
    assert validate_inputs["previous_statistics"].id == first_run[1]["validate"].outputs["statistics"].id
    assert validate_inputs["curated_schema"].id == first_run[1]["validate"].outputs["schema"].id
    anomalies_dir = nodes["validate"].outputs["anomalies"].uri
    with open(os.path.join(anomalies_dir, "anomalies.json"), encoding="utf-8") as handle:
        assert "drift" in json.load(handle)

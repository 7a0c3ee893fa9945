"""The cluster loop end to end, with no local metadata store and a KFP API that runs what it gets.

Everything lives on S3 (moto on loopback): the data spans, the model registry and the serving
logs. The KFP API is ``ExecutingKfpServer`` on loopback, which runs each submitted run's
compiled training pipeline (with its ``dsl.If`` gate on the blessing) through kfp.local, every
task a ``python -m flywheel.executor`` process, as a pod would run it.

1. v1 comes from a KFP run on span 1: its ``version.json`` names that run as its lineage.
2. Two replicas log shifted traffic (span 2's world) for the serving version to the bucket.
3. ``flywheel monitor --once`` in its own process, with a fresh home and no metadata store, only
   the bucket and the KFP endpoint: it detects drift against the reference v1 carries and submits
   a retraining run with ``data_path=s3://.../span-2``.
4. The server runs it: v2 is trained on span 2, blessed, pushed, and serves.
5. A bad v3 (v1 pushed again: it serves, its live labels disagree) is rolled back by the next
   monitor pass, and the drift rule's cool-down starts no second run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from flywheel import storage
from flywheel.cli.drift_demo import penguins
from flywheel.registry import ModelRegistry
from tests.conftest import REPO
from tests.kubeflow.executing_server import ExecutingKfpServer

pytestmark = pytest.mark.timeout(900)

MODEL = "penguins"
PIPELINE = os.path.join(REPO, "pipelines", "training.py")
# Small and fast, and lenient enough that every run is blessed.
TRAINING = {"model_name": MODEL, "epochs": 5, "hidden_units": [8, 4], "thresholds": {"balanced_accuracy": 0.3},
            "max_regression": 1.0}
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]

# One serving replica's request and feedback logs (serving/logs.py) for one version, written to the bucket.
REPLICA = textwrap.dedent(
    """
    import json, sys, time
    from flywheel.serving import logs
    root, version, rows, wrong = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4] == "1"
    requests = logs.open_writer(logs.log_dir(root, "penguins", logs.REQUESTS))
    feedback = logs.open_writer(logs.log_dir(root, "penguins", logs.FEEDBACK))
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    for row in rows:
        label = row.pop("species")
        guess = classes[(classes.index(label) + 1) % 3] if wrong else label
        rid = f"v{version}-{row.pop('id')}"
        now = time.time()
        requests.write([{"request_id": rid, "index": 0, "ts": now, "model": "penguins", "version": version,
                         "features": row, "prediction": guess}])
        feedback.write([{"request_id": rid, "index": 0, "ts": now, "label": label}])
    requests.close()
    feedback.close()
    """
)


def _replicas(logs_root: str, version: int, frame, *, wrong: bool = False) -> None:
    rows = [
        {"id": f"{i}", "species": str(row["species"]),
         **{f: (row[f] if isinstance(row[f], str) else (None if row[f] != row[f] else float(row[f]))) for f in FEATURES}}
        for i, row in frame.iterrows()
    ]
    half = len(rows) // 2
    procs = [
        subprocess.Popen([sys.executable, "-c", REPLICA, logs_root, str(version), json.dumps(part), "1" if wrong else "0"],
                         env=dict(os.environ, POD_NAME=f"serving-{n}", PYTHONPATH=REPO), cwd=REPO)
        for n, part in enumerate((rows[:half], rows[half:]))
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]


def _monitor(tmp_path, args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp_path / "monitor-user"), PYTHONPATH=REPO)
    env.pop("FLYWHEEL_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(tmp_path / "monitor-home"), "monitor", "--once", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


def _finished(kfp: ExecutingKfpServer, run_id: str) -> dict:
    run = kfp.wait(run_id, timeout_s=600)
    assert run["state"] == "SUCCEEDED", kfp.log(run_id)[-6000:]
    return {name: entry["state"] for name, entry in run["tasks"].items()}


def test_drift_on_serving_logs_retrains_on_kfp_pushes_v2_and_a_bad_v3_is_rolled_back(s3_bucket, tmp_path, monkeypatch):
    from kfp.client import client as kfp_client_module

    from flywheel.kubeflow.client import submit

    monkeypatch.setattr(kfp_client_module.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("FLYWHEEL_REGISTRY_CACHE", str(tmp_path / "registry-cache"))
    registry = ModelRegistry(f"{s3_bucket}/registry")
    logs_root = f"{s3_bucket}/logs"
    world, shifted = penguins(shifted=False, seed=0), penguins(shifted=True, seed=3)
    storage.write_bytes(f"{s3_bucket}/data/span-1/part-0.csv", world.to_csv(index=False).encode())
    storage.write_bytes(f"{s3_bucket}/data/span-2/part-0.csv", shifted.to_csv(index=False).encode())
    params = {**TRAINING, "registry": registry.root}

    with ExecutingKfpServer(tmp_path / "kfp") as kfp:
        # 1. v1 from a run on KFP
        first, _ = submit(PIPELINE, kfp.url, params={**params, "data_path": f"{s3_bucket}/data/span-1/"})
        tasks = _finished(kfp, first)
        assert tasks["condition-1"] == tasks["push"] == "SUCCEEDED"  # blessed: the If let push run
        assert registry.serving_version(MODEL) == 1
        v1 = registry.version_info(MODEL, 1)["metadata"]
        assert v1["lineage"] == {"kind": "kfp", "run_id": first, "host": kfp.url}
        assert v1["data"]["uri"] == f"{s3_bucket}/data/span-1/"

        # 2. shifted traffic on v1, logged by two replicas to the bucket
        _replicas(logs_root, 1, penguins(shifted=True, seed=4).head(240))

        # 3. the monitor: only the bucket and the KFP endpoint
        rules = tmp_path / "rules.yaml"
        rules.write_text(yaml.safe_dump({
            "drift": {"min_rows": 100},
            "retrain": {
                "pipeline": "pipelines/training.py",
                "parameters": {**params, "data_path": f"newest:{s3_bucket}/data/span-{{SPAN}}/"},
                "max_runs": 3, "period": "24h",
            },
            "rollback": {"metric": "accuracy", "margin": 0.05, "min_labels": 50},
            "rules": [{"name": "feature-drift", "metric": "drifted_share", "comparison": ">=", "threshold": 0.4,
                       "cooldown": "6h", "action": "retrain"}],
        }))
        args = ["--rules", str(rules), "--registry", registry.root, "--logs", logs_root, "--host", kfp.url]
        drifted = _monitor(tmp_path, args)
        assert drifted.returncode == 0, drifted.stdout + drifted.stderr
        assert "drifted:" in drifted.stderr and "body_mass_g" in drifted.stderr, drifted.stdout + drifted.stderr
        assert not os.path.exists(tmp_path / "monitor-home" / "metadata.sqlite")
        (_, retrain) = kfp.state.runs
        assert retrain["runtime_config"]["parameters"]["data_path"] == f"{s3_bucket}/data/span-2"
        assert "feature-drift" in retrain["display_name"]

        # 4. the executing server runs it: v2 is trained on span 2, blessed, pushed and serves
        tasks = _finished(kfp, retrain["run_id"])
        assert tasks["push"] == "SUCCEEDED"
        assert registry.serving_version(MODEL) == 2
        v2 = registry.version_info(MODEL, 2)
        assert v2["metadata"]["lineage"]["run_id"] == retrain["run_id"] and v2["metadata"]["data"]["uri"] == f"{s3_bucket}/data/span-2"
        assert v2["metadata"]["blessing"]["blessed"] is True
        _replicas(logs_root, 2, penguins(shifted=True, seed=5).head(120))

        # 5. a bad v3 serves (v1's model and reference pushed again, stale for this world), its live labels
        # disagree: the next pass rolls it back, and the drift it still sees is in the rule's cool-down
        time.sleep(1.1)  # v3's alias time must follow v2's labels (one-second timestamps)
        stale = registry.local_version_dir(MODEL, 1)
        v3_dir = tmp_path / "v3"
        shutil.copytree(stale, v3_dir, ignore=shutil.ignore_patterns("version.json", "reference"))
        old = registry.version_info(MODEL, 1)
        published = registry.publish(MODEL, str(v3_dir), metadata={"metrics": old["metrics"], **old["metadata"]},
                                     extra_trees={"reference": os.path.join(stale, "reference")})
        assert published.serving_version == 3
        _replicas(logs_root, 3, penguins(shifted=True, seed=6).head(120), wrong=True)
        second = _monitor(tmp_path, args)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "in cool-down" in second.stderr, second.stdout + second.stderr
        assert len(kfp.state.runs) == 2
        assert registry.serving_version(MODEL) == 2, second.stdout + second.stderr
        assert registry.serving_info(MODEL)["previous_version"] == 3

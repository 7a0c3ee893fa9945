"""The closed loop with no local store: registry, data and serving logs on S3 (moto), KFP API on loopback.

v1 is pushed by a run whose lineage lives in KFP; two serving replicas write shifted traffic to
the bucket; ``flywheel monitor`` runs as its own process with a fresh home (no metadata store),
only the bucket and the KFP endpoint configured: it detects drift against the reference the
registry carries and submits a retraining run whose data parameter is the newest span's URI.
The fake KFP API records and checks the request; it does not execute the pipeline (that needs
the container images, tests/containers). v2 and v3 are then pushed as that run would push them,
the bad v3 is rolled back by the next pass, and the drift rule's cool-down starts no second run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import yaml

from flywheel import storage
from flywheel.monitoring import reference
from flywheel.registry import ModelRegistry
from tests.conftest import REPO
from tests.test_registry import fake_model

CONTRACT = {
    "features": {"x": {"kind": "numeric"}, "colour": {"kind": "categorical"}},
    "label": "y",
    "label_vocabulary": ["a", "b"],
}

REPLICA = textwrap.dedent(
    """
    import json, sys, time
    from flywheel.serving import logs
    root, version, offset, shift, correct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
    requests = logs.open_writer(logs.log_dir(root, "m", logs.REQUESTS))
    feedback = logs.open_writer(logs.log_dir(root, "m", logs.FEEDBACK))
    now = time.time()
    for i in range(offset, offset + 80):
        x = shift + (i % 40) / 20.0 - 1.0
        requests.write([{"request_id": f"v{version}-r{i}", "index": 0, "ts": now, "model": "m", "version": version,
                         "features": {"x": x, "colour": "red" if i % 2 else "blue"}, "prediction": "a"}])
        feedback.write([{"request_id": f"v{version}-r{i}", "index": 0, "ts": now, "label": "a" if correct else "b"}])
    requests.close()
    feedback.close()
    """
)


def _model_with_reference(tmp_path, tag: str) -> tuple[str, str]:
    model_dir = fake_model(tmp_path / f"model-{tag}", tag)
    with open(os.path.join(model_dir, "model.json"), "w") as handle:
        json.dump(CONTRACT, handle)
    examples = tmp_path / f"examples-{tag}" / "Split-train"
    examples.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"x": rng.normal(0, 0.6, 400), "colour": rng.choice(["red", "blue"], 400), "y": rng.choice(["a", "b"], 400)}
    ).to_parquet(examples / "data.parquet")
    bundle = str(tmp_path / f"reference-{tag}")
    reference.write_bundle(bundle, CONTRACT, statistics_dir=None, examples_dir=str(examples.parent))
    return model_dir, bundle


def _replicas(root: str, version: int, shift: float, correct: bool) -> None:
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, root, str(version), str(offset), str(shift), "1" if correct else "0"],
            env={**env, "POD_NAME": f"serving-{n}"},
            cwd=REPO,
        )
        for n, offset in enumerate((0, 80))
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]


def _monitor(tmp_path, args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp_path / "monitor-user"), PYTHONPATH=REPO)
    env.pop("FLYWHEEL_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(tmp_path / "monitor-home"), "monitor", "--once", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_monitor_with_only_the_bucket_and_kfp_detects_drift_submits_a_run_and_rolls_back(s3_bucket, tmp_path, kfp_server):
    registry = ModelRegistry(f"{s3_bucket}/registry")
    logs_root = f"{s3_bucket}/logs"
    model_dir, bundle = _model_with_reference(tmp_path, "one")
    lineage = {"lineage": {"kind": "kfp", "run_id": "run-0", "host": kfp_server.url}, "run_id": "run-0"}
    registry.publish("m", model_dir, metadata={"metrics": {"accuracy": 0.95}, **lineage}, extra_trees={"reference": bundle})
    for span in (1, 2):
        storage.write_bytes(f"{s3_bucket}/data/span-{span}/part-0.csv", b"x,colour,y\n0.1,red,a\n")
    _replicas(logs_root, 1, shift=2.0, correct=True)

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "drift": {"min_rows": 100},
                "retrain": {
                    "pipeline": "pipelines/training.py",
                    "parameters": {"data_path": f"newest:{s3_bucket}/data/span-{{SPAN}}/"},
                    "max_runs": 3,
                    "period": "24h",
                },
                "rollback": {"metric": "accuracy", "margin": 0.05, "min_labels": 50},
                "rules": [
                    {"name": "feature-drift", "metric": "drifted_share", "comparison": ">=", "threshold": 0.5,
                     "cooldown": "6h", "action": "retrain"}
                ],
            }
        )
    )
    args = ["--rules", str(rules), "--registry", registry.root, "--logs", logs_root, "--host", kfp_server.url]
    first = _monitor(tmp_path, args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "drifted: x" in first.stderr and "-> run" in first.stdout, first.stdout + first.stderr
    (create,) = kfp_server.state.calls("POST", "/runs")
    assert create.body["runtime_config"]["parameters"]["data_path"] == f"{s3_bucket}/data/span-2"
    assert create.body["pipeline_spec"]["pipelineInfo"]["name"]
    assert "feature-drift" in create.body["display_name"]
    assert not os.path.exists(tmp_path / "monitor-home" / "metadata.sqlite")

    # what the retraining run pushes: a blessed v2 (it serves), then a bad v3
    v2, bundle2 = _model_with_reference(tmp_path, "two")
    assert registry.publish("m", v2, metadata={"metrics": {"accuracy": 0.95}}, extra_trees={"reference": bundle2}).serving_version == 2
    _replicas(logs_root, 2, shift=2.0, correct=True)
    time.sleep(1.1)  # v3's alias time must follow v2's labels (one-second timestamps)
    v3, bundle3 = _model_with_reference(tmp_path, "three")
    assert registry.publish("m", v3, metadata={"metrics": {"accuracy": 0.95}}, extra_trees={"reference": bundle3}).serving_version == 3
    _replicas(logs_root, 3, shift=2.0, correct=False)

    second = _monitor(tmp_path, args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "in cool-down" in second.stderr  # the same drift starts no second run
    assert len(kfp_server.state.calls("POST", "/runs")) == 1
    assert registry.serving_version("m") == 2, second.stdout + second.stderr
    assert registry.serving_info("m")["previous_version"] == 3


def test_newest_resolves_globs_and_spans_on_a_bucket_and_refuses_local_paths_for_kubeflow(s3_bucket, tmp_path):
    import pytest

    from flywheel.errors import FlywheelError
    from flywheel.monitoring.retrain import resolve_parameters

    storage.write_bytes(f"{s3_bucket}/incoming/a.csv", b"x\n1\n")
    time.sleep(1.1)  # S3 mtimes have one-second resolution
    storage.write_bytes(f"{s3_bucket}/incoming/b.csv", b"x\n2\n")
    resolved = resolve_parameters({"data_path": f"newest:{s3_bucket}/incoming/*.csv", "epochs": 3}, pods_read=True)
    assert resolved == {"data_path": f"{s3_bucket}/incoming/b.csv", "epochs": 3}
    (tmp_path / "local.csv").write_text("x\n1\n")
    with pytest.raises(FlywheelError, match="Kubeflow pods cannot read; point it at object storage"):
        resolve_parameters({"data_path": f"newest:{tmp_path}/*.csv"}, pods_read=True)
    assert resolve_parameters({"data_path": f"newest:{tmp_path}/*.csv"}) == {"data_path": str(tmp_path / "local.csv")}


def test_a_damaged_reference_is_a_clear_reason_not_a_crash(s3_bucket, tmp_path):
    import pytest

    from flywheel.monitoring.reference import ReferenceNotFoundError, load_reference

    registry = ModelRegistry(f"{s3_bucket}/registry")
    model_dir, bundle = _model_with_reference(tmp_path, "one")
    registry.publish("m", model_dir, extra_trees={"reference": bundle})
    assert set(load_reference(registry, None, "m", 1).numeric_sorted) == {"x"}
    storage.write_bytes(registry.version_file("m", 1, "reference/reference.json"), b'{"label": "y"}')
    with pytest.raises(ReferenceNotFoundError, match="cannot be read .*push that model again"):
        load_reference(registry, None, "m", 1)

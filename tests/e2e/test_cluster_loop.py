"""The cluster loop end to end, with no local metadata store and a KFP API that runs what it gets.

Everything lives on S3 (moto on loopback): the data spans, the model registry and the serving
logs. The KFP API is ``ExecutingKfpServer`` on loopback, which runs each submitted run's
compiled training pipeline (with its ``dsl.If`` gate on the blessing) through kfp.local, every
task a ``python -m flywheel.kubeflow.entrypoint`` process, as a pod would run it.

1. v1 comes from a KFP run on span 1: its ``version.json`` names that run as its lineage.
2. Two ``flywheel serve`` replicas serve the registry's alias from the bucket and log shifted
   traffic (span 2's world, true labels as feedback) to the bucket.
3. ``flywheel monitor --once`` in its own process, with a fresh home and no metadata store, only
   the bucket and the KFP endpoint: it detects drift against the reference v1 carries and submits
   a retraining run with ``data_path=s3://.../span-2``.
4. The server runs it: v2 is trained on span 2, blessed, pushed, and the replicas serve it.
5. A bad v3 (v1's model pushed again, stale in this world) is picked up by the replicas; its live
   accuracy falls below v2's, so the next monitor pass rolls it back, and the drift it sees is
   in the rule's cool-down: no second run.

The replicas ship their logs to the bucket every 30 s and when they stop, so each phase of
traffic ends by stopping them (SIGTERM drains and ships); the next phase starts them again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from flywheel import storage
from flywheel.cli.drift_demo import Traffic, _free_port, penguins
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

class Replicas:
    """Two ``flywheel serve`` processes on the S3 registry, logging to the bucket (POD_NAME: serving-0, -1)."""

    def __init__(self, tmp_path, registry: str, logs_root: str) -> None:
        self.ports = [_free_port(), _free_port()]
        self.logs = [open(tmp_path / f"replica-{n}.log", "ab") for n in range(2)]  # noqa: SIM115 - closed in stop()
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "flywheel", "--home", str(tmp_path / f"replica-{n}"), "serve",
                 "--registry", registry, "--model", MODEL, "--port", str(port), "--no-grpc", "--xla", "off",
                 "--poll-seconds", "0.5"],
                env=dict(os.environ, POD_NAME=f"serving-{n}", FLYWHEEL_SERVING_LOG_URI=logs_root, PYTHONPATH=REPO,
                         FLYWHEEL_REGISTRY_CACHE=str(tmp_path / f"replica-cache-{n}")),
                cwd=REPO, stdout=self.logs[n], stderr=subprocess.STDOUT,
            )
            for n, port in enumerate(self.ports)
        ]
        self.traffic = [Traffic(port, MODEL) for port in self.ports]

    def serving(self, version: int, timeout_s: float = 120) -> None:
        """Waits until both replicas answer with ``version``."""
        deadline = time.monotonic() + timeout_s
        while [t.serving_version() for t in self.traffic] != [version, version]:
            assert all(p.poll() is None for p in self.procs), "a replica exited"
            assert time.monotonic() < deadline, f"the replicas did not serve v{version} within {timeout_s:g}s"
            time.sleep(0.3)

    def replay(self, frame) -> tuple[float, int]:
        """Half the rows to each replica, true labels as feedback; (accuracy over all rows, the version)."""
        half = len(frame) // 2
        (a, va), (b, vb) = self.traffic[0].replay(frame.iloc[:half]), self.traffic[1].replay(frame.iloc[half:])
        assert va == vb
        return (a * half + b * (len(frame) - half)) / len(frame), va

    def stop(self) -> None:
        """SIGTERM: in-flight requests finish and each replica ships its log file to the bucket."""
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=60) for p in self.procs]
        for log in self.logs:
            log.close()
        assert codes == [0, 0]


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
    return {task["name"]: task["state"] for task in run["tasks"]}


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

        # 2. shifted traffic on v1, served and logged by two replicas
        replicas = Replicas(tmp_path, registry.root, logs_root)
        try:
            replicas.serving(1)
            stale_accuracy, served = replicas.replay(penguins(shifted=True, seed=4).head(200))
        finally:
            replicas.stop()
        assert served == 1

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
        replicas = Replicas(tmp_path, registry.root, logs_root)
        try:
            replicas.serving(2)
            accuracy_v2, _ = replicas.replay(penguins(shifted=True, seed=5).head(120))

            # 5. a bad v3: v1's model pushed again (stale for this world); the replicas pick it up
            stale = registry.local_version_dir(MODEL, 1)
            v3_dir = tmp_path / "v3"
            shutil.copytree(stale, v3_dir, ignore=shutil.ignore_patterns("version.json", "reference"))
            old = registry.version_info(MODEL, 1)
            published = registry.publish(MODEL, str(v3_dir), metadata={"metrics": old["metrics"], **old["metadata"]},
                                         extra_trees={"reference": os.path.join(stale, "reference")})
            assert published.serving_version == 3
            replicas.serving(3)
            accuracy_v3, _ = replicas.replay(penguins(shifted=True, seed=6).head(120))
        finally:
            replicas.stop()
        assert accuracy_v3 < accuracy_v2 - 0.05 and abs(accuracy_v3 - stale_accuracy) < 0.2, (accuracy_v2, accuracy_v3)

        # the next pass rolls v3 back on its live labels; the drift it still sees is in cool-down
        second = _monitor(tmp_path, args)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "in cool-down" in second.stderr, second.stdout + second.stderr
        assert len(kfp.state.runs) == 2
        assert registry.serving_version(MODEL) == 2, second.stdout + second.stderr
        assert registry.serving_info(MODEL)["previous_version"] == 3

"""The compiled training pipeline, run task by task in flywheel's images through kfp.local.

kfp's own local orchestrator builds every task's executor input and runs it with its
DockerRunner against podman's Docker API; each task runs in flywheel:<version> (infra_validate
in flywheel-serving:<version>, its image role) as uid 10001 with a read-only root. Two runs share one registry: the first pushes version 1, the second
is evaluated against it and pushes version 2. Then the serving image serves the registry.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.kubeflow.container_run import TASK_UID, TaskContainerOptions, run_compiled_pipeline, run_task
from flywheel.pipeline_file import load_pipeline

from .conftest import COMPONENT_IMAGE, REPO, SERVING_IMAGE, _require_image

# Two pipeline runs of six containers each outlast pytest.ini's 10 minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(2400)

# Small and fast, and lenient enough that both runs are blessed and pushed.
ARGUMENTS = {"epochs": 5, "thresholds": {"balanced_accuracy": 0.3}, "max_regression": 1.0, "hidden_units": [8, 4]}
PENGUIN = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5, "flipper_length_mm": 215.0,
           "body_mass_g": 5000.0, "sex": "female", "year": 2008}


@pytest.fixture(scope="module")
def two_runs(docker_host, tmp_path_factory):
    _require_image(SERVING_IMAGE)  # infra_validate runs in it
    work = tmp_path_factory.mktemp("container-run")
    ir = work / "training.yaml"
    # The shipped IR as a cluster gets it: push under dsl.If(is_blessed), which container-run
    # evaluates, and validate's kept schema read from the registry by the registry-reference task.
    # ARGUMENTS are train's and evaluate's own parameters: compiled in as those tasks' constants.
    compile_pipeline(load_pipeline(str(REPO / "pipelines" / "training.py")).bind(ARGUMENTS), str(ir),
                     image=COMPONENT_IMAGE, serving_image=SERVING_IMAGE)
    registry = work / "registry"
    roots, states = [], []
    for run in (1, 2):
        root = work / f"root-{run}"
        seen: dict[str, str] = {}
        run_compiled_pipeline(ir, pipeline_root=root, registry_dir=registry,
                              on_task=lambda name, state, detail, seen=seen: seen.__setitem__(name, state))
        roots.append(root)
        states.append(seen)
    return roots, registry, states


def test_the_gated_push_and_the_registry_reference_ran_in_each_run(two_runs):
    _, _, states = two_runs
    for seen in states:
        assert seen.get("push") == "SUCCEEDED", seen
        assert seen.get("registry-reference") == "SUCCEEDED", seen
        assert not [name for name, state in seen.items() if state not in ("SUCCEEDED", "SKIPPED")], seen


def _outputs(root, task):
    """(artifact name -> metadata) of one task, from the executor output kfp.local read back."""
    files = [p for p in root.rglob("executor_output.json") if f"/{task}/" in str(p) or f"-{task}-" in str(p) or f"/{task}-" in str(p)]
    files = files or [p for p in root.rglob("*output_metadata.json") if task in str(p)]
    assert files, f"no executor output of {task} under {root}"
    data = json.loads(files[0].read_text())
    return {name: entry["artifacts"][0] for name, entry in data.get("artifacts", {}).items()}


def test_every_task_ran_as_uid_10001_and_wrote_into_the_pipeline_root(two_runs):
    roots, _, _ = two_runs
    written = [p for p in roots[0].rglob("*") if p.is_file()]
    assert len(written) > 10
    assert {p.stat().st_uid for p in written} == {TASK_UID}, "outputs were written by another user than 10001"
    for task in ("ingest", "validate", "transform", "train", "infra-validate", "evaluate", "push"):  # KFP task names
        assert any(f"/{task}" in str(p) for p in written), f"no output of {task}"
    # infra_validate ran in the serving image (no pandas there) and served the candidate.
    for root in roots:
        blessing = _outputs(root, "infra-validate")["infra_blessing"]["metadata"]
        assert blessing["blessed"] is True, blessing["reasons"]


def test_push_wrote_a_version_per_run_and_the_second_was_compared_with_the_first(two_runs):
    roots, registry, _ = two_runs
    versions = sorted(p.name for p in (registry / "penguins").iterdir() if p.name.isdigit())
    assert versions == ["1", "2"]
    assert (registry / "penguins" / "2" / "saved_model.pb").is_file()
    first, second = (json.dumps(_outputs(root, "evaluate")) for root in roots)
    assert '"baseline_version": null' in first
    assert '"baseline_version": 1' in second


def test_the_task_container_is_non_root_with_a_read_only_root(docker_host, capsys):
    import docker

    client = docker.from_env()
    probe = ["sh", "-c", "id -u; touch /opt/venv/probe || echo root-read-only; touch /tmp/probe && echo tmp-writable"]
    assert run_task(client, COMPONENT_IMAGE, probe, {}, TaskContainerOptions()) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "touch:" not in line]
    assert lines == ["10001", "root-read-only", "tmp-writable"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serving_image_serves_the_pushed_model_read_only_as_non_root(two_runs):
    _require_image(SERVING_IMAGE)
    _, registry, _ = two_runs
    port = _free_port()
    name = f"flywheel-serving-test-{os.getpid()}"
    subprocess.run(
        ["podman", "run", "-d", "--name", name, "--read-only", "--user", "10001:10001",
         "--tmpfs", "/tmp:rw,mode=1777", "--tmpfs", "/var/lib/flywheel:rw,mode=1777",
         "-v", f"{registry}:/models:ro", "-p", f"127.0.0.1:{port}:8501", SERVING_IMAGE],
        check=True, capture_output=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/models/penguins:predict",
                    data=json.dumps({"instances": [PENGUIN]}).encode(), headers={"Content-Type": "application/json"},
                )
                body = json.loads(urllib.request.urlopen(request, timeout=10).read())
                break
            except OSError:
                time.sleep(2)
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True).stdout[-2000:]
        assert body is not None, f"no answer from the serving container: {logs}"
        (prediction,) = body["predictions"]
        assert prediction, body
        user = subprocess.run(["podman", "exec", name, "id", "-u"], capture_output=True, text=True).stdout.strip()
        assert user == "10001"
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)

"""SIGKILL during a node: nothing is published and lineage shows the failure."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from flywheel.metadata import MetadataStore
from tests.conftest import REPO

PIPELINE = """
from flywheel import pipeline
from tests.runner.toy import half_writer, consume

@pipeline(name="killme")
def killme(ready: str):
    data = half_writer(ready=ready)
    consume(data=data.output)
"""


def _start(tmp_path, flywheel_cmd):
    path = tmp_path / "killme.py"
    path.write_text(PIPELINE)
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [*flywheel_cmd, "run", str(path), "--param", f"ready={ready}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"node never started: {proc.communicate()[0]}")
        time.sleep(0.02)
    return proc, int(ready.read_text())


def _assert_nothing_published(home, run_id):
    store = MetadataStore(home)
    run = store.get_run(run_id)
    assert run.state == "FAILED"
    node = store.latest_nodes(run)["half_writer"]
    assert node.state == "FAILED"
    artifact = node.outputs["out"]
    assert artifact.state == "ABANDONED"
    assert not os.path.exists(artifact.uri), "a killed node published its output"
    assert not os.path.exists(os.path.join(home.staging, run_id))
    assert "consume" not in store.latest_nodes(run)
    return node


def test_sigkill_of_the_node_process_fails_the_node_and_publishes_nothing(home, tmp_path, flywheel_cmd):
    proc, worker_pid = _start(tmp_path, flywheel_cmd)
    os.kill(worker_pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=60)

    assert proc.returncode == 1
    assert "killed by signal SIGKILL" in output
    run_id = MetadataStore(home).list_runs(1)[0].run_id
    node = _assert_nothing_published(home, run_id)
    assert "SIGKILL" in node.error


def test_sigkill_of_the_whole_run_is_recorded_as_failed_on_next_look(home, tmp_path, flywheel_cmd):
    proc, worker_pid = _start(tmp_path, flywheel_cmd)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the worker dies with its runner (PR_SET_PDEATHSIG)
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("worker outlived its runner")

    run_id = MetadataStore(home).list_runs(1)[0].run_id  # listing reconciles the orphan
    node = _assert_nothing_published(home, run_id)
    assert "ended without finishing" in node.error

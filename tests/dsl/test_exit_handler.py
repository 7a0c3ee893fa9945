"""ExitHandler: checked when the pipeline is built, run by the local runner, compiled to dsl.ExitHandler."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from flywheel import ExitHandler, FinalStatus, component, pipeline
from flywheel.components.notify import notify
from flywheel.errors import PipelineDefinitionError
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.runner.toy import consume, produce


@pytest.fixture()
def webhook():
    """A loopback HTTP server that keeps the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def _guarded(fail_flag: str):
    @pipeline(name="guarded")
    def guarded(webhook_url: str = "") -> None:
        with ExitHandler(notify(webhook_url=webhook_url, message="nightly")):
            data = produce()
            checked = consume(data=data.output, fail_if_exists=fail_flag)
            consume(data=data.output).after(checked)

    return guarded


@pytest.mark.parametrize("fails", [False, True])
def test_exit_task_runs_last_and_reports_the_state(home, tmp_path, webhook, fails):
    url, received = webhook
    flag = tmp_path / "fail"
    if fails:
        flag.write_text("x")
    result = LocalRunner(home, max_workers=0).run(_guarded(str(flag)), {"webhook_url": url})
    assert result.ok is (not fails)  # the exit task reports; it does not rescue a failed run
    assert result.states["notify"] == "COMPLETE"
    (report,) = received
    assert report["run"] == result.run.run_id and report["pipeline"] == "guarded"
    assert report["message"] == "nightly"
    if fails:
        assert report["state"] == "FAILED"
        assert "consume: ValueError: flag file" in report["error"]
        assert "consume-2: skipped" in report["error"]
        assert result.states["consume-2"] == "SKIPPED"
    else:
        assert report == {**report, "state": "SUCCEEDED", "error": ""}
    nodes = MetadataStore(home).latest_nodes(result.run)
    last_guarded = max(nodes[t].end_ms or 0 for t in ("produce", "consume"))
    assert nodes["notify"].start_ms >= last_guarded


def test_exit_handler_compiles_to_kfp_exit_handler(tmp_path):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    out = tmp_path / "p.yaml"
    compile_pipeline(_guarded(""), str(out))
    doc = yaml.safe_load(out.read_text())
    json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    root = doc["root"]["dag"]["tasks"]
    (group,) = set(root) - {"notify"}
    assert root[group]["taskInfo"]["name"] == "notify-handler"
    assert root["notify"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert root["notify"]["dependentTasks"] == [group]
    assert root["notify"]["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": group}}
    handler = doc["components"][root[group]["componentRef"]["name"]]
    assert set(handler["dag"]["tasks"]) == {"produce", "consume", "consume-2"}
    status_input = doc["components"][root["notify"]["componentRef"]["name"]]["inputDefinitions"]["parameters"]["status"]
    assert status_input["parameterType"] == "TASK_FINAL_STATUS"


@component
def reports_status(status: FinalStatus = None) -> None:
    print(status)


def test_exit_handler_mistakes_are_definition_errors(tmp_path):
    with pytest.raises(PipelineDefinitionError, match="may take only parameters"):
        @pipeline(name="bad-exit-input")
        def bad_input() -> None:
            data = produce()
            with ExitHandler(consume(data=data.output)):
                produce()

    with pytest.raises(PipelineDefinitionError, match="only an exit task receives"):
        @pipeline(name="status-outside")
        def status_outside() -> None:
            reports_status()

    with pytest.raises(PipelineDefinitionError, match="do not pass it"):
        @pipeline(name="status-passed")
        def status_passed() -> None:
            reports_status(status={"state": "SUCCEEDED"})

    with pytest.raises(PipelineDefinitionError, match="depends on exit task 'notify'"):
        @pipeline(name="after-exit")
        def after_exit() -> None:
            told = notify()
            with ExitHandler(told):
                produce()
            produce().after(told)

    with pytest.raises(PipelineDefinitionError, match="outside the ExitHandler block but depends on produce"):
        @pipeline(name="outside-depends")
        def outside_depends() -> None:
            with ExitHandler(notify()):
                data = produce()
            consume(data=data.output)

    with pytest.raises(PipelineDefinitionError, match="already has an exit handler"):
        @pipeline(name="two-handlers")
        def two_handlers() -> None:
            with ExitHandler(notify()):
                produce()
            with ExitHandler(notify()):
                produce()

    with pytest.raises(PipelineDefinitionError, match="outside one"):
        ExitHandler(None)


def test_kfp_executor_hands_the_final_status_to_notify(tmp_path, webhook):
    """On Kubeflow the status arrives as KFP's PipelineTaskFinalStatus in parameterValues."""
    import os
    import subprocess
    import sys

    url, received = webhook
    status = {"state": "FAILED", "pipelineJobResourceName": "projects/p/runs/r-1", "pipelineTaskName": "guarded",
              "error": {"code": 9, "message": "consume failed"}}
    executor_input = {
        "inputs": {"parameterValues": {"status": status, "webhook_url": url, "message": "m", "timeout_s": 5.0}},
        "outputs": {"outputFile": str(tmp_path / "out" / "output_metadata.json")},
    }
    command = [sys.executable, "-m", "flywheel.kubeflow.entrypoint", "--executor_input", json.dumps(executor_input),
               "--component", "flywheel.components.notify:notify"]
    result = subprocess.run(command, env=dict(os.environ, FLYWHEEL_ARTIFACT_MOUNT_ROOT=str(tmp_path)),
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert received == [{"pipeline": "guarded", "run": "projects/p/runs/r-1", "state": "FAILED",
                         "error": "consume failed", "message": "m"}]
    assert "ended FAILED: consume failed" in result.stdout + result.stderr


def test_resuming_a_failed_run_reports_again(home, tmp_path, webhook):
    url, received = webhook
    flag = tmp_path / "fail"
    flag.write_text("x")
    guarded = _guarded(str(flag))
    runner = LocalRunner(home, max_workers=0)
    failed = runner.run(guarded, {"webhook_url": url})
    assert not failed.ok and received[-1]["state"] == "FAILED"
    flag.unlink()
    resumed = runner.resume(guarded, failed.run.run_id)
    assert resumed.ok and resumed.states["produce"] == "REUSED"
    assert resumed.states["notify"] == "COMPLETE"
    assert [r["state"] for r in received] == ["FAILED", "SUCCEEDED"]

"""The executing KFP API (tests/kubeflow/executing_server.py): a submitted run is run, and reported as KFP does."""

from __future__ import annotations

import textwrap

import pytest

from flywheel.cli.main import main
from tests.kubeflow.executing_server import ExecutingKfpServer

PIPELINE_FILE = textwrap.dedent(
    """
    from flywheel import If, pipeline
    from tests.runner.toy import consume, decide, produce

    @pipeline(name="gated")
    def gated(answer: bool = True, text: str = "hello") -> None:
        verdict = decide(answer=answer)
        data = produce(text=text)
        with If(verdict.values["verdict"] == True):
            consume(data=data.output)
    """
)


@pytest.fixture
def executing_server(tmp_path, monkeypatch):
    from kfp.client import client as kfp_client_module

    monkeypatch.setattr(kfp_client_module.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with ExecutingKfpServer(tmp_path / "kfp") as server:
        yield server


def _submit(tmp_path, server, capsys, *params: str) -> str:
    source = tmp_path / "gated_pipeline.py"
    source.write_text(PIPELINE_FILE)
    argv = ["submit", str(source), "--host", server.url]
    for param in params:
        argv += ["--param", param]
    assert main(argv) == 0
    out = capsys.readouterr().out
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Run id: "))


def test_a_submitted_run_is_executed_and_reported_like_kfp(tmp_path, executing_server, capsys):
    import kfp

    run_id = _submit(tmp_path, executing_server, capsys, "text=shipped", "answer=true")
    client = kfp.Client(host=executing_server.url)
    finished = client.wait_for_run_completion(run_id, timeout=300, sleep_duration=1)
    assert finished.state == "SUCCEEDED", executing_server.log(run_id)
    tasks = {t.display_name: t for t in finished.run_details.task_details}
    assert {name: t.state for name, t in tasks.items()} == {
        "decide": "SUCCEEDED", "produce": "SUCCEEDED", "condition-1": "SUCCEEDED", "consume": "SUCCEEDED",
    }
    assert all(t.start_time and t.end_time and t.end_time >= t.start_time for t in tasks.values())
    assert finished.runtime_config.parameters == {"text": "shipped", "answer": True}
    # the tasks really ran: produce wrote the text, consume read it
    root = tmp_path / "kfp" / run_id / "root"
    assert [p.read_text() for p in root.rglob("produce/out/data.txt")] == ["shipped"]
    assert len(list(root.rglob("consume/out/metrics.txt"))) == 1
    assert "Pipeline" in executing_server.log(run_id) and "SUCCESS" in executing_server.log(run_id)


def test_a_false_condition_is_a_skipped_task_and_a_bad_parameter_a_failed_run(tmp_path, executing_server, capsys):
    import kfp

    client = kfp.Client(host=executing_server.url)
    skipped = _submit(tmp_path, executing_server, capsys, "answer=false")
    run = client.wait_for_run_completion(skipped, timeout=300, sleep_duration=1)
    assert run.state == "SUCCEEDED", executing_server.log(skipped)
    tasks = {t.display_name: t for t in run.run_details.task_details}
    assert tasks["condition-1"].state == "SKIPPED" and "is false" in tasks["condition-1"].error.message
    assert tasks["consume"].state == "SKIPPED"
    assert not list((tmp_path / "kfp" / skipped / "root").rglob("consume"))

    # a run the pipeline cannot take fails, with the reason on the run (the fake API accepts any body)
    bad = client.create_run_from_pipeline_package(
        str(_compiled(tmp_path)), arguments={"no_such_parameter": 1}, run_name="bad"
    ).run_id
    failed = client.wait_for_run_completion(bad, timeout=300, sleep_duration=1)
    assert failed.state == "FAILED"
    assert "has no parameters ['no_such_parameter']" in failed.error.message
    assert {r["state"] for r in executing_server.state.runs} == {"SUCCEEDED", "FAILED"}


def _compiled(tmp_path):
    from flywheel.kubeflow.compiler import compile_pipeline
    from flywheel.pipeline_file import load_pipeline

    source = tmp_path / "gated_pipeline.py"
    source.write_text(PIPELINE_FILE)
    compile_pipeline(load_pipeline(str(source)), str(tmp_path / "gated.yaml"))
    return tmp_path / "gated.yaml"

"""If: conditions on a task's output parameter, checked when built, run locally, compiled to dsl.If."""

from __future__ import annotations

import pytest
import yaml

from flywheel import If, pipeline
from flywheel.errors import PipelineDefinitionError
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.runner.toy import consume, decide, produce


def _gated(answer: bool):
    @pipeline(name="gated")
    def gated() -> None:
        verdict = decide(answer=answer)
        data = produce()
        with If(verdict.values["verdict"] == True):  # noqa: E712 - builds a Condition
            shipped = consume(data=data.output)
            with If(verdict.values["score"] != 0.5):
                consume(data=data.output).after(shipped)
        consume(data=data.output)  # outside: runs either way

    return gated


@pytest.mark.parametrize("answer", [True, False])
def test_tasks_inside_if_run_only_when_the_condition_holds(home, answer):
    result = LocalRunner(home, max_workers=0).run(_gated(answer))
    assert result.ok
    inside = "COMPLETE" if answer else "SKIPPED"
    # identical consume calls share a cache key, so the later ones may be CACHED
    states = {t: "COMPLETE" if s == "CACHED" else s for t, s in result.states.items()}
    assert states == {"decide": "COMPLETE", "produce": "COMPLETE", "consume": inside,
                      "consume-2": inside, "consume-3": "COMPLETE"}
    nodes = MetadataStore(home).latest_nodes(result.run)
    assert nodes["decide"].details["output_values"] == {"verdict": answer, "score": 0.9 if answer else 0.1}
    assert {t: n.state for t, n in nodes.items()}["consume"] == ("COMPLETE" if answer else "SKIPPED")
    if not answer:
        assert nodes["consume"].error == "skipped: condition decide.verdict == True is false (verdict = False)"
        assert nodes["consume-2"].state == "SKIPPED" and "upstream 'consume' was skipped" in nodes["consume-2"].error
        assert nodes["consume"].outputs == {}

    cached = LocalRunner(home, max_workers=0).run(_gated(answer))  # values come back with a cache hit
    assert cached.ok and cached.states["decide"] == "CACHED"
    assert cached.states["consume"] == ("CACHED" if answer else "SKIPPED")


def test_runs_show_lists_a_skipped_task(home, capsys):
    from flywheel.cli.main import main

    result = LocalRunner(home, max_workers=0).run(_gated(False))
    assert main(["runs", "show", result.run.run_id]) == 0
    shown = capsys.readouterr().out
    assert "SKIPPED" in shown and "condition decide.verdict == True is false" in shown


def test_progress_says_why_a_task_was_skipped(home):
    import io

    from flywheel.cli.progress import Progress

    pipe = _gated(False)
    stream = io.StringIO()
    progress = Progress(list(pipe.tasks), stream=stream)
    LocalRunner(home, max_workers=0, listener=progress.on_event).run(pipe)
    (line,) = [line for line in stream.getvalue().splitlines() if " consume " in line]
    assert "SKIPPED" in line and "skipped: condition decide.verdict == True is false" in line


def test_dashboard_run_page_renders_a_skipped_task(home):
    from flywheel.dashboard.server import Dashboard
    from flywheel.dashboard.sources import Sources

    result = LocalRunner(home, max_workers=0).run(_gated(False))
    response = Dashboard(Sources(home)).handle(f"/runs/{result.run.run_id}")
    assert response.status == 200
    page = response.body.decode()
    assert "state-SKIPPED" in page and "consume-2" in page


def test_if_compiles_to_kfp_conditions(tmp_path):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    out = tmp_path / "p.yaml"
    compile_pipeline(_gated(True), str(out))
    doc = yaml.safe_load(out.read_text())
    json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    root = doc["root"]["dag"]["tasks"]
    groups = [k for k in root if k.startswith("condition")]
    assert len(groups) == 1 and {"decide", "produce", "consume-3"} <= set(root)
    outer = root[groups[0]]
    assert "decide" in outer["dependentTasks"]
    assert "== true" in outer["triggerPolicy"]["condition"].lower()
    inner_dag = doc["components"][outer["componentRef"]["name"]]["dag"]["tasks"]
    (nested,) = [k for k in inner_dag if k.startswith("condition")]
    assert "consume" in inner_dag and "!= 0.5" in inner_dag[nested]["triggerPolicy"]["condition"]
    decide_comp = doc["components"][root["decide"]["componentRef"]["name"]]
    assert decide_comp["outputDefinitions"]["parameters"] == {
        "verdict": {"parameterType": "BOOLEAN"}, "score": {"parameterType": "NUMBER_DOUBLE"}}


def test_condition_mistakes_are_definition_errors():
    with pytest.raises(PipelineDefinitionError, match="If takes a comparison of a task's output parameter"):
        @pipeline(name="artifact-condition")
        def artifact_condition() -> None:
            data = produce()
            with If(data.outputs["out"] == True):  # noqa: E712
                consume(data=data.output)

    with pytest.raises(PipelineDefinitionError, match=r"\(bool\) with a constant of that type; got 'yes'"):
        @pipeline(name="wrong-type")
        def wrong_type() -> None:
            with If(decide().values["verdict"] == "yes"):
                produce()

    with pytest.raises(PipelineDefinitionError, match="create 'consume' inside the same If block"):
        @pipeline(name="escapes")
        def escapes() -> None:
            with If(decide().values["verdict"] == True):  # noqa: E712
                data = produce()
            consume(data=data.output)

    with pytest.raises(PipelineDefinitionError, match="output parameters are tested by If"):
        @pipeline(name="value-as-parameter")
        def value_as_parameter() -> None:
            decide(answer=decide().values["verdict"])


def test_kfp_executor_writes_output_parameters(tmp_path):
    """What dsl.If reads on Kubeflow: the executor output's parameterValues and each outputFile."""
    import base64
    import json
    import os
    import subprocess
    import sys

    import tests.runner.toy as toy

    with open(toy.__file__, "rb") as handle:
        source = base64.b64encode(handle.read()).decode()
    verdict_file = tmp_path / "outputs" / "verdict"
    executor_input = {
        "inputs": {"parameterValues": {"answer": False}},
        "outputs": {"parameters": {"verdict": {"outputFile": str(verdict_file)},
                                   "score": {"outputFile": str(tmp_path / "outputs" / "score")}},
                    "outputFile": str(tmp_path / "out" / "executor_output.json")},
    }
    command = [sys.executable, "-m", "flywheel.kubeflow.entrypoint", "--executor_input", json.dumps(executor_input),
               "--component", "tests.runner.toy:decide", "--component-source-b64", source]
    result = subprocess.run(command, env=dict(os.environ, FLYWHEEL_ARTIFACT_MOUNT_ROOT=str(tmp_path)),
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "out" / "executor_output.json").read_text())
    assert written["parameterValues"] == {"verdict": False, "score": 0.1}
    assert verdict_file.read_text() == "false"

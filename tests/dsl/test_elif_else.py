"""Elif / Else after an If: exactly one arm runs locally, the others SKIPPED with the reason; compiled to dsl.Elif/Else."""

from __future__ import annotations

import pytest
import yaml

from flywheel import Elif, Else, If, pipeline
from flywheel.errors import PipelineDefinitionError
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.dsl.loop_toy import grade, note
from tests.runner.toy import consume, produce


def _graded(value: int):
    @pipeline(name="graded")
    def graded() -> None:
        score = grade(value=value)
        with If(score.values["score"] == "high"):
            note(text="high")
        with Elif(score.values["score"] == "mid"):
            data = produce(text="mid")
            consume(data=data.output)
        with Else():
            note(text="low")
        note(text="always")

    return graded


@pytest.mark.parametrize("value, runs", [(20, "high"), (7, "mid"), (1, "low")])
def test_exactly_one_arm_runs(home, value, runs):
    result = LocalRunner(home, max_workers=0).run(_graded(value))
    assert result.ok
    arms = {"high": {"note"}, "mid": {"produce", "consume"}, "low": {"note-2"}}
    for arm, tasks in arms.items():
        for task in tasks:
            assert result.states[task] == ("COMPLETE" if arm == runs else "SKIPPED"), (task, result.states)
    assert result.states["note-3"] == "COMPLETE"
    nodes = MetadataStore(home).latest_nodes(result.run)
    if runs == "high":
        assert nodes["produce"].error == ("skipped: condition grade.score == 'high' of an earlier branch is true "
                                          "(score = 'high'), so this Elif does not run")
        assert nodes["consume"].error == "skipped: upstream 'produce' was skipped"
        assert nodes["note-2"].error.startswith("skipped: condition grade.score == 'high' of an earlier branch is true")
    if runs == "mid":
        assert nodes["note"].error == "skipped: condition grade.score == 'high' is false (score = 'mid')"
        assert nodes["note-2"].error == ("skipped: condition grade.score == 'mid' of an earlier branch is true "
                                         "(score = 'mid'), so this Else does not run")
    if runs == "low":
        assert nodes["produce"].error == "skipped: condition grade.score == 'mid' is false (score = 'low')"
        assert nodes["note-2"].outputs["out"].properties["text"] == "low"


def test_chains_nest_inside_an_if(home):
    @pipeline(name="nested-chain")
    def nested_chain() -> None:
        outer = grade(value=7)
        with If(outer.values["score"] != "low"):
            inner = grade(value=20)
            with If(inner.values["score"] == "mid"):
                note(text="inner-mid")
            with Else():
                note(text="inner-else")

    result = LocalRunner(home, max_workers=0).run(nested_chain)
    assert result.ok
    assert (result.states["note"], result.states["note-2"]) == ("SKIPPED", "COMPLETE")


def test_elif_and_else_mistakes_are_definition_errors():
    with pytest.raises(PipelineDefinitionError, match=r"In pipeline 'lonely', Else must directly follow a `with If\(...\)`"):
        @pipeline(name="lonely")
        def lonely() -> None:
            grade()
            with Else():
                note()

    with pytest.raises(PipelineDefinitionError, match="no task created in between"):
        @pipeline(name="in-between")
        def in_between() -> None:
            score = grade()
            with If(score.values["score"] == "high"):
                note()
            note(text="between")
            with Elif(score.values["score"] == "mid"):
                note()

    with pytest.raises(PipelineDefinitionError, match="Elif must directly follow"):
        @pipeline(name="after-else")
        def after_else() -> None:
            score = grade()
            with If(score.values["score"] == "high"):
                note()
            with Else():
                note()
            with Elif(score.values["score"] == "mid"):
                note()

    with pytest.raises(PipelineDefinitionError, match="at the same depth"):
        @pipeline(name="deeper")
        def deeper() -> None:
            score = grade()
            with If(score.values["score"] == "high"):
                note()
                with Else():
                    note()

    with pytest.raises(PipelineDefinitionError, match="follows an If block that creates no task"):
        @pipeline(name="empty-if")
        def empty_if() -> None:
            score = grade()
            with If(score.values["score"] == "high"):
                pass
            with Else():
                note()

    with pytest.raises(PipelineDefinitionError, match=r"Elif takes a comparison of a task's output parameter"):
        @pipeline(name="bad-elif")
        def bad_elif(flag: bool = True) -> None:
            score = grade()
            with If(score.values["score"] == "high"):
                note()
            with Elif(flag == True):  # noqa: E712
                note()

    with pytest.raises(PipelineDefinitionError, match=r"depends on 'produce', which runs only if Elif grade.score == 'mid'; "
                                                      r"create 'consume' inside the same If block"):
        @pipeline(name="escapes-elif")
        def escapes_elif() -> None:
            score = grade()
            with If(score.values["score"] == "high"):
                note()
            with Elif(score.values["score"] == "mid"):
                data = produce()
            consume(data=data.output)


def test_elif_and_else_compile_to_kfp_branches(tmp_path):
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    out = tmp_path / "graded.yaml"
    compile_pipeline(_graded(7), str(out))
    components.load_component_from_file(str(out))
    doc = yaml.safe_load(out.read_text())
    json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    root = doc["root"]["dag"]["tasks"]
    (group,) = [k for k in root if k.startswith("condition-branches")]
    assert "grade" in root[group]["dependentTasks"]
    arms = doc["components"][root[group]["componentRef"]["name"]]["dag"]["tasks"]
    conditions = {v["taskInfo"]["name"]: v["triggerPolicy"]["condition"] for v in arms.values()}
    value = "inputs.parameter_values['pipelinechannel--grade-score']"
    assert conditions == {
        "if-grade-score": f"{value} == 'high'",
        "elif-grade-score": f"!({value} == 'high') && {value} == 'mid'",
        "else-grade-score": f"!({value} == 'high') && !({value} == 'mid')",
    }
    elif_body = doc["components"][next(v for v in arms.values() if v["taskInfo"]["name"] == "elif-grade-score")
                                   ["componentRef"]["name"]]["dag"]["tasks"]
    assert set(elif_body) == {"produce", "consume"}

"""flywheel.kubeflow.container_run and `flywheel container-run` without a container engine.

The real runs in images (podman) are in tests/containers; here: argument checks that must fail
before any engine is contacted, the executor-input gap the helper closes in kfp.local, and
compiled pipelines with dsl.If run by the subprocess runner (tasks as host processes).
"""

from __future__ import annotations

import argparse
import pathlib

import pytest

from flywheel.cli import container_commands
from flywheel.kubeflow import container_run
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.kubeflow.container_run import ContainerRunError, run_compiled_pipeline
from flywheel.pipeline_file import load_pipeline

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def training_ir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / "training.yaml"
    compile_pipeline(load_pipeline(str(REPO / "pipelines" / "training.py")), str(path), conditions=False)
    return path


def _gated_ir(path):
    """A compiled toy pipeline: ``consume`` under If(verdict == True), a nested If(score != 0.5) inside."""
    from flywheel import If, pipeline
    from tests.runner.toy import consume, decide, produce

    @pipeline(name="gated")
    def gated(answer: bool = True) -> None:
        verdict = decide(answer=answer)
        data = produce(text="gated")
        with If(verdict.values["verdict"] == True):  # noqa: E712 - builds a Condition
            shipped = consume(data=data.output)
            with If(verdict.values["score"] != 0.5):
                consume(data=data.output).after(shipped)
        consume(data=data.output)  # outside: runs either way

    compile_pipeline(gated, str(path))
    return path


@pytest.mark.parametrize("answer", [True, False])
def test_a_condition_runs_or_skips_the_gated_tasks_and_their_sub_dag(tmp_path, monkeypatch, answer):
    monkeypatch.setattr("flywheel.images.connect", lambda **_: pytest.fail("the subprocess runner needs no engine"))
    ir = _gated_ir(tmp_path / "gated.yaml")
    events = []
    run_compiled_pipeline(
        ir, pipeline_root=tmp_path / "root", arguments={"answer": answer}, runner="subprocess",
        on_task=lambda task, state, detail: events.append((task, state, detail)),
    )
    final = {task: state for task, state, _ in events if state != "RUNNING"}
    inside = "SUCCEEDED" if answer else "SKIPPED"
    assert final == {
        "decide": "SUCCEEDED", "produce": "SUCCEEDED", "consume-3": "SUCCEEDED",
        "condition-1": inside, "consume": inside, "condition-2": inside, "consume-2": inside,
    }
    consumed = {p.parent.parent.name for p in (tmp_path / "root").rglob("metrics.txt")}  # consume's output file
    assert consumed == ({"consume", "consume-2", "consume-3"} if answer else {"consume-3"})
    if not answer:
        reason = next(detail for task, state, detail in events if task == "condition-1")
        assert "== true is false" in reason and "pipelinechannel--decide-verdict=False" in reason
        assert next(d for t, s, d in events if t == "consume") == "its group condition-1 was skipped"


def test_a_task_waiting_for_a_skipped_one_is_skipped_and_a_failed_task_fails_the_run(tmp_path):
    import yaml

    from flywheel import If, pipeline
    from tests.runner.toy import consume, decide, produce

    @pipeline(name="chained")
    def chained(fail: str = "") -> None:
        verdict = decide(answer=False)
        with If(verdict.values["verdict"] == True):  # noqa: E712
            produce()
        consume(data=produce(text="x").output, fail_if_exists=fail)

    ir = tmp_path / "chained.yaml"
    compile_pipeline(chained, str(ir))
    # flywheel's DSL refuses a task outside an If that waits for one inside; KFP's IR can say it
    spec = yaml.safe_load(ir.read_text())
    spec["root"]["dag"]["tasks"]["consume"]["dependentTasks"].append("condition-1")
    waiting = tmp_path / "waiting.yaml"
    waiting.write_text(yaml.safe_dump(spec))
    events = []
    run_compiled_pipeline(waiting, pipeline_root=tmp_path / "ok", runner="subprocess",
                          on_task=lambda *event: events.append(event))
    assert ("condition-1", "SKIPPED") in [e[:2] for e in events]
    assert ("consume", "SKIPPED", "upstream task condition-1 was skipped") in events
    assert ("produce-2", "SUCCEEDED") in [e[:2] for e in events]
    assert not list((tmp_path / "ok").rglob("metrics.txt"))

    marker = tmp_path / "exists"
    marker.write_text("")
    failed = []
    with pytest.raises(ContainerRunError, match="finished with status FAILURE.*consume"):
        run_compiled_pipeline(ir, pipeline_root=tmp_path / "bad", arguments={"fail": str(marker)}, runner="subprocess",
                              on_task=lambda *event: failed.append(event[:2]))
    assert ("consume", "FAILED") in failed and ("condition-1", "SKIPPED") in failed


@pytest.mark.parametrize(
    ("condition", "values", "holds"),
    [
        ("inputs.parameter_values['v'] == true", {"v": True}, True),
        ("inputs.parameter_values['v'] == true", {"v": "false"}, False),
        ("int(inputs.parameter_values['n']) == 3", {"n": 3.0}, True),
        ("inputs.parameter_values['s'] != 'heads'", {"s": "tails"}, True),
        ("!(inputs.parameter_values['s'] == 'a') && inputs.parameter_values['s'] == 'b'", {"s": "b"}, True),
        ("!(inputs.parameter_values['s'] == 'a') && inputs.parameter_values['s'] == 'b'", {"s": "a"}, False),
        ("inputs.parameter_values['x'] >= double(2)", {"x": 2.5}, True),
        ("inputs.parameter_values['x'] < 1 || inputs.parameter_values['s'] == 'go'", {"x": 5, "s": "go"}, True),
    ],
)
def test_conditions_kfp_compiles_are_evaluated(condition, values, holds):
    assert container_run.parse_condition(condition).holds(values) is holds


def test_an_unreadable_condition_or_a_missing_parameter_is_a_clear_error():
    with pytest.raises(ContainerRunError, match=r"Task 't' runs under the condition .*cannot read.*--no-conditions"):
        container_run.parse_condition("size(inputs.parameter_values['v']) > 1", "t")
    with pytest.raises(ContainerRunError, match=r"reads input parameter 'v', which the task does not have"):
        container_run.parse_condition("inputs.parameter_values['v'] == true").holds({"w": True})
    with pytest.raises(ContainerRunError, match=r"compares str 'yes' with bool True"):
        container_run.parse_condition("inputs.parameter_values['v'] == true").holds({"v": "yes"})


def test_the_training_pipeline_with_its_condition_is_accepted_and_no_conditions_still_compiles_flat(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setattr("flywheel.images.connect", lambda **_: pytest.fail("engine contacted"))
    conditional = tmp_path / "conditional.yaml"
    compile_pipeline(load_pipeline(str(REPO / "pipelines" / "training.py")), str(conditional))
    with pytest.raises(ContainerRunError, match=r"has no parameters \['epoch'\]"):  # got past the condition check
        run_compiled_pipeline(conditional, pipeline_root=tmp_path / "root", arguments={"epoch": 1})
    with pytest.raises(ContainerRunError, match="runner must be one of"):
        run_compiled_pipeline(conditional, pipeline_root=tmp_path / "root", runner="kubernetes")

    flat = tmp_path / "flat.yaml"  # what --no-conditions writes: push is a plain task after is_blessed
    compile_pipeline(load_pipeline(str(REPO / "pipelines" / "training.py")), str(flat), conditions=False)
    tasks = yaml.safe_load(flat.read_text())["root"]["dag"]["tasks"]
    assert not any("triggerPolicy" in task for task in tasks.values())
    assert "is-blessed" in tasks["push"]["dependentTasks"] and "evaluate" in tasks["push"]["dependentTasks"]


def test_unknown_parameters_are_rejected_before_any_engine_is_contacted(training_ir, tmp_path, monkeypatch):
    monkeypatch.setattr("flywheel.images.connect", lambda **_: pytest.fail("engine contacted"))
    with pytest.raises(ContainerRunError, match=r"has no parameters \['epoch'\]; it takes \[.*'data_path'"):
        run_compiled_pipeline(training_ir, pipeline_root=tmp_path / "root", arguments={"epoch": 3})


def test_a_file_that_is_not_ir_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("not: [a pipeline")
    with pytest.raises(ContainerRunError, match="Cannot load the compiled pipeline"):
        run_compiled_pipeline(bad, pipeline_root=tmp_path / "root")


def test_optional_inputs_nobody_feeds_are_left_out_of_the_executor_input(training_ir, tmp_path):
    # kfp.local 2.13 raises KeyError for them; the KFP launcher omits them (validate's curated_schema).
    from kfp import components
    from kfp.local import executor_input_utils

    validate_spec = components.load_component_from_file(str(training_ir)).pipeline_spec.components["comp-validate"]
    with container_run._task_containers(container_run.TaskContainerOptions()):
        executor_input = executor_input_utils.construct_executor_input(
            component_spec=validate_spec, arguments={"examples": _dataset(tmp_path)}, task_root=str(tmp_path),
            block_input_artifact=False,
        )
    assert set(executor_input.inputs.artifacts) == {"examples"}
    # Outside the block kfp.local is itself again.
    with pytest.raises(KeyError, match="curated_schema"):
        executor_input_utils.construct_executor_input(
            component_spec=validate_spec, arguments={"examples": _dataset(tmp_path)}, task_root=str(tmp_path),
            block_input_artifact=False,
        )


def _dataset(tmp_path):
    from kfp import dsl

    return dsl.Dataset(name="examples", uri=str(tmp_path / "examples"), metadata={})


def test_cli_rejects_a_missing_ir_file(tmp_path):
    root = argparse.ArgumentParser(prog="flywheel")
    container_commands.register(root.add_subparsers(dest="command"))
    args = root.parse_args(["container-run", str(tmp_path / "nope.yaml"), "--pipeline-root", str(tmp_path)])
    with pytest.raises(ContainerRunError, match="does not exist"):
        args.handler(args)
    assert container_commands._json_or_text("[16, 8]") == [16, 8]
    assert container_commands._json_or_text("species") == "species"


def test_cli_runs_a_compiled_pipeline_with_the_subprocess_runner(tmp_path, capsys):
    ir = _gated_ir(tmp_path / "gated.yaml")
    root = argparse.ArgumentParser(prog="flywheel")
    container_commands.register(root.add_subparsers(dest="command"))
    args = root.parse_args(["container-run", str(ir), "--pipeline-root", str(tmp_path / "root"),
                            "--runner", "subprocess", "-p", "answer=false"])
    assert args.handler(args) == 0
    assert "Pipeline finished" in capsys.readouterr().out
    assert {p.parent.parent.name for p in (tmp_path / "root").rglob("metrics.txt")} == {"consume-3"}

"""`-p TASK.PARAM=VALUE` sets any task's parameter, exposed by the pipeline or not: checked against
the component's own type and rules, applied to local runs (and their resume) and compiled as a
constant for Kubeflow."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from flywheel import pipeline
from flywheel.errors import ParameterError
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.runner.toy import consume, produce


@pipeline(name="chain")
def chain(text: str = "hello"):
    data = produce(text=text)
    consume(data=data.output)


def _read(result, task, output, name):
    with open(os.path.join(result.outputs[task][output].uri, name), encoding="utf-8") as handle:
        return handle.read()


def test_task_values_are_checked_and_coerced_by_the_components_own_parameter():
    values = chain.resolve_parameters({"produce.sleep_s": "0.01", "text": "x"})
    assert values == {"text": "x", "produce.sleep_s": 0.01}
    with pytest.raises(ParameterError, match=r"-p ingest.path: pipeline 'chain' has no task 'ingest'. Its tasks are: produce, consume"):
        chain.resolve_parameters({"ingest.path": "x"})
    with pytest.raises(ParameterError, match=r"-p consume.epochs: task 'consume' \(consume\) has no parameter 'epochs'. Its parameters are: sleep_s, fail_if_exists"):
        chain.resolve_parameters({"consume.epochs": "3"})
    with pytest.raises(ParameterError, match=r"-p produce.sleep_s: .*float"):
        chain.resolve_parameters({"produce.sleep_s": "soon"})


def test_a_local_run_uses_them_records_them_and_resume_keeps_them(home, tmp_path):
    runner = LocalRunner(home, max_workers=0)
    flag = tmp_path / "fail"
    flag.write_text("")
    first = runner.run(chain, {"produce.text": "from the task", "consume.fail_if_exists": str(flag)})
    assert not first.ok and "flag file" in first.errors["consume"]
    assert _read(first, "produce", "out", "data.txt") == "from the task"  # the pipeline passed its own `text`
    run = MetadataStore(home).get_run(first.run.run_id)
    assert run.parameters["produce.text"] == "from the task"
    flag.unlink()
    resumed = runner.resume(chain, first.run.run_id)
    assert resumed.ok, resumed.errors
    assert _read(resumed, "consume", "out", "metrics.txt") == "FROM THE TASK"


def test_rules_declared_by_a_shipped_component_hold_for_task_values():
    from flywheel.pipeline_file import load_pipeline

    training = load_pipeline("pipelines/training.py")
    with pytest.raises(ParameterError, match=r"-p train.dropout: The 'dropout' parameter of train must be a float in \[0, 1\)"):
        training.resolve_parameters({"train.dropout": "1.5"})


def test_compile_makes_a_task_value_a_constant_of_that_task(tmp_path, flywheel_cmd):
    out = tmp_path / "training.yaml"
    result = subprocess.run(
        [*flywheel_cmd, "compile", "pipelines/training.py", "-o", str(out), "-p", "train.early_stopping_patience=7"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(out.read_text())
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    train = next(d["tasks"]["train"] for d in dags if "train" in d.get("tasks", {}))
    assert train["inputs"]["parameters"]["early_stopping_patience"]["runtimeValue"]["constant"] == 7
    assert "train.early_stopping_patience" not in spec["root"]["inputDefinitions"]["parameters"]

"""`-p NAME=VALUE` where NAME is no pipeline parameter but one task's: it sets that task's parameter
(as `-p TASK.NAME`); shipped pipelines declare only what they add; `flywheel run --list-params`."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from flywheel import Collected, ParallelFor, pipeline
from flywheel.dsl.pipeline import PipelineParam
from flywheel.errors import ParameterError
from flywheel.metadata import MetadataStore
from flywheel.pipeline_file import load_pipeline
from flywheel.runner import LocalRunner
from tests.conftest import REPO
from tests.dsl.loop_toy import fit, make_data, pick_best
from tests.runner.toy import consume, produce


@pipeline(name="pair")
def pair(text: str = "hello"):
    data = produce(text=text)
    consume(data=data.output)


@pipeline(name="sweep")
def sweep(seeds: list = [1, 2]):  # noqa: B006
    data = make_data()
    with ParallelFor(seeds) as seed:
        trained = fit(data=data.output, seed=seed)
    pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))


def test_a_name_only_one_task_has_sets_that_task():
    assert pair.resolve_parameters({"fail_if_exists": "/nowhere"}) == {"text": "hello", "consume.fail_if_exists": "/nowhere"}
    assert pair.resolve_parameters({"text": "x"}) == {"text": "x"}  # a pipeline parameter wins


def test_a_name_several_tasks_have_is_refused_with_the_forms_to_choose_from():
    with pytest.raises(ParameterError, match=r"-p sleep_s: pipeline 'pair' has no parameter 'sleep_s', and 2 of its "
                       r"tasks have one \(produce, consume\); say which: -p produce.sleep_s=, -p consume.sleep_s="):
        pair.resolve_parameters({"sleep_s": "1"})
    with pytest.raises(ParameterError, match="-p fail_if_exists and -p consume.fail_if_exists set the same parameter"):
        pair.resolve_parameters({"fail_if_exists": "a", "consume.fail_if_exists": "b"})


def test_a_name_no_task_has_lists_pipeline_and_task_parameters():
    with pytest.raises(ParameterError) as caught:
        pair.resolve_parameters({"epochs": "3"})
    message = str(caught.value)
    assert "Pipeline 'pair' has no parameter 'epochs', and none of its tasks has one" in message
    assert "Its parameters are: text (str)" in message
    assert "produce: text, sleep_s; consume: sleep_s, fail_if_exists" in message


def test_shorthand_values_are_checked_by_the_components_own_parameter():
    with pytest.raises(ParameterError, match=r"-p consume.fail_if_exists: .*str"):
        pair.resolve_parameters({"fail_if_exists": 3})


def test_a_changed_task_value_reruns_that_task_and_what_follows_not_what_precedes(home):
    runner = LocalRunner(home, max_workers=0)
    assert runner.run(pair).ok
    changed = runner.run(pair, {"fail_if_exists": "/no/such/flag"})
    assert changed.ok, changed.errors
    assert changed.states == {"produce": "CACHED", "consume": "COMPLETE"}
    assert MetadataStore(home).get_run(changed.run.run_id).parameters == {
        "text": "hello", "consume.fail_if_exists": "/no/such/flag"
    }
    again = runner.run(pair, {"consume.fail_if_exists": "/no/such/flag"})  # the same value, spelt out: cached
    assert again.states == {"produce": "CACHED", "consume": "CACHED"}


def test_shorthand_reaches_every_iteration_of_a_loop_but_not_what_the_loop_feeds(home):
    result = LocalRunner(home, max_workers=0).run(sweep, {"rate": "0.25"})
    assert result.ok, result.errors
    nodes = MetadataStore(home).latest_nodes(result.run)
    assert [nodes[f"fit[{i}]"].parameters["rate"] for i in range(2)] == [0.25, 0.25]
    assert nodes["pick_best"].outputs["report"].properties["accuracies"] == [0.75, 1.0]  # 0.5 + seed * 0.25
    with pytest.raises(ParameterError, match=r"-p fit.seed: task 'fit' gets 'seed' from its ParallelFor"):
        sweep.resolve_parameters({"fit.seed": "3"})
    with pytest.raises(ParameterError, match="has no parameter 'accuracies', and none of its tasks has one"):
        sweep.resolve_parameters({"accuracies": "[1]"})  # pick_best's is Collected: not addressable


SHIPPED = sorted(p for p in glob.glob(os.path.join(REPO, "pipelines", "*.py")) if not p.endswith("__init__.py"))


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_a_shipped_pipeline_declares_only_what_it_adds(path):
    """No pipeline parameter just forwards one task's parameter of the same name: those are reached
    with -p TASK.PARAM (or -p PARAM) and keep the component's default."""
    pipe = load_pipeline(path)
    feeds: dict[str, list[tuple[str, str]]] = {name: [] for name in pipe.parameters}
    for task in pipe:
        for name, value in task.parameters.items():
            if isinstance(value, PipelineParam):
                feeds[value.name].append((task.id, name))
    for name, fed in feeds.items():
        assert fed, f"{name} feeds no task"
        forwards = len(fed) == 1 and fed[0][1] == name
        assert not forwards or name in ("data_path", "registry", "model_name"), (name, fed)
    assert len(pipe.parameters) <= 5


def test_shipped_pipelines_take_component_parameters_by_name():
    training = load_pipeline(os.path.join(REPO, "pipelines", "training.py"))
    values = training.resolve_parameters({"epochs": "5", "beam_args": '["--direct_num_workers=2"]', "span_count": "2"})
    assert values["train.epochs"] == 5 and values["beam_args"] == ["--direct_num_workers=2"]  # the pipeline's
    for task in ("validate", "transform"):
        assert training.task_parameters(task, values)["beam_args"] == ["--direct_num_workers=2"]
    assert values["ingest.span_count"] == 2
    assert training.task_parameters("train", values)["epochs"] == 100  # the component's own, until overridden
    assert training.with_task_overrides(values).task_parameters("train", values)["epochs"] == 5
    tuning = load_pipeline(os.path.join(REPO, "pipelines", "tuning.py"))
    with pytest.raises(ParameterError, match=r"say which: -p tune.epochs=, -p train.epochs="):
        tuning.resolve_parameters({"epochs": "5"})


def test_list_params_shows_each_task_value_and_where_it_comes_from(capsys):
    from flywheel.cli.main import main

    assert main(["run", os.path.join(REPO, "pipelines", "digits.py"), "--list-params", "-p", "epochs=3",
                 "-p", "transform.normalize=true"]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): " ".join(line.split()[2:]) for line in out.splitlines() if line.strip()}
    assert rows[("data_path", "str")] == "pipeline default sklearn-digits"
    assert rows[("train", "epochs")] == "int -p 3"
    assert rows[("train", "dropout")] == "float pipeline constant 0.25"
    assert rows[("train", "batch_size")] == "int component default 32"
    assert rows[("train", "seed")] == "int pipeline parameter seed 0"
    assert rows[("transform", "normalize")] == "bool -p true"
    assert rows[("ingest", "path")] == "str pipeline parameter data_path sklearn-digits"
    assert main(["run", os.path.join(REPO, "pipelines", "digits.py"), "--list-params", "-p", "validation_fraction=0.1"]) == 1
    assert "say which: -p transform.validation_fraction=, -p train.validation_fraction=" in capsys.readouterr().err


def test_compile_takes_a_shorthand_as_that_tasks_constant(tmp_path):
    from flywheel.cli.main import main

    out = tmp_path / "training.yaml"
    assert main(["compile", os.path.join(REPO, "pipelines", "training.py"), "-o", str(out), "-p", "epochs=7",
                 "--fix-defaults"]) == 0
    spec = yaml.safe_load(out.read_text())
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    train = next(d["tasks"]["train"] for d in dags if "train" in d.get("tasks", {}))
    assert train["inputs"]["parameters"]["epochs"]["runtimeValue"]["constant"] == 7
    assert spec["root"].get("inputDefinitions", {}).get("parameters", {}) == {}  # --fix-defaults: nothing left


def test_resuming_a_run_whose_recorded_parameters_no_longer_fit_the_pipeline_says_so(home, tmp_path):
    from flywheel.errors import RunError

    @pipeline(name="evolving")
    def before(sleep_s: float = 0.0, fail_if_exists: str = ""):
        data = produce(sleep_s=sleep_s)
        consume(data=data.output, fail_if_exists=fail_if_exists)

    @pipeline(name="evolving")
    def after():  # sleep_s is no pipeline parameter any more, and both tasks have one
        consume(data=produce().output)

    flag = tmp_path / "fail"
    flag.write_text("")
    runner = LocalRunner(home, max_workers=0)
    failed = runner.run(before, {"fail_if_exists": str(flag)})
    assert not failed.ok
    with pytest.raises(RunError, match=r"cannot be resumed with this pipeline file: .*say which: -p produce.sleep_s="):
        runner.resume(after, failed.run.run_id)
    assert MetadataStore(home).get_run(failed.run.run_id).state == "FAILED"  # not claimed
    resumed = runner.resume(before, failed.run.run_id)  # the run's own pipeline still resumes
    assert not resumed.ok and "flag file" in resumed.errors["consume"]

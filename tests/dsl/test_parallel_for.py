"""ParallelFor and Collected: checked when built, run locally as one node per item, compiled to dsl.ParallelFor."""

from __future__ import annotations

import pytest
import yaml

import flywheel.runner.runner as runner_module
from flywheel import Collected, ExitHandler, If, ParallelFor, pipeline
from flywheel.errors import PipelineDefinitionError
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.dsl.loop_toy import fit, list_seeds, make_data, note, pick_best, read_model, report_status
from tests.runner.toy import decide

CONFIGS = [{"seed": 1, "rate": 0.1}, {"seed": 3, "rate": 0.05}, {"seed": 2, "rate": 0.2}]


def _sweep(configs=CONFIGS, parallelism=0, sleep_s=0.0, fail_on_seed=-1):
    @pipeline(name="sweep")
    def sweep() -> None:
        data = make_data(text="rows")
        with ParallelFor(configs, parallelism=parallelism) as config:
            trained = fit(data=data.output, seed=config["seed"], rate=config["rate"], sleep_s=sleep_s,
                          fail_on_seed=fail_on_seed)
        pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))

    return sweep


def test_each_item_runs_as_its_own_node_and_the_fan_in_gets_every_result_in_order(home):
    result = LocalRunner(home, max_workers=0).run(_sweep())
    assert result.ok, result.errors
    assert {t: s for t, s in result.states.items() if t.startswith("fit")} == {
        "fit[0]": "COMPLETE", "fit[1]": "COMPLETE", "fit[2]": "COMPLETE"}
    nodes = MetadataStore(home).latest_nodes(result.run)
    assert [nodes[f"fit[{i}]"].parameters["seed"] for i in range(3)] == [1, 3, 2]
    assert nodes["fit[1]"].parameters["rate"] == 0.05
    assert nodes["fit[2]"].details["loop"] == {"task": "fit", "index": 2, "item": {"seed": 2, "rate": 0.2}}
    assert nodes["fit[0]"].outputs["model"].uri.endswith("/fit[0]/model")
    report = nodes["pick_best"].outputs["report"].properties
    assert report["contents"] == ["rows:1", "rows:3", "rows:2"]  # iteration order, not finishing order
    assert report["accuracies"] == [0.6, 0.65, 0.9]
    assert nodes["pick_best"].details["output_values"] == {"best": 2}
    # every collected model is an input event of the fan-in, in order
    assert [nodes["pick_best"].inputs[f"models[{i}]"].id for i in range(3)] == [
        nodes[f"fit[{i}]"].outputs["model"].id for i in range(3)]


def test_each_iteration_is_cached_on_its_own(home):
    LocalRunner(home, max_workers=0).run(_sweep())
    grown = LocalRunner(home, max_workers=0).run(_sweep(CONFIGS + [{"seed": 5, "rate": 0.1}]))
    assert grown.ok
    assert [grown.states[f"fit[{i}]"] for i in range(4)] == ["CACHED", "CACHED", "CACHED", "COMPLETE"]
    assert grown.states["pick_best"] == "COMPLETE"  # its input list changed
    report = MetadataStore(home).latest_nodes(grown.run)["pick_best"].outputs["report"].properties
    assert report["contents"] == ["rows:1", "rows:3", "rows:2", "rows:5"]


def test_an_empty_list_runs_no_iteration_and_the_fan_in_gets_empty_lists(home):
    @pipeline(name="by-parameter")
    def by_parameter(seeds: list = [1, 2]) -> None:
        data = make_data()
        with ParallelFor(seeds) as seed:
            trained = fit(data=data.output, seed=seed)
        pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))

    result = LocalRunner(home, max_workers=0).run(by_parameter, {"seeds": "[]"})
    assert result.ok
    assert result.states == {"make_data": "COMPLETE", "pick_best": "COMPLETE"}
    node = MetadataStore(home).latest_nodes(result.run)["pick_best"]
    assert node.outputs["report"].properties["contents"] == [] and node.details["output_values"] == {"best": -1}

    two = LocalRunner(home, max_workers=0).run(by_parameter)  # the default, [1, 2]
    assert two.ok and [two.states[f"fit[{i}]"] for i in range(2)] == ["COMPLETE", "COMPLETE"]


def test_a_loop_over_a_tasks_list_output(home):
    @pipeline(name="listed")
    def listed() -> None:
        data = make_data()
        seeds = list_seeds(count=2)
        with ParallelFor(seeds.values["seeds"]) as seed:
            trained = fit(data=data.output, seed=seed)
        pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))

    result = LocalRunner(home, max_workers=0).run(listed)
    assert result.ok
    nodes = MetadataStore(home).latest_nodes(result.run)
    assert nodes["list_seeds"].details["output_values"] == {"seeds": [1, 2]}
    assert nodes["pick_best"].outputs["report"].properties["contents"] == ["data:1", "data:2"]


def test_a_condition_inside_a_loop_is_decided_per_iteration(home):
    @pipeline(name="per-item")
    def per_item() -> None:
        with ParallelFor([True, False]) as answer:
            verdict = decide(answer=answer)
            with If(verdict.values["verdict"] == True):  # noqa: E712
                note(text="shipped")

    result = LocalRunner(home, max_workers=0).run(per_item)
    assert result.ok
    assert {t: s for t, s in result.states.items() if "[" in t} == {
        "decide[0]": "COMPLETE", "decide[1]": "COMPLETE", "note[0]": "COMPLETE", "note[1]": "SKIPPED"}
    skipped = MetadataStore(home).latest_nodes(result.run)["note[1]"]
    assert skipped.error == "skipped: condition decide.verdict == True is false (verdict = False)"


def test_parallelism_bounds_the_iterations_running_at_once(home, monkeypatch):
    monkeypatch.setattr(runner_module, "fork_unsafe_modules", lambda: [])  # toy components: forking is safe
    result = LocalRunner(home, max_workers=3).run(_sweep(parallelism=1, sleep_s=0.3))
    assert result.ok, result.errors
    nodes = MetadataStore(home).latest_nodes(result.run)
    spans = sorted((n.outputs["model"].properties["started"], n.outputs["model"].properties["ended"])
                   for t, n in nodes.items() if t.startswith("fit["))
    assert len(spans) == 3
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))  # one at a time


def test_a_failed_iteration_fails_the_run_and_the_fan_in_does_not_run(home):
    result = LocalRunner(home, max_workers=0).run(_sweep(fail_on_seed=3))
    assert not result.ok
    assert result.states["fit[1]"] == "FAILED" and result.states["fit[0]"] == result.states["fit[2]"] == "COMPLETE"
    assert result.states["pick_best"] == "SKIPPED"
    assert set(result.errors) == {"fit[1]"} and "seed 3 is the one told to fail" in result.errors["fit[1]"]


def test_a_failure_before_the_loop_skips_every_iteration_and_the_fan_in(home, tmp_path):
    from tests.runner.toy import consume, produce

    flag = tmp_path / "fail"
    flag.write_text("x")

    @pipeline(name="upstream-fails")
    def upstream_fails() -> None:
        checked = consume(data=produce().output, fail_if_exists=str(flag))
        with ParallelFor([1, 2]):
            read = read_model(model=checked.output)
        note(text="after").after(read)

    result = LocalRunner(home, max_workers=0).run(upstream_fails)
    assert not result.ok and set(result.errors) == {"consume"}
    assert result.states == {"produce": "COMPLETE", "consume": "FAILED", "read_model[0]": "SKIPPED",
                             "read_model[1]": "SKIPPED", "note": "SKIPPED"}


def test_an_exit_handler_waits_for_every_iteration_and_names_the_failed_one(home):
    @pipeline(name="guarded-loop")
    def guarded_loop() -> None:
        with ExitHandler(report_status()):
            data = make_data()
            with ParallelFor([1, 2, 3]) as seed:
                fit(data=data.output, seed=seed, fail_on_seed=2)

    result = LocalRunner(home, max_workers=0).run(guarded_loop)
    assert not result.ok and result.states["report_status"] == "COMPLETE"
    nodes = MetadataStore(home).latest_nodes(result.run)
    status = nodes["report_status"].outputs["out"].properties["status"]
    assert status["state"] == "FAILED" and status["error"]["message"] == "fit[1]: ValueError: seed 2 is the one told to fail"
    assert nodes["report_status"].start_ms >= max(nodes[f"fit[{i}]"].end_ms for i in (0, 1, 2))


def test_resuming_reruns_the_failed_iteration_and_serves_the_others_from_the_cache(home, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("x")

    @pipeline(name="resumable")
    def resumable() -> None:
        data = make_data()
        with ParallelFor([1, 2, 3]) as seed:
            trained = fit(data=data.output, seed=seed, fail_on_seed=2, while_exists=str(flag))
        pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))

    runner = LocalRunner(home, max_workers=0)
    failed = runner.run(resumable)
    assert not failed.ok and failed.states["fit[1]"] == "FAILED"
    flag.unlink()
    resumed = runner.resume(resumable, failed.run.run_id)
    assert resumed.ok and resumed.run.run_id == failed.run.run_id
    assert [resumed.states[f"fit[{i}]"] for i in range(3)] == ["CACHED", "COMPLETE", "CACHED"]
    report = MetadataStore(home).latest_nodes(resumed.run)["pick_best"].outputs["report"].properties
    assert report["contents"] == ["data:1", "data:2", "data:3"]


def test_an_item_that_does_not_fit_the_parameter_fails_the_run_naming_it(home):
    @pipeline(name="typed")
    def typed(seeds: list = [1]) -> None:
        data = make_data()
        with ParallelFor(seeds) as seed:
            fit(data=data.output, seed=seed)

    result = LocalRunner(home, max_workers=0).run(typed, {"seeds": '[1, "two"]'})
    assert not result.ok
    assert "parameter 'seed' of 'fit' is int but item 1 of ParallelFor over pipeline parameter 'seeds' gives 'two'" \
        in result.errors["fit"]


def test_loop_mistakes_are_definition_errors():
    with pytest.raises(PipelineDefinitionError, match=r"'count', which is int; annotate it `count: list`"):
        @pipeline(name="not-a-list")
        def not_a_list(count: int = 3) -> None:
            with ParallelFor(count):
                make_data()

    with pytest.raises(PipelineDefinitionError, match=r"which is bool; declare it `verdict: Output\[list\]`"):
        @pipeline(name="bool-output")
        def bool_output() -> None:
            with ParallelFor(decide().values["verdict"]):
                make_data()

    with pytest.raises(PipelineDefinitionError, match="iterates a list.*got str 'abc'"):
        @pipeline(name="string")
        def string() -> None:
            with ParallelFor("abc"):
                make_data()

    with pytest.raises(PipelineDefinitionError,
                       match=r"In pipeline 'escaped', component 'fit': parameter 'seed' gets the item of ParallelFor "
                             r"over \[1, 2\], outside that loop's `with` block"):
        @pipeline(name="escaped")
        def escaped() -> None:
            data = make_data()
            with ParallelFor([1, 2]) as seed:
                make_data()
            fit(data=data.output, seed=seed)

    with pytest.raises(PipelineDefinitionError, match=r"parameter 'seed' expects int but the item .* takes the value 'x'"):
        @pipeline(name="literal-type")
        def literal_type() -> None:
            data = make_data()
            with ParallelFor([1, "x"]) as seed:
                fit(data=data.output, seed=seed)

    with pytest.raises(PipelineDefinitionError, match=r"item\['seed'\] .*item 1 \(\{\"rate\": 1\}\) is not a dict with key"):
        @pipeline(name="missing-key")
        def missing_key() -> None:
            with ParallelFor([{"seed": 1}, {"rate": 1}]) as config:
                make_data(text=config["seed"])

    with pytest.raises(PipelineDefinitionError,
                       match=r"In pipeline 'not-looped', task 'pick_best' takes Collected output 'model' .* of task "
                             r"'fit', which is not inside a ParallelFor"):
        @pipeline(name="not-looped")
        def not_looped() -> None:
            trained = fit(data=make_data().output)
            pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))

    with pytest.raises(PipelineDefinitionError, match="inside the same ParallelFor over \\[1\\]; Collected is for a task after"):
        @pipeline(name="same-loop")
        def same_loop() -> None:
            data = make_data()
            with ParallelFor([1]) as seed:
                trained = fit(data=data.output, seed=seed)
                pick_best(models=Collected(trained.outputs["model"]), accuracies=[])

    with pytest.raises(PipelineDefinitionError,
                       match=r"task 'read_model' takes output 'model' \(input 'model'\) of task 'fit', which runs once per "
                             r"item of ParallelFor over \[1, 2\]\. Pass Collected\(fit.outputs\[...\]\)"):
        @pipeline(name="direct")
        def direct() -> None:
            data = make_data()
            with ParallelFor([1, 2]) as seed:
                trained = fit(data=data.output, seed=seed)
            read_model(model=trained.outputs["model"])

    with pytest.raises(PipelineDefinitionError, match=r"input 'models' is Input\[List\[Metrics\]\].*pass Collected\(task.outputs\['name'\]\)\. "
                                                      r"Got output 'model' of task 'fit' \(one artifact\)"):
        @pipeline(name="plain-to-list")
        def plain_to_list() -> None:
            trained = fit(data=make_data().output)
            pick_best(models=trained.outputs["model"], accuracies=[])

    with pytest.raises(PipelineDefinitionError, match="loops do not nest in flywheel yet"):
        @pipeline(name="nested")
        def nested() -> None:
            with ParallelFor([1]):
                with ParallelFor([2]):
                    make_data()

    with pytest.raises(PipelineDefinitionError, match="is a list; a condition tests a bool, int, float or str output"):
        @pipeline(name="list-condition")
        def list_condition() -> None:
            with If(list_seeds().values["seeds"] == [1]):
                make_data()

    with pytest.raises(PipelineDefinitionError, match=r"takes one key that is a Python name .*got item\['a-b'\]"):
        @pipeline(name="bad-key")
        def bad_key() -> None:
            with ParallelFor([{"a-b": 1}]) as config:
                make_data(text=config["a-b"])

    with pytest.raises(PipelineDefinitionError, match="parallelism is the most iterations at once, an int >= 0"):
        @pipeline(name="negative")
        def negative() -> None:
            with ParallelFor([1], parallelism=-1):
                make_data()


def test_after_may_wait_for_every_iteration(home):
    @pipeline(name="waits")
    def waits() -> None:
        data = make_data()
        with ParallelFor([1, 2]) as seed:
            trained = fit(data=data.output, seed=seed)
        note(text="done").after(trained)

    result = LocalRunner(home, max_workers=0).run(waits)
    assert result.ok and result.states["note"] == "COMPLETE"
    nodes = MetadataStore(home).latest_nodes(result.run)
    assert nodes["note"].start_ms >= max(nodes[f"fit[{i}]"].end_ms for i in range(2))


def _load_ir(path):
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    components.load_component_from_file(str(path))  # kfp's own loader accepts it
    doc = yaml.safe_load(path.read_text())
    json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    return doc


def test_parallel_for_compiles_to_kfp_iterators_and_collected_inputs(tmp_path):
    @pipeline(name="loops")
    def loops(seeds: list = [1, 2]) -> None:
        data = make_data()
        with ParallelFor(CONFIGS, parallelism=2) as config:
            trained = fit(data=data.output, seed=config["seed"], rate=config["rate"])
        pick_best(models=Collected(trained.outputs["model"]), accuracies=Collected(trained.values["accuracy"]))
        with ParallelFor(seeds) as seed:
            fit(data=data.output, seed=seed)
        listed = list_seeds()
        with ParallelFor(listed.values["seeds"]) as seed:
            fit(data=data.output, rate=seed)  # an int item into a float parameter

    out = tmp_path / "loops.yaml"
    compile_pipeline(loops, str(out))
    doc = _load_ir(out)
    root = doc["root"]["dag"]["tasks"]
    loops_found = {v["taskInfo"]["name"]: v for v in root.values() if "parameterIterator" in v}
    assert set(loops_found) == {"for-1", "for-2", "for-3"}
    literal = loops_found["for-1"]
    assert yaml.safe_load(literal["parameterIterator"]["items"]["raw"]) == CONFIGS
    assert literal["iteratorPolicy"] == {"parallelismLimit": 2}
    assert loops_found["for-2"]["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--seeds"}
    assert loops_found["for-3"]["inputs"]["parameters"]["pipelinechannel--list-seeds-seeds"]["taskOutputParameter"] \
        == {"outputParameterKey": "seeds", "producerTask": "list-seeds"}
    body = doc["components"][literal["componentRef"]["name"]]
    fit_task = body["dag"]["tasks"]["fit"]
    assert fit_task["inputs"]["parameters"]["rate"]["parameterExpressionSelector"] == 'parseJson(string_value)["rate"]'
    assert body["outputDefinitions"]["artifacts"]["pipelinechannel--fit-model"]["isArtifactList"] is True
    assert body["outputDefinitions"]["parameters"]["pipelinechannel--fit-accuracy"]["parameterType"] == "LIST"
    fan_in = root["pick-best"]
    loop_key = next(k for k, v in root.items() if v is literal)
    assert fan_in["inputs"]["artifacts"]["models"]["taskOutputArtifact"] == {
        "outputArtifactKey": "pipelinechannel--fit-model", "producerTask": loop_key}
    assert fan_in["inputs"]["parameters"]["accuracies"]["taskOutputParameter"]["producerTask"] == loop_key
    pick = doc["components"][fan_in["componentRef"]["name"]]["inputDefinitions"]
    assert pick["artifacts"]["models"]["isArtifactList"] is True
    assert pick["parameters"]["accuracies"]["parameterType"] == "LIST"
    assert doc["components"]["comp-list-seeds"]["outputDefinitions"]["parameters"]["seeds"]["parameterType"] == "LIST"


def test_a_bound_list_parameter_compiles_to_a_literal_loop(tmp_path):
    @pipeline(name="bound")
    def bound(seeds: list = [1]) -> None:
        data = make_data()
        with ParallelFor(seeds) as seed:
            fit(data=data.output, seed=seed)

    out = tmp_path / "bound.yaml"
    compile_pipeline(bound.bind({"seeds": "[4, 5]"}), str(out))
    (loop,) = [v for v in _load_ir(out)["root"]["dag"]["tasks"].values() if "parameterIterator" in v]
    assert yaml.safe_load(loop["parameterIterator"]["items"]["raw"]) == [4, 5]


def test_kfp_executor_hands_a_collected_list_to_the_component(tmp_path):
    """What dsl.Collected gives a task on Kubeflow: every iteration's artifact under one input."""
    import base64
    import json
    import os
    import subprocess
    import sys

    import tests.dsl.loop_toy as loop_toy

    with open(loop_toy.__file__, "rb") as handle:
        source = base64.b64encode(handle.read()).decode()
    artifacts = [{"name": f"m{i}", "uri": str(tmp_path / f"m{i}"), "metadata": {"seed": i}} for i in (3, 1)]
    executor_input = {
        "inputs": {"artifacts": {"models": {"artifacts": artifacts}}},
        "outputs": {"artifacts": {"total": {"artifacts": [{"name": "total", "uri": str(tmp_path / "total")}]}},
                    "outputFile": str(tmp_path / "out" / "executor_output.json")},
    }
    command = [sys.executable, "-m", "flywheel.kubeflow.entrypoint", "--executor_input", json.dumps(executor_input),
               "--component", "tests.dsl.loop_toy:count_models", "--component-source-b64", source]
    result = subprocess.run(command, env=dict(os.environ, FLYWHEEL_ARTIFACT_MOUNT_ROOT=str(tmp_path)),
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "out" / "executor_output.json").read_text())
    assert written["artifacts"]["total"]["artifacts"][0]["metadata"]["seeds"] == [3, 1]


def test_the_seed_sweep_example_keeps_the_most_accurate_model(home, tmp_path):
    import json
    import os

    from flywheel.pipeline_file import load_pipeline
    from tests.conftest import REPO

    sweep = load_pipeline(os.path.join(REPO, "examples", "seed_sweep.py"))
    configs = [{"seed": 0, "c": 0.001}, {"seed": 1, "c": 1.0}]
    result = LocalRunner(home, max_workers=0).run(sweep, {"configs": json.dumps(configs)})
    assert result.ok, result.errors
    nodes = MetadataStore(home).latest_nodes(result.run)
    accuracies = [nodes[f"fit_model[{i}]"].details["output_values"]["accuracy"] for i in range(2)]
    assert accuracies[1] > accuracies[0]  # hardly regularised beats C=0.001 on digits
    best = nodes["pick_best"].outputs["best"]
    assert best.properties["chosen"] == 1 and best.properties["c"] == 1.0 and best.properties["tried"] == 2
    with open(os.path.join(best.uri, "sweep.json"), encoding="utf-8") as handle:
        assert [row["accuracy"] for row in json.load(handle)] == accuracies

    out = tmp_path / "sweep.yaml"
    compile_pipeline(sweep, str(out))
    (loop,) = [v for v in _load_ir(out)["root"]["dag"]["tasks"].values() if "parameterIterator" in v]
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--configs"}
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2}

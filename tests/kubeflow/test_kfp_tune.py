"""tune on Kubeflow: random/grid search as ParallelFor(trial) -> select(dsl.Collected), checked in real IR.

The IR is compiled by kfp's own compiler and read back with kfp's loaders; the
trial and select tasks then run through their compiled commands (the executor
contract) with executor inputs built by kfp.local's launcher helpers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from flywheel import pipeline
from flywheel.components.tune import space as tune_space
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.components.tune import tune
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.pipeline_file import load_pipeline
from tests.conftest import REPO

SPACE = {
    "learning_rate": {"type": "float", "min": 1e-3, "max": 1e-1, "log": True},
    "hidden_units": {"type": "choice", "values": [[8], [16, 8]]},
}


def _pipeline(strategy: str):
    @pipeline(name=f"tune-{strategy}")
    def tuned(trial_epochs: int = 2) -> None:
        rows = ingest(path="", label="species")
        features = transform(examples=rows.outputs["examples"], label="species")
        search = tune(
            examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
            search_space=SPACE, strategy=strategy, max_trials=3, parallelism=2, epochs=trial_epochs, seed=5,
        )
        train(examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
              hyperparameters=search.outputs["hyperparameters"])

    return tuned


def _compile(tmp_path, pipe) -> dict:
    path = tmp_path / "pipeline.yaml"
    compile_pipeline(pipe, str(path))
    return yaml.safe_load(path.read_text())


def _spec(doc: dict):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    return json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())  # strict: unknown fields fail


def _container(doc: dict, component_name: str) -> dict:
    label = doc["components"][component_name]["executorLabel"]
    return doc["deploymentSpec"]["executors"][label]["container"]


@pytest.mark.parametrize("strategy", ["random", "grid"])
def test_random_and_grid_compile_to_a_parallel_for_and_a_collected_select(tmp_path, strategy):
    from kfp import components

    doc = _compile(tmp_path, _pipeline(strategy))
    _spec(doc)
    tasks = doc["root"]["dag"]["tasks"]
    loops = [name for name, t in tasks.items() if "parameterIterator" in t]
    assert len(loops) == 1 and "tune" not in tasks
    loop = tasks[loops[0]]
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2}
    items = json.loads(loop["parameterIterator"]["items"]["raw"])
    expected = (tune_space.random_configs(SPACE, 3, 5) if strategy == "random"
                else tune_space.grid_configs(SPACE, 3, 3))
    assert [i["hyperparameters"] for i in items] == expected  # the very trials the local search runs
    assert [i["trial_id"] for i in items] == ["0", "1", "2"]

    trial_tasks = doc["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    ((_, trial),) = trial_tasks.items()
    assert trial["inputs"]["parameters"]["config"]["componentInputParameter"] == loop["parameterIterator"]["itemInput"]
    trial_container = _container(doc, trial["componentRef"]["name"])
    assert trial_container["command"] == ["python", "-m", "flywheel.kubeflow.entrypoint"]
    assert "flywheel.components.tune.fanout:tune_trial" in trial_container["args"]

    select_key, select = next((k, t) for k, t in tasks.items() if t["taskInfo"]["name"] == "tune-select")
    wiring = select["inputs"]["artifacts"]["trials"]["taskOutputArtifact"]
    assert wiring["producerTask"] == loops[0]  # dsl.Collected: the loop's collected trial outputs
    assert doc["components"][loops[0].replace("for-loop", "comp-for-loop")]["outputDefinitions"]["artifacts"]
    select_inputs = doc["components"][select["componentRef"]["name"]]["inputDefinitions"]["artifacts"]
    assert select_inputs["trials"].get("isArtifactList") is True
    assert _container(doc, select["componentRef"]["name"])["command"] == ["python", "-m", "flywheel.kubeflow.entrypoint"]
    train_wiring = tasks["train"]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"]
    assert train_wiring == {"outputArtifactKey": "hyperparameters", "producerTask": select_key}

    loaded = components.load_component_from_file(str(tmp_path / "pipeline.yaml"))
    assert loaded.name == f"tune-{strategy}" and "trial_epochs" in loaded.component_spec.inputs


def test_adaptive_strategies_and_run_time_plans_stay_one_task(tmp_path):
    for strategy in ("bayesian", "hyperband"):
        tasks = _compile(tmp_path, _pipeline(strategy))["root"]["dag"]["tasks"]
        assert "tune" in tasks and not any("parameterIterator" in t for t in tasks.values())
    # pipelines/tuning.py takes tune's seed as a pipeline parameter: only known when the run starts.
    tasks = _compile(tmp_path, load_pipeline(os.path.join(REPO, "pipelines", "tuning.py")))["root"]["dag"]["tasks"]
    assert "tune" in tasks and not any("parameterIterator" in t for t in tasks.values())


def test_compile_time_parameters_let_the_tuning_pipeline_fan_out(tmp_path, capsys):
    from flywheel.cli.main import main
    from flywheel.errors import ParameterError

    out = tmp_path / "tuning.yaml"
    code = main(["compile", os.path.join(REPO, "pipelines", "tuning.py"), "-o", str(out),
                 "-p", "strategy=random", "-p", "max_trials=4", "--fix-defaults"])
    assert code == 0 and "Compiled pipeline 'tuning'" in capsys.readouterr().out
    doc = yaml.safe_load(out.read_text())
    _spec(doc)
    tasks = doc["root"]["dag"]["tasks"]
    (loop,) = [t for t in tasks.values() if "parameterIterator" in t]
    assert len(json.loads(loop["parameterIterator"]["items"]["raw"])) == 4
    parameters = doc["root"].get("inputDefinitions", {}).get("parameters", {})
    assert parameters == {}  # all fixed: no run-time inputs left

    out_partly = tmp_path / "partly.yaml"
    assert main(["compile", os.path.join(REPO, "pipelines", "tuning.py"), "-o", str(out_partly), "-p", "max_trials=4"]) == 0
    partly = yaml.safe_load(out_partly.read_text())
    # max_trials is tune's own parameter, never a run-time input; seed still is: one tune task
    assert set(partly["root"]["inputDefinitions"]["parameters"]) == {"data_path", "label", "seed", "registry", "model_name"}
    assert "tune" in partly["root"]["dag"]["tasks"]

    pipe = load_pipeline(os.path.join(REPO, "pipelines", "tuning.py"))
    with pytest.raises(ParameterError, match="has no parameter 'strategi'"):
        pipe.bind({"strategi": "random"})
    with pytest.raises(ParameterError, match="max_trials"):
        pipe.bind({"max_trials": "many"})
    assert pipe.bind({"max_trials": "4"}).tasks["tune"].parameters["max_trials"] == 4
    assert pipe.tasks["tune"].parameters["max_trials"] == 12  # the original is untouched


def _artifact(name: str, schema_title: str, uri: str, metadata: dict | None = None) -> dict:
    return {"name": name, "type": {"schemaTitle": schema_title}, "uri": uri, "metadata": metadata or {}}


def _run(command: list[str]) -> subprocess.CompletedProcess:
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=dict(os.environ, PATH=path))


def _command(container: dict, executor_input: dict) -> list[str]:
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    return list(container["command"]) + args


def test_trial_and_select_run_through_the_executor_contract(tmp_path):
    from flywheel.dsl.artifacts import TransformGraph
    from flywheel.component_call import call_component

    try:
        from tests.components.model_fixtures import penguin_examples
    except ImportError:
        sys.path.insert(0, os.path.join(REPO, "tests", "components"))
        from model_fixtures import penguin_examples

    examples = penguin_examples(str(tmp_path / "ex"))
    graph = {"transform_graph": TransformGraph(uri=str(tmp_path / "tg"))}
    call_component(transform, {"examples": examples}, graph, {})

    doc = _compile(tmp_path, _pipeline("random"))
    tasks = doc["root"]["dag"]["tasks"]
    loop = next(t for t in tasks.values() if "parameterIterator" in t)
    items = json.loads(loop["parameterIterator"]["items"]["raw"])
    (trial,) = doc["components"][loop["componentRef"]["name"]]["dag"]["tasks"].values()
    trial_container = _container(doc, trial["componentRef"]["name"])
    results = []
    for item in items[:2]:
        out = tmp_path / f"trial-{item['trial_id']}"
        executor_input = {
            "inputs": {
                "artifacts": {
                    "examples": {"artifacts": [_artifact("examples", "system.Dataset", examples.uri, examples.properties)]},
                    "transform_graph": {"artifacts": [_artifact("tg", "system.Artifact", graph["transform_graph"].uri)]},
                },
                "parameterValues": {"config": item, "epochs": 2, "seed": 5},
            },
            "outputs": {
                "artifacts": {"result": {"artifacts": [_artifact("result", "system.Artifact", str(out / "result"))]}},
                "outputFile": str(out / "executor_output.json"),
            },
        }
        done = _run(_command(trial_container, executor_input))
        assert done.returncode == 0, done.stderr
        made = json.loads((out / "executor_output.json").read_text())["artifacts"]["result"]["artifacts"][0]
        assert made["metadata"]["hyperparameters"] == item["hyperparameters"] and made["metadata"]["status"] == "COMPLETED"
        results.append(made)

    select = next(t for t in tasks.values() if t["taskInfo"]["name"] == "tune-select")
    out = tmp_path / "select"
    executor_input = {
        "inputs": {
            "artifacts": {"trials": {"artifacts": [_artifact("result", "system.Artifact", r["uri"], r["metadata"])
                                                   for r in results]}},
            "parameterValues": {"strategy": "random"},
        },
        "outputs": {
            "artifacts": {"hyperparameters": {"artifacts": [_artifact("hp", "system.Artifact", str(out / "hp"))]}},
            "outputFile": str(out / "executor_output.json"),
        },
    }
    done = _run(_command(_container(doc, select["componentRef"]["name"]), executor_input))
    assert done.returncode == 0, done.stderr
    best = json.loads((out / "executor_output.json").read_text())["artifacts"]["hyperparameters"]["artifacts"][0]
    winner = max(results, key=lambda r: r["metadata"]["score"])
    assert best["metadata"]["best_hyperparameters"] == winner["metadata"]["hyperparameters"]
    assert best["metadata"]["trials_run"] == 2 and best["metadata"]["parallel_trials"] is True
    with open(os.path.join(best["uri"], "best_hyperparameters.json"), encoding="utf-8") as handle:
        assert json.load(handle) == winner["metadata"]["hyperparameters"]
    assert os.path.isfile(os.path.join(best["uri"], "index.html"))


def test_the_executor_folds_a_collected_input_and_keeps_every_trial():
    from flywheel.kubeflow.entrypoint import COLLECTED_PROPERTY, ExecutorError, _runtime_artifact

    entry = {"artifacts": [
        _artifact("a", "system.Artifact", "gs://b/a", {"score": 0.5}),
        _artifact("b", "system.Artifact", "gs://b/b", {"score": 0.7}),
    ]}
    only = _runtime_artifact(entry, "trials", "Input")
    assert only["uri"] == "gs://b/a"
    assert only["metadata"][COLLECTED_PROPERTY] == [
        {"uri": "gs://b/a", "metadata": {"score": 0.5}}, {"uri": "gs://b/b", "metadata": {"score": 0.7}},
    ]
    assert len(entry["artifacts"]) == 2 and entry["artifacts"][0]["metadata"] == {"score": 0.5}  # not changed
    with pytest.raises(ExecutorError, match="'result' has 2 artifacts"):
        _runtime_artifact(entry, "result", "Output")  # an output is always one artifact


def test_the_fan_out_is_declared_on_the_component_and_imported_only_when_compiling():
    import subprocess
    import sys

    from flywheel import component
    from flywheel.errors import ComponentDefinitionError

    code = (
        "import sys; from flywheel.components.tune import tune; "
        "print(sorted(m for m in sys.modules if m.startswith(('flywheel.kubeflow', 'flywheel.components.tune.fanout')))); "
        "print(tune.kfp_expansion.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, module = out.stdout.strip().splitlines()
    assert before == "[]" and module == "flywheel.components.tune.fanout"
    with pytest.raises(ComponentDefinitionError, match="'kfp_expansion' option of component 'spread' must be 'MODULE:FUNCTION'"):
        @component(kfp_expansion="not a reference")
        def spread() -> None:
            pass

"""Schema continuity on Kubeflow from the registry, the object store in step pods, push's KFP run id.

The IR is loaded with kfp's own loader (``kfp.components.load_component_from_file``); the
``registry_reference`` component runs as a plain function against a registry that the real
``push`` filled, in a directory and on the loopback S3 server (moto), and its outputs feed the
real ``validate`` (TFDV), which must flag a retyped and a missing column.
"""

from __future__ import annotations

import argparse
import json
import os

import pytest
import yaml

from flywheel import ExampleStatistics, Examples, Input, Output, Schema, component, latest, pipeline
from flywheel.dsl.artifacts import HTML, ExampleAnomalies, Model, ModelBlessing, PushedModel
from flywheel.errors import FlywheelError, ParameterError
from flywheel.component_call import ABSENT_PROPERTY, call_component
from flywheel.kubeflow.compiler import REGISTRY_MOUNT, compile_pipeline
from flywheel.kubeflow.errors import KubeflowCompileError
from flywheel.kubeflow.task_env import ENDPOINT_ENV, SECRET_KEYS, ObjectStoreEnv
from flywheel.pipeline_file import load_pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINING = os.path.join(REPO_ROOT, "pipelines", "training.py")
STORE = ObjectStoreEnv(secret="flywheel-object-store", endpoint="http://minio-service.kubeflow:9000")


# -- the compiled IR ----------------------------------------------------------------------------


def _load(path):
    from kfp.components import load_component_from_file

    loaded = load_component_from_file(str(path))
    return loaded.pipeline_spec, loaded.platform_spec


def _container_tasks(spec) -> dict[str, tuple[str, object]]:
    """Display name -> (task key, PipelineTaskSpec) for every container task, inside groups too."""
    found = {}

    def walk(tasks) -> None:
        for key, task in tasks.items():
            comp = spec.components[task.component_ref.name]
            if comp.HasField("dag"):
                walk(comp.dag.tasks)
            else:
                found[task.task_info.name] = (key, task)

    walk(spec.root.dag.tasks)
    return found


def _executor(spec, task) -> str:
    return spec.components[task.component_ref.name].executor_label


def _containers(spec) -> dict:
    from google.protobuf import json_format

    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    return {label: executor["container"] for label, executor in executors.items()}


def _platform(platform_spec) -> dict:
    from google.protobuf import json_format

    return json_format.MessageToDict(platform_spec.platforms["kubernetes"])["deploymentSpec"]["executors"]


def test_the_registry_reference_feeds_validate_and_every_pod_gets_the_object_store(tmp_path):
    out = tmp_path / "training.yaml"
    compile_pipeline(load_pipeline(TRAINING), str(out), registry_pvc="flywheel-data", object_store=STORE)
    spec, platform_spec = _load(out)
    tasks = _container_tasks(spec)
    ref_key, ref_task = tasks["validate-registry-reference"]
    _, validate_task = tasks["validate"]
    fed = {name: (a.task_output_artifact.producer_task, a.task_output_artifact.output_artifact_key)
           for name, a in validate_task.inputs.artifacts.items()}
    assert fed["curated_schema"] == (ref_key, "schema")
    assert fed["previous_statistics"] == (ref_key, "statistics")
    assert ref_key in validate_task.dependent_tasks
    # the reference task reads what push is given: the registry and model_name run parameters, and
    # the examples evaluate judges (their dataset_name is the model's name when model_name is "")
    assert {n: p.component_input_parameter for n, p in ref_task.inputs.parameters.items()} == {
        "registry": "registry", "model_name": "model_name"}
    ingest_key = tasks["ingest"][0]
    assert ref_task.inputs.artifacts["examples"].task_output_artifact.producer_task == ingest_key
    assert not ref_task.caching_options.enable_cache  # the registry changes between runs
    containers = _containers(spec)
    assert "flywheel.components.registry_reference:registry_reference" in containers[_executor(spec, ref_task)]["args"]

    executors = _platform(platform_spec)
    ref_executor = _executor(spec, ref_task)
    (mount,) = executors[ref_executor]["pvcMount"]
    assert mount["mountPath"] == REGISTRY_MOUNT and mount["constant"] == "flywheel-data"
    for name, (_, task) in tasks.items():
        label = _executor(spec, task)
        (secret,) = executors[label]["secretAsEnv"]
        assert secret["secretName"] == "flywheel-object-store", name
        assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {(k, k) for k in SECRET_KEYS}, name
        env = {e["name"]: e["value"] for e in containers[label].get("env", [])}
        assert env[ENDPOINT_ENV] == "http://minio-service.kubeflow:9000", name
        assert not set(SECRET_KEYS) & set(env), f"{name}: a credential as a plain env value"
    assert "minio123" not in out.read_text()

    # push gets KFP's run id (the executor exports it as KFP_RUN_ID); no other task does
    for name, (_, task) in tasks.items():
        run_id = task.inputs.parameters.get("flywheel_kfp_run_id")
        if name == "push":
            assert run_id.runtime_value.constant.string_value == "{{$.pipeline_job_uuid}}"
        else:
            assert run_id is None, name


def _validate_inputs(path) -> set[str]:
    spec, _ = _load(path)
    return set(_container_tasks(spec)["validate"][1].inputs.artifacts)


def test_without_a_registry_or_when_turned_off_latest_inputs_stay_unconnected(tmp_path):
    from flywheel.components.ingest import ingest
    from flywheel.components.validate import validate

    @pipeline(name="no-registry")
    def no_registry(data_path: str = "") -> None:
        rows = ingest(path=data_path)
        validate(examples=rows.outputs["examples"], curated_schema=latest(Schema, task="validate", output="schema"))

    compile_pipeline(no_registry, str(tmp_path / "a.yaml"))
    assert _validate_inputs(tmp_path / "a.yaml") == {"examples"}
    compile_pipeline(load_pipeline(TRAINING), str(tmp_path / "b.yaml"), schema_continuity=False)
    assert _validate_inputs(tmp_path / "b.yaml") == {"examples"}
    # the training pipeline's registry is a run parameter: wired even without a volume
    compile_pipeline(load_pipeline(TRAINING), str(tmp_path / "c.yaml"))
    assert _validate_inputs(tmp_path / "c.yaml") == {"examples", "curated_schema", "previous_statistics"}
    # a registry fixed to "" at compile time, with no volume, would be the pod's own empty home: not wired
    compile_pipeline(load_pipeline(TRAINING).bind({"registry": ""}), str(tmp_path / "d.yaml"))
    assert _validate_inputs(tmp_path / "d.yaml") == {"examples"}


def test_object_store_options_are_checked_and_never_carry_credentials():
    with pytest.raises(KubeflowCompileError, match="carries credentials"):
        ObjectStoreEnv(endpoint="http://minio:minio123@minio-service.kubeflow:9000")
    with pytest.raises(KubeflowCompileError, match="http\\(s\\) URL"):
        ObjectStoreEnv(endpoint="minio-service.kubeflow:9000")
    with pytest.raises(KubeflowCompileError, match="scheme://host\\[:port\\] only"):
        ObjectStoreEnv(endpoint="http://minio:9000/bucket")
    with pytest.raises(KubeflowCompileError, match="not a Kubernetes object name"):
        ObjectStoreEnv(secret="Flywheel_Object_Store")
    assert not ObjectStoreEnv()


def test_compile_cli_options(tmp_path, capsys):
    from flywheel.cli import kubeflow_commands

    parser = argparse.ArgumentParser(prog="flywheel")
    kubeflow_commands.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "t.yaml"
    args = parser.parse_args(["compile", TRAINING, "-o", str(out), "--object-store-secret", "store-creds",
                              "--object-store-endpoint", "https://s3.example.com", "--no-schema-continuity"])
    assert args.handler(args) == 0
    spec, platform_spec = _load(out)
    tasks = _container_tasks(spec)
    assert "validate-registry-reference" not in tasks
    label = _executor(spec, tasks["ingest"][1])
    assert _platform(platform_spec)[label]["secretAsEnv"][0]["secretName"] == "store-creds"
    bad = parser.parse_args(["compile", TRAINING, "-o", str(out), "--object-store-endpoint", "http://u:p@h:9000"])
    with pytest.raises(KubeflowCompileError, match="carries credentials"):
        bad.handler(bad)


def test_the_monitors_retrain_submits_with_the_object_store(monkeypatch, tmp_path):
    from flywheel.kubeflow import client
    from flywheel.monitoring import retrain
    from flywheel.monitoring.rules import RuleError, load_rules

    config = load_rules(os.path.join(REPO_ROOT, "k8s", "base", "alert-rules.yaml"))
    seen = {}
    monkeypatch.setattr(client, "submit", lambda *a, **kw: seen.update(kw) or ("run-1", "url"))
    launch = retrain.kubeflow_launcher(config.retrain.host)
    request = retrain.RetrainRequest(model="penguins", alert_id=1, rule="feature-drift", reason="drift",
                                     run_id="r", settings=config.retrain, parameters={})
    assert launch(request) == "run-1"
    # the Secret and endpoint serving and the monitor use (k8s/: flywheel-config s3-endpoint)
    assert seen["object_store"] == ObjectStoreEnv("flywheel-object-store", "http://minio-service.kubeflow:9000")
    assert seen["registry_pvc"] == "flywheel-data"
    bad = tmp_path / "rules.yaml"
    bad.write_text(yaml.safe_dump({"retrain": {"pipeline": "p.py", "object_store_endpoint": "http://a:b@h"}}))
    with pytest.raises(RuleError, match="object_store"):
        load_rules(str(bad))


# -- the executor: absent artifacts and the run id -------------------------------------------------


@component
def _first_run_probe(seen: Output[Examples], schema: Input[Schema] = None) -> None:
    seen.properties["schema_was_none"] = schema is None
    seen.properties["kfp_run_id"] = os.environ.get("KFP_RUN_ID", "")


@component
def _needs_schema(seen: Output[Examples], schema: Input[Schema]) -> None:
    seen.properties["ok"] = True


def _executor_input(tmp_path, schema_metadata: dict, parameters: dict) -> dict:
    return {
        "inputs": {
            "artifacts": {"schema": {"artifacts": [{"name": "s", "uri": str(tmp_path / "schema"),
                                                    "metadata": schema_metadata}]}},
            "parameterValues": parameters,
        },
        "outputs": {
            "artifacts": {"seen": {"artifacts": [{"name": "seen", "uri": str(tmp_path / "seen"), "metadata": {}}]}},
            "outputFile": str(tmp_path / "out" / "executor_output.json"),
        },
    }


def test_the_executor_hands_an_absent_artifact_over_as_none_and_exports_the_run_id(tmp_path, monkeypatch):
    from flywheel.kubeflow.entrypoint import execute

    monkeypatch.setenv("KFP_RUN_ID", "")  # recorded first, so teardown removes what the executor exports
    monkeypatch.delenv("KFP_RUN_ID")
    (tmp_path / "schema").mkdir()
    result = execute(_executor_input(tmp_path, {ABSENT_PROPERTY: True}, {"flywheel_kfp_run_id": "run-42"}),
                     _first_run_probe)
    seen = result["artifacts"]["seen"]["artifacts"][0]["metadata"]
    assert seen == {"schema_was_none": True, "kfp_run_id": "run-42"}
    os.environ.pop("KFP_RUN_ID")
    result = execute(_executor_input(tmp_path, {"source": "registry"}, {"flywheel_kfp_run_id": "{{$.pipeline_job_uuid}}"}),
                     _first_run_probe)
    assert result["artifacts"]["seen"]["artifacts"][0]["metadata"] == {"schema_was_none": False, "kfp_run_id": ""}
    with pytest.raises(FlywheelError, match="required, but its producer found nothing.*first run"):
        execute(_executor_input(tmp_path, {ABSENT_PROPERTY: True, "flywheel_absent_reason": "a first run"}, {}),
                _needs_schema)


def test_push_run_through_the_executor_records_the_kfp_run_as_lineage(tmp_path, monkeypatch):
    from flywheel.components.push import push
    from flywheel.kubeflow.entrypoint import execute
    from flywheel.registry import ModelRegistry

    from tests.test_registry import fake_model

    monkeypatch.setenv("KFP_RUN_ID", "")
    monkeypatch.delenv("KFP_RUN_ID")
    monkeypatch.delenv("FLYWHEEL_RUN_ID", raising=False)
    registry = str(tmp_path / "registry")
    executor_input = {
        "inputs": {
            "artifacts": {
                "model": {"artifacts": [{"name": "m", "uri": fake_model(tmp_path / "model"), "metadata": {}}]},
                "blessing": {"artifacts": [{"name": "b", "uri": str(tmp_path / "blessing"),
                                            "metadata": {"blessed": True, "model_name": "penguins"}}]},
            },
            "parameterValues": {"registry": registry, "model_name": "", "flywheel_kfp_run_id": "run-7"},
        },
        "outputs": {
            "artifacts": {"pushed_model": {"artifacts": [{"name": "p", "uri": str(tmp_path / "pushed"), "metadata": {}}]}},
            "outputFile": str(tmp_path / "out" / "executor_output.json"),
        },
    }
    execute(executor_input, push)
    info = ModelRegistry(registry).version_info("penguins", 1)["metadata"]  # push's self-description
    assert info["lineage"] == {"kind": "kfp", "run_id": "run-7", "host": ""}
    assert info["run_id"] == "run-7"


# -- registry_reference against real registries, feeding the real validate ------------------------


def _art(cls, root, name, properties=None):
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)
    return cls(uri=path, properties=dict(properties or {}))


def _ingest(root, name, frame=None):
    from flywheel.components.ingest import ingest

    examples = _art(Examples, root, name)
    if frame is None:
        ingest(examples=examples)  # the penguins data: dataset_name "penguins"
    else:
        path = os.path.join(root, f"{name}.csv")
        frame.to_csv(path, index=False)
        ingest(examples=examples, path=path, label="species")
    return examples


def _validate(root, name, examples, schema=None, statistics=None):
    from flywheel.components.validate import validate

    outputs = {
        "statistics": _art(ExampleStatistics, root, f"{name}-statistics"),
        "schema": _art(Schema, root, f"{name}-schema"),
        "anomalies": _art(ExampleAnomalies, root, f"{name}-anomalies"),
        "report": _art(HTML, root, f"{name}-report"),
    }
    inputs = {"examples": examples, "curated_schema": schema, "previous_statistics": statistics}
    call_component(validate, inputs, outputs, {"drift_threshold": 0.0, "skew_threshold": 0.0})
    return outputs


def _reference(root, name, registry, examples, model_name=""):
    from flywheel.components.registry_reference import registry_reference

    outputs = {"schema": _art(Schema, root, f"{name}-schema"), "statistics": _art(ExampleStatistics, root, f"{name}-stats")}
    call_component(registry_reference, {"examples": examples}, outputs, {"registry": registry, "model_name": model_name})
    return outputs


def _push(root, registry, examples, checked):
    from flywheel.components.push import push

    from tests.test_registry import fake_model

    model = Model(uri=fake_model(os.path.join(root, "model")))
    blessing = _art(ModelBlessing, root, "blessing", {"blessed": True, "model_name": "penguins"})
    pushed = _art(PushedModel, root, "pushed")
    push(model=model, blessing=blessing, pushed_model=pushed, registry=registry, model_name="",
         examples=examples, statistics=checked["statistics"], schema=checked["schema"])
    assert pushed.properties["pushed"] is True and pushed.properties["model_name"] == "penguins"
    return pushed.properties["version"]


@pytest.fixture(params=["directory", "s3"])
def registry_uri(request, tmp_path):
    if request.param == "directory":
        return str(tmp_path / "registry")
    return f"{request.getfixturevalue('s3_bucket')}/registry"


def test_first_run_infers_then_the_kept_schema_flags_a_retyped_and_a_missing_column(registry_uri, tmp_path, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_RUN_ID", raising=False)
    monkeypatch.setenv("FLYWHEEL_REGISTRY_CACHE", str(tmp_path / "cache"))
    root = str(tmp_path / "artifacts")
    penguins = _ingest(root, "penguins")

    # first run: nothing serves; the outputs are absent and validate infers a schema
    first = _reference(root, "ref-first", registry_uri, penguins)
    for output in first.values():
        assert output.properties[ABSENT_PROPERTY] is True and output.properties["model_name"] == "penguins"
        assert "no version of model 'penguins' serves" in output.properties["flywheel_absent_reason"]
    inferred = _validate(root, "first", penguins, first["schema"], first["statistics"])
    assert inferred["schema"].properties["source"] == "inferred"

    # push keeps the schema and statistics in the version; the next run reads them back
    version = _push(root, registry_uri, penguins, inferred)
    kept = _reference(root, "ref-kept", registry_uri, penguins)
    assert kept["schema"].properties["version"] == version and ABSENT_PROPERTY not in kept["schema"].properties
    assert kept["schema"].properties["source"] == "registry"
    assert kept["statistics"].properties["split_names"] == ["train"]
    with open(os.path.join(inferred["schema"].uri, "schema.pbtxt")) as a, \
            open(os.path.join(kept["schema"].uri, "schema.pbtxt")) as b:
        assert a.read() == b.read()
    with open(os.path.join(inferred["statistics"].uri, "Split-train", "FeatureStats.pb"), "rb") as a, \
            open(os.path.join(kept["statistics"].uri, "Split-train", "FeatureStats.pb"), "rb") as b:
        assert a.read() == b.read()

    same = _validate(root, "same", penguins, kept["schema"], kept["statistics"])
    assert same["schema"].properties["source"] == "curated"
    assert same["anomalies"].properties["blocking_count"] == 0

    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna()
    retyped = frame.assign(body_mass_g=["heavy" if v > 4000 else "light" for v in frame["body_mass_g"]])
    with pytest.raises(FlywheelError, match="blocking.*'body_mass_g'"):
        _validate(root, "retyped", _ingest(root, "retyped", retyped), kept["schema"], kept["statistics"])
    with pytest.raises(FlywheelError, match="blocking.*'flipper_length_mm'"):
        _validate(root, "missing", _ingest(root, "missing", frame.drop(columns=["flipper_length_mm"])),
                  kept["schema"], kept["statistics"])
    # without the kept schema the retyped data would pass: the registry is what caught it
    assert _validate(root, "unchecked", _ingest(root, "retyped-2", retyped))["anomalies"].properties["blocking_count"] == 0


def test_a_version_without_a_reference_is_a_first_run_and_a_missing_name_is_refused(tmp_path):
    from flywheel.registry import ModelRegistry

    from tests.test_registry import fake_model

    registry = str(tmp_path / "registry")
    ModelRegistry(registry).publish("old", fake_model(tmp_path / "m"))  # pushed before versions carried reference/
    root = str(tmp_path / "a")
    out = _reference(root, "old", registry, None, model_name="old")
    assert out["schema"].properties[ABSENT_PROPERTY] is True and out["schema"].properties["version"] == 1
    assert "carries no reference/schema" in out["schema"].properties["flywheel_absent_reason"]
    with pytest.raises(ParameterError, match="needs a model name"):
        _reference(root, "nameless", registry, None)
    json.dumps({k: v.properties for k, v in out.items()})  # the properties travel as KFP metadata


def test_submit_sends_the_object_store_env_and_names_only_the_secret(kfp_server, capsys):
    from flywheel.cli import kubeflow_commands

    parser = argparse.ArgumentParser(prog="flywheel")
    kubeflow_commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["submit", TRAINING, "--host", kfp_server.url, "--object-store-secret",
                              "flywheel-object-store", "--object-store-endpoint", "http://minio-service.kubeflow:9000"])
    assert args.handler(args) == 0
    (call,) = kfp_server.state.calls("POST", "/runs")
    body = json.dumps(call.body)
    spec = call.body["pipeline_spec"]
    containers = [e["container"] for e in spec["pipeline_spec"]["deploymentSpec"]["executors"].values()]
    secrets = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert len(containers) == len(secrets) == 9  # every task, the registry reference too
    for container in containers:
        assert {"name": ENDPOINT_ENV, "value": "http://minio-service.kubeflow:9000"} in container["env"]
    assert {s["secretAsEnv"][0]["secretName"] for s in secrets.values()} == {"flywheel-object-store"}
    assert "AWS_SECRET_ACCESS_KEY=" not in body

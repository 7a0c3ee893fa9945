"""Per-task resources and placement compiled to KFP v2 IR with kfp's own task methods
and kfp-kubernetes (node selector, tolerations, secrets as env), checked with kfp's proto."""

from __future__ import annotations

import os

import pytest
import yaml

from flywheel import Examples, Output, Placement, Resources, Toleration, component, pipeline
from flywheel.errors import ComponentDefinitionError
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.pipeline_file import load_pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@component(
    resources=Resources(cpu="1", memory="2Gi", cpu_limit="2", memory_limit="4Gi",
                        accelerator="nvidia.com/gpu", accelerator_count=1),
    placement=Placement.of(
        node_selector={"cloud.google.com/gke-nodepool": "gpu-pool"},
        tolerations=[Toleration("nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
    ),
)
def gpu_step(examples: Output[Examples]) -> None:
    examples.properties["rows"] = 1


@pipeline(name="placed")
def placed() -> None:
    gpu_step()
    (gpu_step().set_resources(memory_limit="16Gi", accelerator_count=2)
     .set_placement(node_selector={"pool": "big"})
     .set_secret_env("WEBHOOK_URL", secret="alerts", key="url")
     .set_caching(False).set_retries(3, backoff_s=5))


def _compile(tmp_path, pipe) -> tuple[dict, dict | None]:
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    out = tmp_path / "p.yaml"
    compile_pipeline(pipe, str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())  # strict proto parse
    if len(docs) > 1:
        json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    return docs[0], (docs[1] if len(docs) > 1 else None)


def _executor_label(doc: dict, task: dict) -> str:
    return doc["components"][task["componentRef"]["name"]]["executorLabel"]


def _tasks(doc: dict) -> dict[str, dict]:
    return {t["taskInfo"]["name"]: t for t in doc["root"]["dag"]["tasks"].values()}


def test_component_defaults_and_task_overrides_reach_the_ir(tmp_path):
    doc, platform = _compile(tmp_path, placed)
    tasks = _tasks(doc)
    default, custom = tasks["gpu_step"], tasks["gpu_step-2"]
    resources = doc["deploymentSpec"]["executors"][_executor_label(doc, default)]["container"]["resources"]
    assert resources["resourceCpuRequest"] == "1" and resources["resourceCpuLimit"] == "2"
    assert resources["resourceMemoryRequest"] == "2Gi" and resources["resourceMemoryLimit"] == "4Gi"
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    custom_resources = doc["deploymentSpec"]["executors"][_executor_label(doc, custom)]["container"]["resources"]
    assert custom_resources["resourceMemoryLimit"] == "16Gi"
    assert custom_resources["resourceMemoryRequest"] == "2Gi"  # the component's default stays
    assert custom_resources["accelerator"]["resourceCount"] == "2"
    assert custom["retryPolicy"]["maxRetryCount"] == 3 and custom["retryPolicy"]["backoffDuration"] == "5s"
    assert custom["cachingOptions"].get("enableCache", False) is False
    assert "retryPolicy" not in default

    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    plain = executors[_executor_label(doc, default)]
    assert plain["nodeSelector"] == {"labels": {"cloud.google.com/gke-nodepool": "gpu-pool"}}
    assert plain["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "secretAsEnv" not in plain
    special = executors[_executor_label(doc, custom)]
    assert special["nodeSelector"] == {"labels": {"pool": "big"}}
    assert special["tolerations"] == plain["tolerations"]  # not given: kept from the component
    (secret,) = special["secretAsEnv"]
    assert secret["keyToEnv"] == [{"secretKey": "url", "envVar": "WEBHOOK_URL"}]
    assert secret["secretName"] == "alerts"


def test_training_pipeline_ships_resources_and_retries(tmp_path):
    training = load_pipeline(os.path.join(REPO_ROOT, "pipelines", "training.py"))
    doc, platform = _compile(tmp_path, training)
    assert platform is None  # the shipped components ask for no node selector, toleration or secret
    tasks = _tasks(doc)
    (gate,) = [t for t in tasks.values() if "triggerPolicy" in t]  # push runs inside If(is_blessed.blessed == True)
    assert gate["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--is-blessed-blessed'] == true"
    gated = doc["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    tasks.update({t["taskInfo"]["name"]: t for t in gated.values()})
    assert set(gated) == {"push"}

    def resources(name):
        return doc["deploymentSpec"]["executors"][_executor_label(doc, tasks[name])]["container"]["resources"]

    for name in ("ingest", "validate"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 2, name
    for name in ("train", "push", "ingest", "validate", "transform", "evaluate"):
        assert {"resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"} <= set(resources(name)), name

    def gib(quantity: str) -> float:
        return float(quantity[:-2]) / (1024 if quantity.endswith("Mi") else 1)

    assert gib(resources("train")["resourceMemoryLimit"]) > gib(resources("push")["resourceMemoryLimit"])
    assert gib(resources("train")["resourceMemoryRequest"]) > gib(resources("push")["resourceMemoryRequest"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Resources(cpu_limit=2), r"'cpu_limit' must be a Kubernetes quantity string.*got 2"),
        (lambda: Resources(accelerator_count=1), r"needs an accelerator type"),
        (lambda: Resources(accelerator="nvidia.com/gpu", accelerator_count=0), r"int >= 1; got 0"),
        (lambda: Toleration("gpu", operator="Exists", value="x"), r"'Exists' matches any value"),
        (lambda: Toleration("gpu", effect="Never"), r"effect must be one of NoSchedule"),
        (lambda: Placement.of(node_selector={"pool": 3}), r"node selector maps label names to string values"),
        (lambda: component(resources={"gpu": 1})(lambda: None), r"resources has no field 'gpu'"),
    ],
)
def test_bad_resources_and_placement_are_definition_errors(make, message):
    with pytest.raises(ComponentDefinitionError, match=message):
        make()


def test_bad_secret_env_name_is_a_definition_error():
    with pytest.raises(ComponentDefinitionError, match="environment variable name"):
        @pipeline(name="bad-secret")
        def bad_secret() -> None:
            gpu_step().set_secret_env("WEBHOOK-URL", secret="alerts", key="url")

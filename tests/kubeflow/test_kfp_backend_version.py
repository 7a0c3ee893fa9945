"""The minimum KFP backend (flywheel.kubeflow.backend_version) against compiled IR and k8s/README.md."""

from __future__ import annotations

import pathlib
import re

import yaml

from flywheel.kubeflow import backend_version
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.pipeline_file import load_pipeline

REPO = pathlib.Path(__file__).resolve().parents[2]


def _compile(tmp_path, pipe, **kwargs) -> list[dict]:
    out = tmp_path / "pipeline.yaml"
    compile_pipeline(pipe, str(out), **kwargs)
    return list(yaml.safe_load_all(out.read_text()))


def test_the_fan_in_pipeline_needs_the_documented_minimum_backend(tmp_path):
    from tests.kubeflow.test_kfp_tune import _pipeline

    training = _compile(tmp_path, load_pipeline(str(REPO / "pipelines" / "training.py")), registry_pvc="flywheel-data")
    assert backend_version.features_used(training) == ["kfp-kubernetes mount_pvc", "dsl.PIPELINE_JOB_ID_PLACEHOLDER"]
    assert backend_version.minimum_backend(training) == "2.4.0"  # push's run id
    tuning = _compile(tmp_path, _pipeline("random"))
    assert backend_version.features_used(tuning) == ["dsl.ParallelFor", "dsl.Collected"]
    assert backend_version.minimum_backend(tuning) == backend_version.MINIMUM_BACKEND
    readme = (REPO / "k8s" / "README.md").read_text()
    (documented,) = set(re.findall(r"KFP backend \*\*(\d+\.\d+\.\d+)\*\* or newer", readme))
    assert documented == backend_version.MINIMUM_BACKEND == "2.14.0"


def test_a_collected_input_is_what_raises_the_minimum():
    collected = {"components": {"comp-select": {"inputDefinitions": {"artifacts": {"trials": {"isArtifactList": True}}}}},
                 "root": {"dag": {"tasks": {"for-loop-1": {"parameterIterator": {"itemInput": "x"}}}}}}
    assert backend_version.features_used([collected]) == ["dsl.ParallelFor", "dsl.Collected"]
    assert backend_version.minimum_backend([collected]) == "2.14.0"
    assert backend_version.minimum_backend([{"root": {"dag": {"tasks": {}}}}]) == "2.0.0"


def test_readme_and_lock_name_the_same_kfp_server_api():
    lock = (REPO / "requirements.lock").read_text()
    (locked,) = re.findall(r"^kfp-server-api==(\S+)$", lock, flags=re.M)
    (sdk,) = re.findall(r"^kfp==(\S+)$", lock, flags=re.M)
    readme = (REPO / "k8s" / "README.md").read_text()
    assert f"`kfp-server-api` {locked}" in readme
    assert f"`kfp` {sdk} SDK" in readme

"""flywheel.kubeflow.container_run and `flywheel container-run` without a container engine.

The real runs (podman, the images) are in tests/containers; here: argument checks that must
fail before any engine is contacted, and the executor-input gap the helper closes in kfp.local.
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


def test_conditions_are_refused_before_any_engine_is_contacted(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setattr("flywheel.images.connect", lambda **_: pytest.fail("engine contacted"))
    conditional = tmp_path / "conditional.yaml"
    compile_pipeline(load_pipeline(str(REPO / "pipelines" / "training.py")), str(conditional))
    with pytest.raises(ContainerRunError, match=r"runs under a condition \(dsl.If\).*--no-conditions"):
        run_compiled_pipeline(conditional, pipeline_root=tmp_path / "root")

    flat = tmp_path / "flat.yaml"  # what --no-conditions writes: push is a plain task after is_blessed
    compile_pipeline(load_pipeline(str(REPO / "pipelines" / "training.py")), str(flat), conditions=False)
    tasks = yaml.safe_load(flat.read_text())["root"]["dag"]["tasks"]
    assert not any("triggerPolicy" in task for task in tasks.values())
    assert "is-blessed" in tasks["push"]["dependentTasks"] and "evaluate" in tasks["push"]["dependentTasks"]


def test_unknown_parameters_are_rejected_before_any_engine_is_contacted(training_ir, tmp_path, monkeypatch):
    monkeypatch.setattr("flywheel.images.connect", lambda **_: pytest.fail("engine contacted"))
    with pytest.raises(ContainerRunError, match=r"has no parameters \['epoch'\]; it takes \[.*'epochs'"):
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

"""Per-task images: a task runs the image of its image role (component or serving) on Kubeflow.

``infra_validate`` declares the serving image, so on Kubeflow it loads the candidate in
the image that will serve it; every other shipped task runs the component image. The IR
is read back with kfp's own loader.
"""

from __future__ import annotations

import json
import os

import pytest

from flywheel import Examples, Input, Model, Output, component, pipeline
from flywheel.errors import ComponentDefinitionError
from flywheel.images import sibling_reference
from flywheel.kubeflow.compiler import DEFAULT_IMAGE, DEFAULT_SERVING_IMAGE, compile_pipeline
from flywheel.kubeflow.errors import KubeflowCompileError
from flywheel.pipeline_file import load_pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINING = os.path.join(REPO_ROOT, "pipelines", "training.py")


@component
def make(examples: Output[Examples]) -> None:
    examples.properties["rows"] = 1


@component(image="serving")
def probe(examples: Input[Examples], model: Output[Model]) -> None:
    model.properties["probed"] = True


@pipeline(name="roles")
def roles() -> None:
    made = make()
    probe(examples=made.outputs["examples"])
    probe(examples=made.outputs["examples"]).set_image("component")
    make().set_image("serving")


def _task_images(path) -> dict[str, str]:
    """Display name -> executor image of every container task, read with kfp's loader (If groups included)."""
    from google.protobuf import json_format
    from kfp import components

    spec = components.load_component_from_file(str(path)).pipeline_spec
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    images: dict[str, str] = {}

    def walk(tasks) -> None:
        for task in tasks.values():
            called = spec.components[task.component_ref.name]
            if called.HasField("dag"):
                walk(called.dag.tasks)
            else:
                images[task.task_info.name] = executors[called.executor_label]["container"]["image"]

    walk(spec.root.dag.tasks)
    return images


def test_infra_validate_runs_the_serving_image_and_every_other_task_the_component_image(tmp_path):
    out = tmp_path / "training.yaml"
    compile_pipeline(load_pipeline(TRAINING), str(out), image="registry.example/ml/flywheel:1.2.3")

    images = _task_images(out)

    assert set(images) == {"ingest", "validate", "transform", "train", "infra_validate", "evaluate", "is_blessed", "push"}
    assert images.pop("infra_validate") == "registry.example/ml/flywheel-serving:1.2.3"
    assert set(images.values()) == {"registry.example/ml/flywheel:1.2.3"}


def test_the_default_images_and_an_explicit_serving_image(tmp_path):
    compile_pipeline(load_pipeline(TRAINING), str(tmp_path / "default.yaml"), conditions=False)
    compile_pipeline(load_pipeline(TRAINING), str(tmp_path / "explicit.yaml"), image="custom/trainer:7",
                     serving_image="mirror.example/serve@sha256:" + "a" * 64)

    default, explicit = _task_images(tmp_path / "default.yaml"), _task_images(tmp_path / "explicit.yaml")

    assert DEFAULT_SERVING_IMAGE == DEFAULT_IMAGE.replace("flywheel:", "flywheel-serving:")
    assert default["infra_validate"] == DEFAULT_SERVING_IMAGE and default["push"] == DEFAULT_IMAGE
    assert explicit["infra_validate"] == "mirror.example/serve@sha256:" + "a" * 64
    assert {name: image for name, image in explicit.items() if name != "infra_validate"} == {
        name: "custom/trainer:7" for name in explicit if name != "infra_validate"
    }


def test_a_task_override_beats_the_components_declaration(tmp_path):
    compile_pipeline(roles, str(tmp_path / "roles.yaml"), image="reg/flywheel:2")

    images = _task_images(tmp_path / "roles.yaml")

    assert images == {
        "make": "reg/flywheel:2",
        "probe": "reg/flywheel-serving:2",  # declared on the component
        "probe-2": "reg/flywheel:2",  # .set_image("component")
        "make-2": "reg/flywheel-serving:2",  # .set_image("serving")
    }
    assert roles.tasks["probe"].options.image == "serving" and probe.options.image == "serving"


def test_a_serving_image_that_cannot_be_derived_is_a_compile_error_naming_the_option(tmp_path):
    with pytest.raises(KubeflowCompileError, match=r"Task 'infra_validate' runs in the serving image.*--serving-image"):
        compile_pipeline(load_pipeline(TRAINING), str(tmp_path / "t.yaml"), image="custom/trainer:7")
    assert not (tmp_path / "t.yaml").exists()

    @pipeline(name="component-only")
    def component_only() -> None:
        make()

    compile_pipeline(component_only, str(tmp_path / "c.yaml"), image="custom/trainer:7")  # nothing needs serving
    assert _task_images(tmp_path / "c.yaml") == {"make": "custom/trainer:7"}
    with pytest.raises(KubeflowCompileError, match="serving_image must be an image reference"):
        compile_pipeline(component_only, str(tmp_path / "c.yaml"), serving_image=" ")


@pytest.mark.parametrize(
    ("reference", "sibling"),
    [
        ("flywheel:0.1.0", "flywheel-serving:0.1.0"),
        ("localhost/flywheel:0.1.0", "localhost/flywheel-serving:0.1.0"),
        ("registry.example:5000/ml/flywheel:1.2", "registry.example:5000/ml/flywheel-serving:1.2"),
        ("reg/flywheel", "reg/flywheel-serving"),
        ("reg/flywheel-serving:3", "reg/flywheel-serving:3"),
        ("reg/trainer:3", None),
        ("reg/flywheel@sha256:" + "b" * 64, None),
    ],
)
def test_the_serving_image_is_named_beside_the_component_image(reference, sibling):
    assert sibling_reference(reference, "serving") == sibling


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda: component(image="flywheel-serving:1")(lambda examples: None),
        lambda: component(image="gpu")(lambda: None),
        lambda: make.options.__class__(image=None),
    ],
)
def test_an_unknown_image_role_is_a_definition_error(make_bad):
    with pytest.raises(ComponentDefinitionError, match=r"'image' option names an image role, one of 'component', 'serving'"):
        make_bad()


def test_set_image_checks_the_role_when_the_pipeline_is_built():
    with pytest.raises(ComponentDefinitionError, match="got 'registry.example/flywheel-serving:1'"):
        @pipeline(name="bad-role")
        def bad_role() -> None:
            make().set_image("registry.example/flywheel-serving:1")


def test_compile_and_submit_take_the_serving_image(tmp_path, kfp_server):
    from flywheel.cli.main import main

    out = tmp_path / "cli.yaml"
    assert main(["compile", TRAINING, "-o", str(out), "--image", "reg/flywheel:9", "--serving-image", "reg/srv:9"]) == 0
    images = _task_images(out)
    assert images["infra_validate"] == "reg/srv:9" and images["train"] == "reg/flywheel:9"

    assert main(["submit", TRAINING, "--host", kfp_server.url, "--image", "reg/flywheel:9",
                 "--serving-image", "reg/srv:9"]) == 0
    (call,) = kfp_server.state.calls("POST", "/runs")
    body = json.dumps(call.body)
    assert body.count('"image": "reg/srv:9"') == 1 and '"image": "reg/flywheel:9"' in body


def test_an_expanded_task_runs_its_trials_and_select_in_its_image(tmp_path):
    from flywheel.components.ingest import ingest
    from flywheel.components.transform import transform
    from flywheel.components.tune import tune

    @pipeline(name="tune-in-serving")
    def tuned() -> None:
        rows = ingest(path="", label="species")
        features = transform(examples=rows.outputs["examples"], label="species")
        tune(examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
             search_space={"learning_rate": {"type": "float", "min": 1e-3, "max": 1e-1}}, strategy="random",
             max_trials=2).set_image("serving")

    compile_pipeline(tuned, str(tmp_path / "tune.yaml"), image="reg/flywheel:4")

    assert _task_images(tmp_path / "tune.yaml") == {
        "ingest": "reg/flywheel:4", "transform": "reg/flywheel:4",
        "tune-trial": "reg/flywheel-serving:4", "tune-select": "reg/flywheel-serving:4",
    }

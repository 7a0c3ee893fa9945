"""Compiling flywheel pipelines to KFP v2 IR, checked with kfp's own loaders.

The components below live in this test module, which is not installed in
the image, so the compiler embeds this module's source; one test also
compiles with the module declared as installed, to check module references.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from flywheel import (
    HTML,
    ClassificationMetrics,
    Examples,
    ExampleStatistics,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    Schema,
    component,
    latest,
    pipeline,
)
from flywheel.kubeflow.entrypoint import load_component
from flywheel.kubeflow.compiler import DEFAULT_IMAGE, compile_pipeline
from flywheel.kubeflow.errors import KubeflowCompileError
from flywheel.pipeline_file import load_pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@component(retries=2, retry_backoff_s=3, cpu="500m", memory="1Gi")
def make_rows(examples: Output[Examples], rows: int = 5) -> None:
    """Writes ``rows`` lines."""
    with open(examples.path("data.txt"), "w") as handle:
        handle.write("row\n" * rows)
    examples.properties["rows"] = rows


@component(cache=False)
def fit(
    examples: Input[Examples],
    model: Output[Model],
    stats: Output[ExampleStatistics],
    learning_rate: float = 0.1,
    schema: Input[Schema] = None,
) -> None:
    with open(examples.path("data.txt")) as handle:
        rows = len(handle.read().splitlines())
    model.properties["rows_seen"] = rows
    model.properties["learning_rate"] = learning_rate
    model.properties["had_schema"] = schema is not None
    stats.properties["rows"] = rows


@component
def report(
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    page: Output[HTML],
    notes: Output[Markdown],
    title: str = "report",
    options: dict | None = None,
) -> None:
    metrics.properties["accuracy"] = 0.5
    confusion.properties["confusionMatrix"] = {"annotationSpecs": [{"displayName": "a"}], "rows": [{"row": [1]}]}
    with open(page.path("index.html"), "w") as handle:
        handle.write(f"<h1>{title}</h1>")
    with open(notes.path("notes.md"), "w") as handle:
        handle.write(f"# {title}")


@pipeline(name="tiny-kfp")
def tiny(rows: int = 3, learning_rate: float = 0.25, title: str = "hello", options: dict = {"k": 1}) -> None:
    """A tiny pipeline for compile tests."""
    made = make_rows(rows=rows)
    trained = fit(
        examples=made.outputs["examples"],
        learning_rate=learning_rate,
        schema=latest(Schema, task="validate", output="schema"),
    )
    report(model=trained.outputs["model"], title=title).after(made)


@pipeline(name="int-to-float")
def int_to_float(steps: int = 4) -> None:
    made = make_rows()
    fit(examples=made.outputs["examples"], learning_rate=steps)
    fit(examples=made.outputs["examples"], learning_rate=2)


def _module_root() -> str:
    """The sys.path entry from which this module imports as ``__name__``."""
    root = os.path.dirname(os.path.abspath(__file__))
    for _ in range(__name__.count(".")):
        root = os.path.dirname(root)
    return root


def _compile(tmp_path, pipe=tiny, **kwargs) -> dict:
    out = tmp_path / "pipeline.yaml"
    compile_pipeline(pipe, str(out), **kwargs)
    return yaml.safe_load(out.read_text())


def _pipeline_spec(doc: dict):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    return json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())


def _task_by_display_name(doc: dict) -> dict[str, tuple[str, dict]]:
    """Container tasks by display name, including those inside condition groups (push in training)."""
    found: dict[str, tuple[str, dict]] = {}

    def walk(tasks: dict) -> None:
        for key, task in tasks.items():
            group = doc["components"].get(task["componentRef"]["name"], {}).get("dag")
            if group is not None:
                walk(group["tasks"])
            else:
                found[task["taskInfo"]["name"]] = (key, task)

    walk(doc["root"]["dag"]["tasks"])
    return found


def _container(doc: dict, task: dict) -> dict:
    executor_label = doc["components"][task["componentRef"]["name"]]["executorLabel"]
    return doc["deploymentSpec"]["executors"][executor_label]["container"]


def test_tasks_and_dependencies(tmp_path):
    doc = _compile(tmp_path)
    spec = _pipeline_spec(doc)  # strict proto parse: the IR is well-formed
    assert spec.pipeline_info.name == "tiny-kfp"
    assert spec.pipeline_info.description == "A tiny pipeline for compile tests."
    tasks = _task_by_display_name(doc)
    assert set(tasks) == {"make_rows", "fit", "report"}
    assert "dependentTasks" not in tasks["make_rows"][1]
    assert tasks["fit"][1]["dependentTasks"] == [tasks["make_rows"][0]]
    # data edge to fit plus the explicit .after(made)
    assert sorted(tasks["report"][1]["dependentTasks"]) == sorted([tasks["fit"][0], tasks["make_rows"][0]])
    wiring = tasks["report"][1]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert wiring == {"outputArtifactKey": "model", "producerTask": tasks["fit"][0]}


def test_kfp_loader_reads_the_compiled_pipeline(tmp_path):
    from kfp import components

    compile_pipeline(tiny, str(tmp_path / "p.yaml"))
    loaded = components.load_component_from_file(str(tmp_path / "p.yaml"))
    assert loaded.name == "tiny-kfp"
    assert set(loaded.component_spec.inputs) == {"rows", "learning_rate", "title", "options"}


def test_artifact_types_use_schema_titles(tmp_path):
    doc = _compile(tmp_path)
    tasks = _task_by_display_name(doc)

    def outputs(display):
        comp = doc["components"][tasks[display][1]["componentRef"]["name"]]
        return {k: v["artifactType"]["schemaTitle"] for k, v in comp["outputDefinitions"]["artifacts"].items()}

    assert outputs("make_rows") == {"examples": "system.Dataset"}
    assert outputs("fit") == {"model": "system.Model", "stats": "system.Artifact"}
    assert outputs("report") == {
        "metrics": "system.Metrics",
        "confusion": "system.ClassificationMetrics",
        "page": "system.HTML",
        "notes": "system.Markdown",
    }


def test_pipeline_parameters_have_types_and_defaults(tmp_path):
    doc = _compile(tmp_path)
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["rows"]["parameterType"] == "NUMBER_INTEGER"
    assert params["rows"]["defaultValue"] == 3
    assert params["learning_rate"] == {"parameterType": "NUMBER_DOUBLE", "defaultValue": 0.25, "isOptional": True}
    assert params["title"]["defaultValue"] == "hello"
    assert params["options"]["parameterType"] == "STRUCT"
    assert params["options"]["defaultValue"] == {"k": 1}
    tasks = _task_by_display_name(doc)
    assert tasks["make_rows"][1]["inputs"]["parameters"]["rows"] == {"componentInputParameter": "rows"}


def test_image_command_and_executor_args(tmp_path):
    doc = _compile(tmp_path, image="registry.example/flywheel:1.2.3")
    for display, (_, task) in _task_by_display_name(doc).items():
        container = _container(doc, task)
        assert container["image"] == "registry.example/flywheel:1.2.3"
        assert container["command"] == ["python", "-m", "flywheel.kubeflow.entrypoint"]
        args = container["args"]
        assert args[:2] == ["--executor_input", "{{$}}"]
        assert args[args.index("--component") + 1] == f"{__name__}:{display}"
        source = base64.b64decode(args[args.index("--component-source-b64") + 1]).decode()
        with open(__file__) as handle:
            assert source == handle.read()
        assert args[args.index("--code-fingerprint") + 1] == globals()[display].code_fingerprint
    assert DEFAULT_IMAGE.startswith("flywheel:")


def test_retry_caching_and_resources_carry_over(tmp_path):
    doc = _compile(tmp_path)
    tasks = _task_by_display_name(doc)
    make_task = tasks["make_rows"][1]
    assert make_task["retryPolicy"]["maxRetryCount"] == 2
    assert make_task["retryPolicy"]["backoffDuration"] == "3s"
    assert make_task["retryPolicy"]["backoffFactor"] == 2.0
    assert make_task["cachingOptions"] == {"enableCache": True}
    assert tasks["fit"][1]["cachingOptions"].get("enableCache", False) is False
    assert "retryPolicy" not in tasks["fit"][1]
    resources = _container(doc, make_task)["resources"]
    assert resources["resourceCpuRequest"] == "500m"
    assert resources["resourceMemoryRequest"] == "1Gi"
    assert "resources" not in _container(doc, tasks["fit"][1])


def test_task_level_overrides(tmp_path):
    @pipeline(name="overrides")
    def overrides() -> None:
        make_rows().set_retries(0).set_caching(False).set_resources(cpu="2", memory="3Gi")

    doc = _compile(tmp_path, overrides)
    (_, task), = _task_by_display_name(doc).values()
    assert "retryPolicy" not in task
    assert task["cachingOptions"].get("enableCache", False) is False
    assert _container(doc, task)["resources"]["resourceMemoryRequest"] == "3Gi"


def test_latest_input_is_optional_and_left_unconnected(tmp_path):
    doc = _compile(tmp_path)
    _, fit_task = _task_by_display_name(doc)["fit"]
    comp = doc["components"][fit_task["componentRef"]["name"]]
    assert comp["inputDefinitions"]["artifacts"]["schema"]["isOptional"] is True
    assert set(fit_task["inputs"]["artifacts"]) == {"examples"}


def test_int_pipeline_parameter_feeds_float_parameter(tmp_path):
    doc = _compile(tmp_path, int_to_float)
    tasks = _task_by_display_name(doc)
    fed = tasks["fit"][1]
    assert fed["inputs"]["parameters"]["learning_rate"] == {"componentInputParameter": "steps"}
    constant = tasks["fit-2"][1]["inputs"]["parameters"]["learning_rate"]
    assert constant["runtimeValue"]["constant"] == 2.0


def test_component_not_at_module_level_is_rejected(tmp_path):
    @component
    def local_step(out: Output[Examples]) -> None:
        return None

    @pipeline(name="local")
    def local() -> None:
        local_step()

    with pytest.raises(KubeflowCompileError, match="not a module-level name"):
        compile_pipeline(local, str(tmp_path / "x.yaml"))


def test_bad_resources_fail_when_the_pipeline_is_defined(tmp_path):
    from flywheel.errors import ComponentDefinitionError

    with pytest.raises(ComponentDefinitionError, match="'memory' must be a Kubernetes quantity.*'lots'"):
        @pipeline(name="bad-memory")
        def bad_memory() -> None:
            make_rows().set_resources(memory="lots")


def test_compiling_does_not_import_tensorflow(tmp_path):
    code = textwrap.dedent(
        f"""
        import importlib, sys
        sys.path.insert(0, {_module_root()!r})
        mod = importlib.import_module({__name__!r})
        from flywheel.kubeflow.compiler import compile_pipeline
        compile_pipeline(mod.tiny, {str(tmp_path / 'p.yaml')!r})
        heavy = [m for m in ("tensorflow", "tensorflow_data_validation", "apache_beam") if m in sys.modules]
        print(heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "p.yaml").exists()


# --- the compiled executor contract, end to end -------------------------------------------


def _launch_task(compiled_path: str, display_name: str, arguments: dict, task_root: str) -> tuple[list[str], str]:
    """Substitutes the executor input into a compiled task's command, as the KFP launcher does.

    Uses kfp.local's own launcher helpers (construct_executor_input,
    executor_input_to_dict, replace_placeholders) on the compiled IR.
    """
    from kfp.local import executor_input_utils, placeholder_utils

    with open(compiled_path) as handle:
        doc = yaml.safe_load(handle)
    spec = _pipeline_spec(doc)
    _, task = _task_by_display_name(doc)[display_name]
    component_spec = spec.components[task["componentRef"]["name"]]
    for name in list(component_spec.input_definitions.artifacts):
        if name not in arguments:
            # kfp.local cannot leave an optional artifact out; the KFP launcher omits it.
            del component_spec.input_definitions.artifacts[name]
    container = _container(doc, task)
    executor_input = executor_input_utils.construct_executor_input(
        component_spec=component_spec, arguments=arguments, task_root=task_root, block_input_artifact=False
    )
    executor_input_dict = executor_input_utils.executor_input_to_dict(executor_input, component_spec)
    command = placeholder_utils.replace_placeholders(
        full_command=list(container["command"]) + list(container["args"]),
        executor_input_dict=executor_input_dict,
        pipeline_resource_name="tiny-kfp-run",
        task_resource_name=display_name,
        pipeline_root=os.path.dirname(task_root),
        unique_pipeline_id="run-1",
    )
    return command, executor_input_dict["outputs"]["outputFile"]


def _run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    # The compiled command says `python`; put this interpreter first on PATH.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=dict(os.environ, PATH=path, **env)
    )


def test_compiled_tasks_run_through_the_executor(tmp_path):
    from kfp import dsl

    compiled = tmp_path / "pipeline.yaml"
    compile_pipeline(tiny, str(compiled))

    command, output_file = _launch_task(str(compiled), "make_rows", {"rows": 4}, str(tmp_path / "root" / "make"))
    assert command[:3] == ["python", "-m", "flywheel.kubeflow.entrypoint"]
    result = _run(command)
    assert result.returncode == 0, result.stderr
    made = json.loads(open(output_file).read())["artifacts"]["examples"]["artifacts"][0]
    assert made["metadata"] == {"rows": 4}
    assert open(os.path.join(made["uri"], "data.txt")).read() == "row\n" * 4

    upstream = dsl.Dataset(name="examples", uri=made["uri"], metadata=made["metadata"])
    command, output_file = _launch_task(
        str(compiled), "fit", {"examples": upstream, "learning_rate": 0.5}, str(tmp_path / "root" / "fit")
    )
    result = _run(command)
    assert result.returncode == 0, result.stderr
    model = json.loads(open(output_file).read())["artifacts"]["model"]["artifacts"][0]
    assert model["metadata"] == {"rows_seen": 4, "learning_rate": 0.5, "had_schema": False}

    trained = dsl.Model(name="model", uri=model["uri"], metadata=model["metadata"])
    command, output_file = _launch_task(
        str(compiled), "report", {"model": trained, "title": "Penguins"}, str(tmp_path / "root" / "report")
    )
    result = _run(command)
    assert result.returncode == 0, result.stderr
    outputs = {k: v["artifacts"][0] for k, v in json.loads(open(output_file).read())["artifacts"].items()}
    assert outputs["metrics"]["metadata"] == {"accuracy": 0.5}
    assert outputs["confusion"]["metadata"]["confusionMatrix"]["rows"] == [{"row": [1]}]
    # The KFP UI reads HTML/Markdown artifacts as one file at the URI.
    assert open(outputs["page"]["uri"]).read() == "<h1>Penguins</h1>"
    assert open(outputs["notes"]["uri"]).read() == "# Penguins"


def test_module_reference_when_module_is_in_the_image(tmp_path):
    compiled = tmp_path / "pipeline.yaml"
    compile_pipeline(tiny, str(compiled), image_packages=("flywheel", __name__.split(".")[0]))
    doc = yaml.safe_load(compiled.read_text())
    _, task = _task_by_display_name(doc)["make_rows"]
    assert "--component-source-b64" not in _container(doc, task)["args"]

    command, output_file = _launch_task(str(compiled), "make_rows", {"rows": 2}, str(tmp_path / "root" / "make"))
    # The "image" has this module importable: put its root on PYTHONPATH.
    result = _run(command, PYTHONPATH=_module_root())
    assert result.returncode == 0, result.stderr
    made = json.loads(open(output_file).read())["artifacts"]["examples"]["artifacts"][0]
    assert made["metadata"] == {"rows": 2}


PIPELINE_FILE = '''
"""A pipeline file that is not an importable module."""
from flywheel import Examples, Input, Metrics, Output, component, pipeline

OFFSET = 10


@component
def produce(examples: Output[Examples], n: int = 1) -> None:
    examples.properties["n"] = n + OFFSET


@component
def measure(examples: Input[Examples], metrics: Output[Metrics]) -> None:
    metrics.properties["doubled"] = examples.properties["n"] * 2


@pipeline(name="from-file")
def from_file(n: int = 2) -> None:
    made = produce(n=n)
    measure(examples=made.outputs["examples"])
'''


def test_pipeline_file_source_is_embedded_and_runs(tmp_path):
    path = tmp_path / "my_pipeline.py"
    path.write_text(PIPELINE_FILE)
    pipe = load_pipeline(str(path))
    compiled = tmp_path / "compiled.yaml"
    compile_pipeline(pipe, str(compiled))

    doc = yaml.safe_load(compiled.read_text())
    _, task = _task_by_display_name(doc)["produce"]
    args = _container(doc, task)["args"]
    assert base64.b64decode(args[args.index("--component-source-b64") + 1]).decode() == PIPELINE_FILE

    command, output_file = _launch_task(str(compiled), "produce", {"n": 5}, str(tmp_path / "root" / "produce"))
    result = _run(command)
    assert result.returncode == 0, result.stderr
    made = json.loads(open(output_file).read())["artifacts"]["examples"]["artifacts"][0]
    assert made["metadata"] == {"n": 15}


def test_every_pipeline_in_pipelines_dir_compiles(tmp_path):
    """Each pipelines/*.py compiles, and every component it references by module imports."""
    files = sorted(f for f in glob.glob(os.path.join(REPO_ROOT, "pipelines", "*.py")) if not f.endswith("__init__.py"))
    for number, path in enumerate(files):
        pipe = load_pipeline(path)
        out = tmp_path / f"{number}.yaml"
        compile_pipeline(pipe, str(out))
        doc = yaml.safe_load(out.read_text())
        _pipeline_spec(doc)
        # one extra task per consumer of a latest() schema/statistics when the pipeline has a registry
        references = [t for t in doc["root"]["dag"]["tasks"].values()
                      if t["taskInfo"]["name"].endswith("-registry-reference")]
        assert len(doc["root"]["dag"]["tasks"]) == len(pipe.tasks) + len(references), path
        if path.endswith(os.sep + "training.py"):
            assert [t["taskInfo"]["name"] for t in references] == ["validate-registry-reference"]
        for executor in doc["deploymentSpec"]["executors"].values():
            container = executor["container"]
            assert container["command"] == ["python", "-m", "flywheel.kubeflow.entrypoint"], path
            args = container["args"]
            if "--component-source-b64" not in args:
                load_component(args[args.index("--component") + 1])


def test_registry_pvc_is_mounted_by_the_tasks_that_use_the_registry(tmp_path, monkeypatch):
    from flywheel.home import Home
    from flywheel.kubeflow.compiler import REGISTRY_MOUNT
    from flywheel.pipeline_file import load_pipeline

    training = load_pipeline(os.path.join(REPO_ROOT, "pipelines", "training.py"))
    out = tmp_path / "training.yaml"
    compile_pipeline(training, str(out), registry_pvc="flywheel-data")
    pipeline_doc, platform_doc = list(yaml.safe_load_all(out.read_text()))
    _pipeline_spec(pipeline_doc)
    executors = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = _task_by_display_name(pipeline_doc)
    mounted = {name for name, (_, task) in tasks.items()
               if pipeline_doc["components"][task["componentRef"]["name"]]["executorLabel"] in executors}
    # the tasks with a `registry` parameter, and the registry reference feeding validate (registry_wiring)
    assert mounted == {"evaluate", "push", "validate-registry-reference"}
    for name in mounted:
        label = pipeline_doc["components"][tasks[name][1]["componentRef"]["name"]]["executorLabel"]
        (mount,) = executors[label]["pvcMount"]
        assert mount["mountPath"] == REGISTRY_MOUNT and mount["constant"] == "flywheel-data"
        env = {e["name"]: e["value"] for e in _container(pipeline_doc, tasks[name][1])["env"]}
        assert env == {"FLYWHEEL_REGISTRY": f"{REGISTRY_MOUNT}/registry"}

    plain = tmp_path / "plain.yaml"
    compile_pipeline(training, str(plain))
    assert len(list(yaml.safe_load_all(plain.read_text()))) == 1  # no platform spec without the flag

    monkeypatch.setenv("FLYWHEEL_REGISTRY", "/mnt/flywheel-data/registry")
    assert Home("/somewhere").registry == "/mnt/flywheel-data/registry"  # what registry="" resolves to there
    monkeypatch.delenv("FLYWHEEL_REGISTRY")
    assert Home("/somewhere").registry == "/somewhere/registry"


def test_kfp_cannot_serve_a_stale_ingest_from_its_cache(tmp_path):
    """Tasks that read outside data compile with caching off; the others keep KFP's cache."""
    pipe = load_pipeline(os.path.join(REPO_ROOT, "pipelines", "training.py"))
    doc = _compile(tmp_path, pipe)
    tasks = _task_by_display_name(doc)
    for reader in ("ingest", "validate"):  # ingest reads data_path, validate schema_path
        assert tasks[reader][1]["cachingOptions"].get("enableCache", False) is False, reader
    for other in ("transform", "train", "evaluate", "push"):
        assert tasks[other][1]["cachingOptions"] == {"enableCache": True}, other
    # The data path stays a run-time parameter: a recurring run resolves its span when it fires.
    ingest_inputs = tasks["ingest"][1]["inputs"]["parameters"]
    assert ingest_inputs["path"] == {"componentInputParameter": "data_path"}
    assert doc["root"]["inputDefinitions"]["parameters"]["data_path"]["parameterType"] == "STRING"

"""``python -m flywheel.kubeflow.entrypoint`` against executor inputs shaped like the KFP launcher's.

The executor input below has the shape the KFP v2 launcher passes for
``{{$}}`` (see kfp/dsl/executor_test.py and kfp/local/executor_input_utils.py):
``inputs.parameterValues``, ``inputs.artifacts.<name>.artifacts[]`` with name,
type.schemaTitle, uri and metadata, ``outputs.artifacts`` likewise and
``outputs.outputFile``. URIs are ``minio://`` as on a KFP standalone install;
``FLYWHEEL_ARTIFACT_MOUNT_ROOT`` moves the launcher's ``/minio/`` mount into
tmp_path, as kfp's own executor tests patch its mount prefixes.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import subprocess
import sys

import pytest

from flywheel import HTML, Examples, ExampleStatistics, Input, Output, component
from flywheel.kubeflow.entrypoint import REPORT_FILE_PROPERTY, ExecutorError, execute, load_component
from flywheel.kubeflow.uris import local_path, remote_uri


@component
def count_lines(
    examples: Input[Examples],
    stats: Output[ExampleStatistics],
    report: Output[HTML],
    min_rows: int = 1,
    scale: float = 1.0,
    tags: list | None = None,
) -> None:
    """Counts lines of examples/data.txt; fails below min_rows."""
    with open(examples.path("data.txt")) as handle:
        rows = len(handle.read().splitlines())
    if rows < min_rows:
        raise ValueError(f"only {rows} rows, need {min_rows}")
    with open(stats.path("stats.json"), "w") as handle:
        json.dump({"rows": rows}, handle)
    stats.properties["rows"] = rows
    stats.properties["scaled"] = rows * scale
    stats.properties["tags"] = tags or []
    stats.properties["upstream_rows"] = examples.properties.get("rows")
    with open(report.path("index.html"), "w") as handle:
        handle.write(f"<h1>{rows} rows</h1>")


@component
def read_report(page: Input[HTML], stats: Output[ExampleStatistics]) -> None:
    with open(page.path("index.html")) as handle:
        stats.properties["html"] = handle.read()


SOURCE_B64 = base64.b64encode(inspect.getsource(sys.modules[__name__]).encode()).decode()


def _artifact(name: str, schema_title: str, uri: str, metadata: dict | None = None) -> dict:
    return {
        "artifacts": [
            {
                "name": name,
                "type": {"schemaTitle": schema_title, "schemaVersion": "0.0.1"},
                "uri": uri,
                "metadata": metadata or {},
            }
        ]
    }


def _executor_input(tmp_path, parameter_values: dict) -> dict:
    run = "minio://mlpipeline/v2/artifacts/tiny/run-1"
    return {
        "inputs": {
            "parameterValues": parameter_values,
            "artifacts": {
                "examples": _artifact("examples", "system.Dataset", f"{run}/make/examples", {"rows": 3}),
            },
        },
        "outputs": {
            "artifacts": {
                "stats": _artifact("stats", "system.Artifact", f"{run}/count-lines/stats"),
                "report": _artifact("report", "system.HTML", f"{run}/count-lines/report"),
            },
            "outputFile": str(tmp_path / "tmp" / "kfp_outputs" / "output_metadata.json"),
        },
    }


def _run_executor(tmp_path, executor_input: dict, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLYWHEEL_ARTIFACT_MOUNT_ROOT=str(tmp_path))
    command = [
        sys.executable, "-m", "flywheel.kubeflow.entrypoint",
        "--executor_input", json.dumps(executor_input),
        "--component", f"{__name__}:count_lines",
        "--component-source-b64", SOURCE_B64,
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def _write_examples(tmp_path, lines: int) -> None:
    directory = tmp_path / "minio" / "mlpipeline" / "v2" / "artifacts" / "tiny" / "run-1" / "make" / "examples"
    directory.mkdir(parents=True)
    (directory / "data.txt").write_text("row\n" * lines)


def test_executor_runs_component_and_writes_executor_output(tmp_path):
    _write_examples(tmp_path, 4)
    # KFP sends every number as a JSON number: the int parameter arrives as 2.0.
    executor_input = _executor_input(tmp_path, {"min_rows": 2.0, "scale": 3, "tags": ["a", "b"]})

    result = _run_executor(tmp_path, executor_input)

    assert result.returncode == 0, result.stderr
    output = json.loads((tmp_path / "tmp" / "kfp_outputs" / "output_metadata.json").read_text())
    stats = output["artifacts"]["stats"]["artifacts"][0]
    assert stats["uri"] == "minio://mlpipeline/v2/artifacts/tiny/run-1/count-lines/stats"
    assert stats["name"] == "stats"
    assert stats["metadata"] == {"rows": 4, "scaled": 12.0, "tags": ["a", "b"], "upstream_rows": 3}
    written = tmp_path / "minio" / "mlpipeline" / "v2" / "artifacts" / "tiny" / "run-1" / "count-lines" / "stats"
    assert json.loads((written / "stats.json").read_text()) == {"rows": 4}


def test_executor_publishes_single_file_report_as_a_file(tmp_path):
    _write_examples(tmp_path, 2)
    result = _run_executor(tmp_path, _executor_input(tmp_path, {}))
    assert result.returncode == 0, result.stderr
    report = tmp_path / "minio" / "mlpipeline" / "v2" / "artifacts" / "tiny" / "run-1" / "count-lines" / "report"
    # The KFP UI reads an HTML artifact's URI as one file.
    assert report.is_file()
    assert report.read_text() == "<h1>2 rows</h1>"
    output = json.loads((tmp_path / "tmp" / "kfp_outputs" / "output_metadata.json").read_text())
    assert output["artifacts"]["report"]["artifacts"][0]["metadata"] == {REPORT_FILE_PROPERTY: "index.html"}


def test_component_error_exits_nonzero_with_error_on_stderr(tmp_path):
    _write_examples(tmp_path, 1)
    result = _run_executor(tmp_path, _executor_input(tmp_path, {"min_rows": 5}))
    assert result.returncode == 1
    assert "only 1 rows, need 5" in result.stderr
    assert "error: component" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "tmp" / "kfp_outputs" / "output_metadata.json").exists()


def test_bad_parameter_type_is_reported(tmp_path):
    _write_examples(tmp_path, 1)
    result = _run_executor(tmp_path, _executor_input(tmp_path, {"min_rows": "many"}))
    assert result.returncode == 1
    assert "Parameter 'min_rows' of component 'count_lines' is an int" in result.stderr


def test_unknown_component_reference_fails_cleanly(tmp_path):
    env = dict(os.environ)
    command = [
        sys.executable, "-m", "flywheel.kubeflow.entrypoint",
        "--executor_input", json.dumps(_executor_input(tmp_path, {})),
        "--component", "flywheel.no_such_module:thing",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: Cannot import module 'flywheel.no_such_module'")
    assert "Traceback" not in result.stderr


def test_fingerprint_mismatch_warns(tmp_path):
    _write_examples(tmp_path, 2)
    result = _run_executor(tmp_path, _executor_input(tmp_path, {}), "--code-fingerprint", "0" * 64)
    assert result.returncode == 0, result.stderr
    assert "code fingerprint mismatch" in result.stderr


def test_load_component_rejects_non_components():
    with pytest.raises(ExecutorError, match="is not a flywheel component"):
        load_component("flywheel.kubeflow.entrypoint:main")
    with pytest.raises(ExecutorError, match="MODULE:NAME"):
        load_component("flywheel.kubeflow.entrypoint")


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("gs://bucket/a/b", "/gcs/bucket/a/b"),
        ("minio://mlpipeline/v2/x", "/minio/mlpipeline/v2/x"),
        ("s3://bucket/key", "/s3/bucket/key"),
        ("/tmp/local/x", "/tmp/local/x"),
    ],
)
def test_uri_mapping_matches_kfp(uri, path):
    from kfp import dsl

    assert local_path(uri, root="/") == path
    assert dsl.Artifact(uri=uri).path == path  # kfp's own mapping
    assert remote_uri(path, root="/") == uri


def test_report_published_as_file_reaches_downstream_component_as_directory(tmp_path, monkeypatch):
    page = tmp_path / "minio" / "b" / "page"
    page.parent.mkdir(parents=True)
    page.write_text("<p>hi</p>")
    executor_input = {
        "inputs": {
            "artifacts": {
                "page": _artifact("page", "system.HTML", "minio://b/page", {REPORT_FILE_PROPERTY: "index.html"})
            }
        },
        "outputs": {
            "artifacts": {"stats": _artifact("stats", "system.Artifact", "minio://b/stats")},
            "outputFile": str(tmp_path / "out" / "executor_output.json"),
        },
    }
    monkeypatch.setenv("FLYWHEEL_ARTIFACT_MOUNT_ROOT", str(tmp_path))
    output = execute(executor_input, read_report)
    assert output["artifacts"]["stats"]["artifacts"][0]["metadata"] == {"html": "<p>hi</p>"}
    assert json.loads((tmp_path / "out" / "executor_output.json").read_text()) == output


@component
def typed_parameters(
    out: Output[ExampleStatistics],
    units: list = [16, 8],  # noqa: B006 - recorded default, never mutated
    grid: dict[str, list[int]] | None = None,
    weights: list[float] | None = None,
) -> None:
    out.properties["units"] = units
    out.properties["grid"] = grid
    out.properties["weights"] = weights
    out.properties["model_uri"] = out.uri


def test_parameters_are_coerced_by_declared_type_at_every_depth(tmp_path, monkeypatch):
    # protobuf's JSON (KFP, kfp.local) turns every number into a double, also inside containers.
    monkeypatch.setenv("FLYWHEEL_ARTIFACT_MOUNT_ROOT", str(tmp_path))
    executor_input = {
        "inputs": {"parameterValues": {"units": [16.0, 8.0], "grid": {"depth": [2.0, 3.0]}, "weights": [1.0, 0.5]}},
        "outputs": {
            "artifacts": {"out": _artifact("out", "system.Artifact", "minio://mlpipeline/run-1/typed/out")},
            "outputFile": str(tmp_path / "outputs" / "output_metadata.json"),
        },
    }
    output = execute(executor_input, typed_parameters)
    metadata = output["artifacts"]["out"]["artifacts"][0]["metadata"]
    assert metadata["units"] == [16, 8] and all(type(u) is int for u in metadata["units"])
    assert metadata["grid"] == {"depth": [2, 3]} and all(type(d) is int for d in metadata["grid"]["depth"])
    assert metadata["weights"] == [1.0, 0.5] and all(type(w) is float for w in metadata["weights"])


def test_metadata_records_the_portable_uri_not_the_container_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_ARTIFACT_MOUNT_ROOT", str(tmp_path))
    executor_input = {
        "inputs": {"parameterValues": {}},
        "outputs": {
            "artifacts": {"out": _artifact("out", "system.Artifact", "s3://bucket/run-1/typed/out")},
            "outputFile": str(tmp_path / "outputs" / "output_metadata.json"),
        },
    }
    output = execute(executor_input, typed_parameters)
    artifact = output["artifacts"]["out"]["artifacts"][0]
    assert artifact["metadata"]["model_uri"] == "s3://bucket/run-1/typed/out"
    assert (tmp_path / "s3" / "bucket" / "run-1" / "typed" / "out").is_dir()
    written = json.loads((tmp_path / "outputs" / "output_metadata.json").read_text())
    assert str(tmp_path) not in json.dumps(written)


def test_unwritable_mount_is_one_error_line_naming_the_mount(tmp_path):
    # What uid 10001 meets where the backend mounts nothing at /minio: the directory cannot be
    # made. A file in the mount's place fails the same way for any user, root included.
    _write_examples(tmp_path, 3)
    executor_input = _executor_input(tmp_path, {})
    executor_input["outputs"]["artifacts"]["stats"] = _artifact("stats", "system.Artifact", "minio://blocked/stats")
    (tmp_path / "minio" / "blocked").write_text("not a directory")
    result = _run_executor(tmp_path, executor_input)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: Cannot create the output artifact directory")
    assert f"writable volume at {tmp_path}/minio" in line

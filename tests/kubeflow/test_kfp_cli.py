"""The compile / submit / schedule commands, registered on a fresh argparse parser."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from flywheel.cli import kubeflow_commands
from flywheel.errors import ParameterError, PipelineFileError
from flywheel import errors
from flywheel.kubeflow.errors import CronExpressionError

PIPELINE_SOURCE = textwrap.dedent(
    '''
    from flywheel import Examples, Output, component, pipeline


    @component(retries=1)
    def emit(examples: Output[Examples], rows: int = 1) -> None:
        examples.properties["rows"] = rows


    @pipeline(name="cli-demo")
    def cli_demo(rows: int = 2, ratio: float = 0.5) -> None:
        emit(rows=rows)
    '''
)


@pytest.fixture
def pipeline_file(tmp_path):
    path = tmp_path / "demo_pipeline.py"
    path.write_text(PIPELINE_SOURCE)
    return str(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flywheel")
    kubeflow_commands.register(parser.add_subparsers(dest="command"))
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    return args.handler(args)


def test_compile_writes_ir(pipeline_file, tmp_path, capsys):
    out = tmp_path / "out.yaml"
    assert _run("compile", pipeline_file, "-o", str(out), "--image", "reg/flywheel:9") == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["pipelineInfo"]["name"] == "cli-demo"
    (executor,) = doc["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == "reg/flywheel:9"
    assert doc["root"]["dag"]["tasks"]["emit"]["retryPolicy"]["maxRetryCount"] == 1
    assert f"Compiled pipeline 'cli-demo' (1 tasks) to {out}" in capsys.readouterr().out


def test_compile_no_conditions_flattens_if_blocks(tmp_path):
    training = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "pipelines", "training.py")
    gated, flat = tmp_path / "gated.yaml", tmp_path / "flat.yaml"
    assert _run("compile", training, "-o", str(gated)) == 0
    assert _run("compile", training, "-o", str(flat), "--no-conditions") == 0
    assert "push" not in yaml.safe_load(gated.read_text())["root"]["dag"]["tasks"]  # inside the dsl.If group
    assert "triggerPolicy" not in yaml.safe_load(flat.read_text())["root"]["dag"]["tasks"]["push"]


def test_compile_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(PipelineFileError, match="Pipeline file not found"):
        _run("compile", str(tmp_path / "nope.py"), "-o", str(tmp_path / "x.yaml"))


def test_submit_prints_run_id_and_url(pipeline_file, kfp_server, capsys):
    code = _run("submit", pipeline_file, "--host", kfp_server.url, "--param", "rows=9", "--param", "ratio=0.25",
                "--experiment", "cli", "--token", "tok", "--service-account", "flywheel-pipeline-runner")
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["Run id: run-1", f"Dashboard: {kfp_server.url}/#/runs/details/run-1"]
    (create,) = kfp_server.state.calls("POST", "/runs")
    assert create.body["runtime_config"]["parameters"] == {"rows": 9, "ratio": 0.25}
    assert create.authorization == "Bearer tok"
    assert create.body["service_account"] == "flywheel-pipeline-runner"


def test_submit_bad_param_fails_before_connecting(pipeline_file, kfp_server):
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        _run("submit", pipeline_file, "--host", kfp_server.url, "--param", "rows")
    with pytest.raises(ParameterError, match="is an int"):
        _run("submit", pipeline_file, "--host", kfp_server.url, "--param", "rows=many")
    assert kfp_server.state.requests == []


def test_submit_requires_host(pipeline_file):
    with pytest.raises(SystemExit):
        _parser().parse_args(["submit", pipeline_file])


def test_schedule_without_host_is_local_and_sends_nothing(pipeline_file, home, kfp_server, capsys):
    _run("schedule", "create", "nightly", "--cron", "0 3 * * *", pipeline_file)
    _run("schedule", "list")
    assert "nightly" in capsys.readouterr().out
    with pytest.raises(errors.ScheduleError, match="5 fields"):
        _run("schedule", "create", "secondly", "--cron", "0 0 3 * * *", pipeline_file)
    assert kfp_server.state.requests == []


def test_schedule_bad_cron_is_reported_first(pipeline_file):
    with pytest.raises(CronExpressionError, match="hour must be between 0 and 23; got 25"):
        _run("schedule", "create", "nightly", "--cron", "0 25 * * *", pipeline_file, "--host", "http://unused")


def test_schedule_lifecycle(pipeline_file, kfp_server, capsys):
    host = ("--host", kfp_server.url)
    assert _run("schedule", "create", "nightly", "--cron", "15 3 * * *", pipeline_file, *host,
                "--max-concurrency", "2", "--param", "rows=4") == 0
    out = capsys.readouterr().out
    assert "Schedule 'nightly' created: id rr-1, cron '0 15 3 * * *'" in out
    body = kfp_server.state.calls("POST", "/recurringruns")[0].body
    assert int(body["max_concurrency"]) == 2
    assert body["no_catchup"] is True
    assert body["runtime_config"]["parameters"] == {"rows": 4}

    assert _run("schedule", "list", *host) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["ID", "NAME", "CRON", "STATE", "CONCURRENCY"]
    assert listing[1].split()[:2] == ["rr-1", "nightly"]
    assert listing[1].split()[-2:] == ["enabled", "2"]

    assert _run("schedule", "pause", "nightly", *host) == 0
    assert "Schedule 'nightly' (rr-1) paused." in capsys.readouterr().out
    _run("schedule", "list", *host)
    assert capsys.readouterr().out.splitlines()[1].split()[-2] == "paused"
    assert _run("schedule", "resume", "nightly", *host) == 0
    assert _run("schedule", "delete", "nightly", *host) == 0
    capsys.readouterr()
    _run("schedule", "list", *host)
    assert capsys.readouterr().out.strip() == "No recurring runs."


def test_schedule_catchup_flag(pipeline_file, kfp_server):
    _run("schedule", "create", "hourly", "--cron", "0 0 * * * *", pipeline_file, "--host", kfp_server.url, "--catchup")
    assert kfp_server.state.calls("POST", "/recurringruns")[0].body["no_catchup"] is False


def test_cron_help_mentions_five_field_prefix(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["schedule", "create", "--help"])
    assert "prefixed" in capsys.readouterr().out


def test_importing_the_commands_does_not_import_kfp():
    code = (
        "import sys, flywheel.cli.kubeflow_commands; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kfp', 'kfp_server_api', 'tensorflow')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_runs_with_host_lists_cluster_runs_through_main(pipeline_file, kfp_server, capsys):
    from flywheel.cli.main import main

    assert main(["submit", pipeline_file, "--host", kfp_server.url]) == 0
    capsys.readouterr()
    assert main(["runs", "--host", kfp_server.url, "--limit", "5", "--token", "t0k"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["RUN", "ID", "NAME", "STATE", "CREATED", "FINISHED"]
    assert lines[1].split()[0] == "run-1" and "PENDING" in lines[1]
    (listing,) = kfp_server.state.calls("GET", "/runs")
    assert listing.query["page_size"] == ["5"]
    assert listing.authorization == "Bearer t0k"


def test_runs_with_unreachable_host_is_one_line(capsys):
    from flywheel.cli.main import main

    assert main(["runs", "--host", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Cannot reach Kubeflow Pipelines at http://127.0.0.1:9")


def test_submit_with_registry_pvc_sends_the_mount_for_evaluate_and_push(kfp_server, capsys):
    import json
    import os

    training = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "pipelines", "training.py")
    assert _run("submit", training, "--host", kfp_server.url, "--registry-pvc", "flywheel-data") == 0
    assert _run("submit", training, "--host", kfp_server.url) == 0
    with_pvc, without = (json.dumps(call.body) for call in kfp_server.state.calls("POST", "/runs"))
    # evaluate and push, and the registry reference that feeds validate the kept schema
    assert with_pvc.count('"mountPath": "/mnt/flywheel-data"') == 3
    # the env entry, not the name: component descriptions (registry_reference's) may mention it
    assert '"name": "FLYWHEEL_REGISTRY"' in with_pvc
    assert "flywheel-data" not in without and '"name": "FLYWHEEL_REGISTRY"' not in without

"""flywheel.kubeflow.client against a local server speaking the KFP v2beta1 REST API.

Request bodies are deserialised into ``kfp_server_api`` models (the API's own
schema) before their fields are checked.
"""

from __future__ import annotations

import json
import time

import pytest

from flywheel import Examples, Input, Output, component, pipeline
from flywheel.errors import ParameterError
from flywheel.kubeflow import client
from flywheel.kubeflow.compiler import compile_pipeline
from flywheel.kubeflow.errors import CronExpressionError, KubeflowConnectionError, ScheduleError


@component
def emit(examples: Output[Examples], rows: int = 1, label: str = "y") -> None:
    examples.properties["rows"] = rows


@pipeline(name="contract")
def contract(rows: int = 2, label: str = "species") -> None:
    emit(rows=rows, label=label)


@component
def tally(examples: Input[Examples], scale: float = 1.0, label: str = "") -> None:
    """A second task: ``label`` is emit's too, ``scale`` only its own."""


@pipeline(name="tallied")
def tallied(rows: int = 2) -> None:
    tally(examples=emit(rows=rows).outputs["examples"])


class _Body:
    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body)


def _as_model(body: dict, model: str):
    import kfp_server_api

    return kfp_server_api.ApiClient().deserialize(_Body(body), model)


def test_submit_sends_pipeline_spec_and_coerced_parameters(kfp_server):
    run_id, url = client.submit(
        contract,
        kfp_server.url,
        experiment="nightly",
        params={"rows": "7"},
        service_account="flywheel-pipeline-runner",
        pipeline_root="minio://mlpipeline/flywheel",
    )

    assert run_id == "run-1"
    assert url == f"{kfp_server.url}/#/runs/details/run-1"
    (create,) = kfp_server.state.calls("POST", "/runs")
    run = _as_model(create.body, "V2beta1Run")
    assert run.pipeline_spec["pipelineInfo"]["name"] == "contract"
    assert run.pipeline_spec["root"]["dag"]["tasks"]["emit"]["componentRef"]["name"] == "comp-emit"
    assert run.runtime_config.parameters == {"rows": 7}
    assert run.display_name.startswith("contract ")
    assert run.service_account == "flywheel-pipeline-runner"
    assert run.runtime_config.pipeline_root == "minio://mlpipeline/flywheel"
    # The experiment was looked up by name, then created, and the run filed under it.
    (new_experiment,) = kfp_server.state.calls("POST", "/experiments")
    assert _as_model(new_experiment.body, "V2beta1Experiment").display_name == "nightly"
    assert run.experiment_id == "exp-1"


def test_submit_prints_no_kfp_links_and_leaves_the_process_stdout_alone(kfp_server, capsys, monkeypatch):
    import sys

    import kfp

    # What another thread would see of sys.stdout while each API call runs (an in-process KFP's
    # task logs, a server's access log): the process's own stream, never a swapped-in buffer.
    seen = []
    real = kfp.Client.create_run_from_pipeline_package

    def watching(self, *args, **kwargs):
        seen.append(sys.stdout)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(kfp.Client, "create_run_from_pipeline_package", watching)
    before = sys.stdout
    run_id, _ = client.submit(contract, kfp_server.url, experiment="nightly")

    assert seen == [before] and sys.stdout is before
    out = capsys.readouterr().out
    assert "details:" not in out  # kfp.Client's own "Experiment details: ..." / "Run details: ..." lines
    assert run_id == "run-1"


def test_submit_reuses_an_existing_experiment_and_accepts_compiled_yaml(kfp_server, tmp_path):
    client.submit(contract, kfp_server.url, experiment="nightly")
    compiled = tmp_path / "contract.yaml"
    compile_pipeline(contract, str(compiled))
    client.submit(str(compiled), kfp_server.url, experiment="nightly", params={"rows": 3})

    assert len(kfp_server.state.calls("POST", "/experiments")) == 1
    first, second = (_as_model(c.body, "V2beta1Run") for c in kfp_server.state.calls("POST", "/runs"))
    assert second.experiment_id == first.experiment_id == "exp-1"
    assert second.pipeline_spec == first.pipeline_spec
    assert second.runtime_config.parameters == {"rows": 3}


def test_submit_rejects_unknown_parameters_before_sending(kfp_server):
    with pytest.raises(ParameterError, match="has no parameter 'epochs'"):
        client.submit(contract, kfp_server.url, params={"epochs": "3"})
    assert kfp_server.state.requests == []


def _constant(spec: dict, task: str, name: str):
    return spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]


@pytest.mark.parametrize("send", ["submit", "schedule"])
def test_task_parameters_by_name_or_shorthand_become_constants_of_the_sent_pipeline(kfp_server, send):
    params = {"rows": "7", "scale": "2.5", "emit.label": "z"}  # scale: only tally has it
    if send == "submit":
        client.submit(tallied, kfp_server.url, params=params)
        (create,) = kfp_server.state.calls("POST", "/runs")
        sent = _as_model(create.body, "V2beta1Run")
    else:
        client.create_schedule("nightly", "30 2 * * *", tallied, kfp_server.url, params=params)
        (create,) = kfp_server.state.calls("POST", "/recurringruns")
        sent = _as_model(create.body, "V2beta1RecurringRun")
    assert sent.runtime_config.parameters == {"rows": 7}  # the run parameters are the pipeline's own
    assert _constant(sent.pipeline_spec, "tally", "scale") == 2.5
    assert _constant(sent.pipeline_spec, "emit", "label") == "z"
    assert set(sent.pipeline_spec["root"]["inputDefinitions"]["parameters"]) == {"rows"}


def test_a_name_several_tasks_have_is_refused_before_sending(kfp_server):
    with pytest.raises(ParameterError, match=r"say which: -p emit.label=, -p tally.label="):
        client.submit(tallied, kfp_server.url, params={"label": "y"})
    with pytest.raises(ParameterError, match=r"say which: -p emit.label=, -p tally.label="):
        client.create_schedule("nightly", "30 2 * * *", tallied, kfp_server.url, params={"label": "y"})
    assert kfp_server.state.requests == []


def test_token_is_sent_as_bearer(kfp_server):
    client.list_runs(kfp_server.url, existing_token="s3cret")
    assert kfp_server.state.requests
    assert {r.authorization for r in kfp_server.state.requests} == {"Bearer s3cret"}


def test_list_runs(kfp_server):
    client.submit(contract, kfp_server.url)
    client.submit(contract, kfp_server.url, params={"rows": 5})
    runs = client.list_runs(kfp_server.url, limit=1)

    assert [r["id"] for r in runs] == ["run-2"]
    assert set(runs[0]) == {"id", "name", "state", "created_at", "finished_at"}
    assert runs[0]["state"] == "PENDING"
    assert runs[0]["created_at"].startswith("2024-05-01T12:00:00")
    assert runs[0]["finished_at"] is None
    (listing,) = kfp_server.state.calls("GET", "/runs")
    assert listing.query["page_size"] == ["1"]
    assert listing.query["sort_by"] == ["created_at desc"]


def test_create_schedule_sends_cron_concurrency_and_no_catchup(kfp_server):
    schedule_id, url = client.create_schedule(
        "nightly-train", "30 2 * * *", contract, kfp_server.url, params={"rows": "4"},
        service_account="flywheel-pipeline-runner",
    )

    assert schedule_id == "rr-1"
    assert url == f"{kfp_server.url}/#/recurringrun/details/rr-1"
    (create,) = kfp_server.state.calls("POST", "/recurringruns")
    recurring = _as_model(create.body, "V2beta1RecurringRun")
    assert recurring.display_name == "nightly-train"
    assert recurring.trigger.cron_schedule.cron == "0 30 2 * * *"  # 5 fields -> second 0 prefixed
    assert int(recurring.max_concurrency) == 1
    assert recurring.no_catchup is True
    assert recurring.mode == "ENABLE"
    assert recurring.pipeline_spec["pipelineInfo"]["name"] == "contract"
    assert recurring.runtime_config.parameters == {"rows": 4}
    assert recurring.experiment_id == "exp-1"
    assert recurring.service_account == "flywheel-pipeline-runner"


def test_create_schedule_with_catchup_and_concurrency(kfp_server):
    client.create_schedule(
        "hourly", "0 0 * * * *", contract, kfp_server.url, max_concurrency=3, no_catchup=False
    )
    recurring = _as_model(kfp_server.state.calls("POST", "/recurringruns")[0].body, "V2beta1RecurringRun")
    assert recurring.trigger.cron_schedule.cron == "0 0 * * * *"
    assert int(recurring.max_concurrency) == 3
    assert recurring.no_catchup is False


def test_bad_cron_is_rejected_before_any_request(kfp_server):
    with pytest.raises(CronExpressionError, match="has 3 field"):
        client.create_schedule("bad", "* * *", contract, kfp_server.url)
    with pytest.raises(ScheduleError, match="max_concurrency"):
        client.create_schedule("bad", "0 3 * * *", contract, kfp_server.url, max_concurrency=0)
    assert kfp_server.state.requests == []


def test_list_pause_resume_delete_schedules(kfp_server):
    client.create_schedule("nightly", "0 3 * * *", contract, kfp_server.url)
    client.create_schedule("weekly", "0 4 * * 1", contract, kfp_server.url)

    schedules = client.list_schedules(kfp_server.url)
    assert {s["name"]: s["cron"] for s in schedules} == {"nightly": "0 0 3 * * *", "weekly": "0 0 4 * * 1"}
    assert all(s["enabled"] and s["max_concurrency"] == 1 and s["no_catchup"] for s in schedules)

    assert client.pause_schedule("nightly", kfp_server.url) == "rr-1"  # by display name
    assert kfp_server.state.calls("POST", "/recurringruns/rr-1:disable")
    assert not {s["name"]: s["enabled"] for s in client.list_schedules(kfp_server.url)}["nightly"]

    assert client.resume_schedule("rr-1", kfp_server.url) == "rr-1"  # by id
    assert kfp_server.state.calls("POST", "/recurringruns/rr-1:enable")

    client.delete_schedule("weekly", kfp_server.url)
    assert kfp_server.state.calls("DELETE", "/recurringruns/rr-2")
    assert [s["name"] for s in client.list_schedules(kfp_server.url)] == ["nightly"]


def test_unknown_schedule_is_a_one_line_error(kfp_server):
    with pytest.raises(KubeflowConnectionError) as info:
        client.pause_schedule("nope", kfp_server.url)
    message = str(info.value)
    assert message.startswith(f"Kubeflow Pipelines at {kfp_server.url} refused to pause recurring run 'nope': HTTP 404")
    assert "nope not found" in message
    assert "\n" not in message


def test_api_error_is_a_one_line_error(kfp_server):
    kfp_server.state.fail_next = (400, "pipeline spec is invalid")
    with pytest.raises(KubeflowConnectionError) as info:
        client.list_runs(kfp_server.url)
    assert "HTTP 400" in str(info.value)
    assert "pipeline spec is invalid" in str(info.value)
    assert "\n" not in str(info.value)


def test_connection_failure_is_one_clear_line(closed_port_url):
    started = time.monotonic()
    with pytest.raises(KubeflowConnectionError) as info:
        client.submit(contract, closed_port_url)
    message = str(info.value)
    assert time.monotonic() - started < 10
    assert message.startswith(f"Cannot reach Kubeflow Pipelines at {closed_port_url}: GET /apis/v2beta1/healthz failed")
    assert "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_host_that_is_not_kfp(tmp_path):
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"<html>login</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with pytest.raises(KubeflowConnectionError, match="is not a Kubeflow Pipelines API"):
            client.list_runs(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


class _Recorder:
    """A throwaway HTTP server; ``answer(handler)`` replies, every request's headers are recorded."""

    def __init__(self, answer) -> None:
        import http.server
        import threading

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen.append((self.command, self.path, self.headers.get("Authorization")))
                answer(self)

            do_GET = do_POST = _any  # noqa: N815

            def log_message(self, *args):
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _reply(handler, status: int, body: bytes = b"{}", headers: dict | None = None) -> None:
    handler.send_response(status)
    for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.parametrize("target_host", ["localhost", "127.0.0.1"])
def test_the_token_never_follows_a_redirect_to_another_host(target_host):
    other = _Recorder(lambda h: _reply(h, 200, b'{"multi_user": false}'))
    other_url = other.url.replace("127.0.0.1", target_host)
    same_origin = target_host == "127.0.0.1"
    first = _Recorder(
        lambda h: _reply(h, 302, b"", {"Location": f"{other_url}/apis/v2beta1/healthz"})
        if not same_origin
        else (
            _reply(h, 302, b"", {"Location": "/apis/v2beta1/healthz?moved=1"})
            if "moved" not in h.path
            else _reply(h, 200, b'{"multi_user": false}')
        )
    )
    try:
        client.check_health(first.url, existing_token="s3cret")
    finally:
        first.close()
        other.close()
    if same_origin:  # a redirect within the API host keeps the token
        assert [a for _, _, a in first.seen] == ["Bearer s3cret", "Bearer s3cret"]
    else:
        assert first.seen[0][2] == "Bearer s3cret"
        assert other.seen and all(a is None for _, _, a in other.seen)


def test_tokens_come_from_the_flag_a_file_or_the_environment(kfp_server, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv(client.TOKEN_ENV, "from-env")
    assert client.resolve_token("from-flag", str(token_file)) == "from-flag"
    assert client.resolve_token(None, str(token_file)) == "from-file"
    assert client.resolve_token(None, None) == "from-env"
    monkeypatch.delenv(client.TOKEN_ENV)
    assert client.resolve_token(None, None) is None
    with pytest.raises(KubeflowConnectionError, match="Cannot read the KFP token file .*nope"):
        client.resolve_token(None, str(tmp_path / "nope"))
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(KubeflowConnectionError, match="is empty"):
        client.resolve_token(None, str(tmp_path / "empty"))


def test_the_cli_reads_the_token_file(kfp_server, tmp_path, capsys):
    from flywheel.cli.main import main

    token_file = tmp_path / "token"
    token_file.write_text("file-token")
    code = main(["runs", "--host", kfp_server.url, "--token-file", str(token_file)])
    assert code == 0
    assert {r.authorization for r in kfp_server.state.requests} == {"Bearer file-token"}


def test_submit_to_an_endpoint_that_is_not_kfp_fails_clearly():
    anything_json = _Recorder(lambda h: _reply(h, 200, b"{}"))
    try:
        with pytest.raises(KubeflowConnectionError, match=r"returned no run id \(got None\).*not behave like the"):
            client.submit(contract, anything_json.url)
    finally:
        anything_json.close()
    assert any(method == "POST" for method, _, _ in anything_json.seen)  # it got as far as creating the run

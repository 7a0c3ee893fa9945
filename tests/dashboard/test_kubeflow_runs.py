"""Kubeflow runs beside local ones, the KFP run page, and a registry on S3, in a real browser.

The KFP API is tests/kfp_fake.py on loopback (kfp_server_api's model shapes); the S3 API is moto's.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from flywheel.dashboard import pages_runs
from flywheel.dashboard.kfp import KfpReader
from flywheel.registry import ModelRegistry
from tests.conftest import REPO
from tests.dashboard.conftest import cell_texts, screenshot, serving
from tests.dashboard.test_browse_runs import run_toy
from tests.kfp_fake import PREFIX, FakeKfpServer
from tests.test_registry import fake_model

HOSTILE_URI = "s3://bucket/<script>window.pwned=1</script>/model"


def at(day: int, hour: int = 12) -> datetime.datetime:
    return datetime.datetime(2024, 5, day, hour, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def kfp():
    with FakeKfpServer() as server:
        yield server



@pytest.fixture
def local_run(home) -> str:
    proc = run_toy(home, "toy-local", "count=3")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    return "toy-local"


def training_run(state) -> str:
    """A finished KFP run of the training pipeline whose push a false condition skipped."""
    state.add_artifact("11", "minio://mlpipeline/v2/artifacts/training/run-a/ingest/examples", "system.Dataset")
    state.add_artifact("12", HOSTILE_URI, "system.Model")
    state.add_artifact("13", "minio://mlpipeline/v2/artifacts/training/run-a/evaluate/evaluation", "system.Metrics")
    spec = {
        "root": {"dag": {"tasks": {
            "ingest": {"componentRef": {"name": "comp-ingest"}},
            "train": {"componentRef": {"name": "comp-train"}, "dependentTasks": ["ingest"]},
            "evaluate": {"componentRef": {"name": "comp-evaluate"}, "dependentTasks": ["train"]},
            "is-blessed": {"componentRef": {"name": "comp-is-blessed"}, "dependentTasks": ["evaluate"]},
            "condition-1": {"componentRef": {"name": "comp-condition-1"}, "dependentTasks": ["is-blessed"]},
        }}},
        "components": {"comp-condition-1": {"dag": {"tasks": {"push": {"componentRef": {"name": "comp-push"}}}}}},
    }
    tasks = [
        {"task_id": "t-root", "name": "training", "state": "SUCCEEDED"},
        {"task_id": "t-ingest", "name": "ingest", "state": "SUCCEEDED", "parent": "t-root",
         "outputs": {"examples": ["11"]}, "start": at(3, 10), "end": at(3, 10) + datetime.timedelta(seconds=42)},
        {"task_id": "t-train", "name": "train", "state": "SUCCEEDED", "parent": "t-root",
         "inputs": {"examples": ["11"]}, "outputs": {"model": ["12"]}},
        {"task_id": "t-evaluate", "name": "evaluate", "state": "SUCCEEDED", "parent": "t-root",
         "inputs": {"model": ["12"]}, "outputs": {"evaluation": ["13"]}},
        {"task_id": "t-blessed", "name": "is-blessed", "state": "SUCCEEDED", "parent": "t-root"},
        {"task_id": "t-cond", "name": "condition-1", "state": "SKIPPED", "parent": "t-root"},
        {"task_id": "t-push", "name": "push", "state": "SKIPPED", "parent": "t-cond"},
    ]
    return state.add_run("training 2024-05-03", "SUCCEEDED", run_id="run-a", created_at=at(3, 10), finished_at=at(3, 11),
                         parameters={"epochs": 20, "model_name": "penguins"}, pipeline_root="minio://mlpipeline/v2/artifacts",
                         tasks=tasks, pipeline_spec=spec)


def test_runs_list_merges_local_and_kubeflow_runs_and_pages_with_kfp_tokens(home, page, local_run, kfp, monkeypatch):
    training_run(kfp.state)
    kfp.state.add_run("nightly 2024-05-02", "FAILED", run_id="run-b", created_at=at(2), error="train: out of memory")
    kfp.state.add_run("nightly 2024-05-04", "RUNNING", run_id="run-c", created_at=at(4))
    monkeypatch.setattr(pages_runs, "PAGE_SIZE", 2)
    with serving(home, kfp=KfpReader(kfp.url)) as url:
        page.goto(f"{url}/runs")
        # Newest first across both sources: the local run is from today, the KFP runs from May 2024.
        assert cell_texts(page, "table.runs tbody tr td:first-child") == [local_run, "nightly 2024-05-04", "training 2024-05-03"]
        assert cell_texts(page, "table.runs .source") == ["local", "kubeflow", "kubeflow"]
        assert cell_texts(page, "table.runs .state-cell") == ["complete", "running", "succeeded"]
        assert page.locator(".kfp-banner").count() == 0
        assert kfp.url in page.inner_text(".kfp-source")
        screenshot(page, "runs-with-kubeflow")

        page.click("a.older")  # the local store is exhausted; KFP goes on from its page token
        page.wait_for_url("**/runs?before=end&kfp_page=2")
        assert cell_texts(page, "table.runs tbody tr td:first-child") == ["nightly 2024-05-02"]
        assert cell_texts(page, "table.runs .state-cell") == ["failed"]
        assert page.locator("a.older").count() == 0
        listed = kfp.state.calls("GET", "/runs")
        assert [r.query.get("page_token") for r in listed] == [None, ["2"]]
        assert all(r.query["page_size"] == ["2"] for r in listed)

        page.click("a.kfp-run-link")
        page.wait_for_url("**/kfp/runs/run-b")
        assert page.inner_text(".run-state") == "failed"
        assert "train: out of memory" in page.inner_text("pre.error-box")


def test_kfp_run_page_shows_task_states_a_skipped_push_parameters_and_escaped_artifact_uris(home, page, kfp):
    run_id = training_run(kfp.state)
    with serving(home, kfp=KfpReader(kfp.url)) as url:
        page.goto(f"{url}/runs")
        assert page.locator("table.runs tbody tr").count() == 1  # no local store yet: the KFP run alone
        page.click("a.kfp-run-link:text-is('training 2024-05-03')")
        page.wait_for_url(f"**/kfp/runs/{run_id}")
        # Every task but the run's root DAG, with KFP's state: the condition and the push it guards were skipped.
        assert cell_texts(page, "table.tasks .task-name") == ["ingest", "train", "evaluate", "is-blessed", "condition-1", "push"]
        assert cell_texts(page, "table.tasks .state-cell") == ["succeeded"] * 4 + ["skipped", "skipped"]
        assert page.locator("svg.dag g.node.state-SUCCEEDED").count() == 4
        skipped = page.locator("svg.dag g.node.state-SKIPPED")
        assert sorted(skipped.nth(i).get_attribute("data-node") for i in range(skipped.count())) == ["condition-1", "push"]
        # Edges from the IR (ingest->train->evaluate->is-blessed->condition-1->push); artifact flow adds none new.
        assert page.locator("svg.dag path.edge").count() == 5
        assert cell_texts(page, "table.tasks tr[data-task='ingest'] .duration") == ["42.00s"]
        params = dict(zip(cell_texts(page, "table.kv th"), cell_texts(page, "table.kv td")))
        assert params == {"epochs": "20", "model_name": "penguins"}
        assert page.inner_text(".pipeline-root") == "minio://mlpipeline/v2/artifacts"
        # Artifact URIs by id through the ArtifactService, shown as text: the hostile one is inert.
        uris = cell_texts(page, "table.tasks code.uri")
        assert uris == ["minio://mlpipeline/v2/artifacts/training/run-a/ingest/examples", HOSTILE_URI,
                        "minio://mlpipeline/v2/artifacts/training/run-a/evaluate/evaluation"]
        assert page.locator("table.tasks script").count() == 0
        assert page.evaluate("window.pwned") is None
        assert "system.Model" in page.inner_text("tr[data-task='train'] .artifacts")
        screenshot(page, "kfp-run")

        page.reload()  # artifacts are looked up once, then served from the cache
        assert cell_texts(page, "table.tasks code.uri")[1] == HOSTILE_URI
        for artifact_id in ("11", "12", "13"):
            assert len(kfp.state.calls("GET", f"/artifacts/{artifact_id}")) == 1
        assert len(kfp.state.calls("GET", f"/runs/{run_id}")) == 2

        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{url}/kfp/runs/no-such-run", timeout=10)  # noqa: S310 - loopback test server
        assert missing.value.code == 404
        assert "No Kubeflow run &#39;no-such-run&#39;" in missing.value.read().decode()
        for hostile in ("%2E%2E", "..%2Fpipelines", "x" * 300):  # path-like ids never reach the API
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{url}/kfp/runs/{hostile}", timeout=10)  # noqa: S310 - loopback test server
            assert refused.value.code == 404 and "is not a Kubeflow run id" in refused.value.read().decode()
        assert [r.path for r in kfp.state.requests if r.path.startswith(PREFIX + "/runs/")] == [PREFIX + "/runs/run-a"] * 2 + [PREFIX + "/runs/no-such-run"]


def test_an_artifact_the_api_does_not_know_is_named_by_id(home, page, kfp):
    kfp.state.add_run("one task", "SUCCEEDED", run_id="run-x",
                      tasks=[{"name": "ingest", "state": "SUCCEEDED", "outputs": {"examples": ["404"]}}])
    with serving(home, kfp=KfpReader(kfp.url)) as url:
        page.goto(f"{url}/kfp/runs/run-x")
        assert "#404" in page.inner_text("tr[data-task='ingest'] .artifacts")
        assert "HTTP 404" in page.inner_text("tr[data-task='ingest'] .artifacts")
        assert page.locator(".kfp-banner").count() == 0


def test_an_unreachable_kfp_api_is_a_banner_and_local_runs_still_show(home, page, local_run, closed_port_url):
    with serving(home, kfp=KfpReader(closed_port_url, timeout=1.0)) as url:
        response = page.goto(f"{url}/runs")
        assert response.status == 200
        banner = page.inner_text(".kfp-banner")
        assert "Kubeflow runs are not shown" in banner and f"Cannot reach Kubeflow Pipelines at {closed_port_url}" in banner
        assert "--kfp-host" in banner
        assert cell_texts(page, "table.runs tbody tr td:first-child") == [local_run]
        assert cell_texts(page, "table.runs .source") == ["local"]
        screenshot(page, "runs-kfp-unreachable")
        response = page.goto(f"{url}/kfp/runs/run-a")
        assert response.status == 200
        assert "Cannot reach Kubeflow Pipelines" in page.inner_text(".kfp-banner")
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as health:  # noqa: S310 - the probe touches no KFP
            assert health.read() == b"ok\n"


def test_a_kfp_api_that_never_answers_costs_one_timeout_then_answers_from_the_failure(home, page):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with serving(home, kfp=KfpReader(host, timeout=0.5)) as url:
            started = time.monotonic()
            page.goto(f"{url}/runs")
            first = time.monotonic() - started
            assert "timed out" in page.inner_text(".kfp-banner")
            started = time.monotonic()
            page.goto(f"{url}/runs")
            second = time.monotonic() - started
            assert "timed out" in page.inner_text(".kfp-banner")
    assert 0.5 <= first < 3.0
    assert second < 0.5  # the remembered failure, not another wait


def test_a_refused_token_is_a_banner_and_the_right_token_lists_runs(home, page, kfp):
    kfp.state.add_run("secured", "SUCCEEDED", run_id="run-s", created_at=at(5))
    kfp.state.required_token = "right-token"
    with serving(home, kfp=KfpReader(kfp.url, token="wrong-token")) as url:
        page.goto(f"{url}/runs")
        banner = page.inner_text(".kfp-banner")
        assert "HTTP 401" in banner and "--kfp-token-file" in banner
        assert "wrong-token" not in page.content()
    with serving(home, kfp=KfpReader(kfp.url, token="right-token", namespace="team-a")) as url:
        page.goto(f"{url}/runs")
        assert cell_texts(page, "table.runs tbody tr td:first-child") == ["secured"]
    last = kfp.state.calls("GET", "/runs")[-1]
    assert last.authorization == "Bearer right-token" and last.query["namespace"] == ["team-a"]


def test_models_and_monitoring_pages_read_a_registry_on_s3(home, page, s3_bucket, tmp_path):
    registry_uri = f"{s3_bucket}/registry"
    registry = ModelRegistry(registry_uri, cache_dir=str(tmp_path / "cache"))
    registry.publish("penguins", fake_model(tmp_path / "m1", "one"), metadata={"metrics": {"accuracy": 0.91}})
    registry.publish("penguins", fake_model(tmp_path / "m2", "two"), metadata={"metrics": {"accuracy": 0.95}}, reason="better")
    with serving(home, registry_uri) as url:
        page.goto(f"{url}/models")
        assert registry_uri in page.inner_text(".page-head")
        assert cell_texts(page, ".tile-title") == ["penguins"]
        assert "2 versions" in page.inner_text(".tile") and "serving v2" in page.inner_text(".tile")
        page.click("a.tile")
        page.wait_for_url("**/models/penguins")
        assert [row.get_attribute("data-version") for row in page.locator("table.versions tbody tr").all()] == ["2", "1"]
        assert cell_texts(page, "table.versions td.metric[data-metric='accuracy']") == ["0.9500", "0.9100"]
        assert cell_texts(page, "table.versions .badge.state-SERVING") == ["serving"]
        screenshot(page, "models-on-s3")
        page.goto(f"{url}/monitoring")
        assert cell_texts(page, ".tile-title") == ["penguins"]
        page.click("a.tile")
        page.wait_for_url("**/monitoring/penguins")
        assert cell_texts(page, ".page-head .badge.state-SERVING") == ["serving v2"]
        with pytest.raises(urllib.error.HTTPError) as refused:  # the name rule holds for a URI registry too
            urllib.request.urlopen(f"{url}/models/..%2Fescape", timeout=10)  # noqa: S310 - loopback test server
        assert refused.value.code == 404


def test_flywheel_ui_with_kfp_host_serves_kubeflow_runs(home, kfp, tmp_path):
    kfp.state.add_run("from the cli", "SUCCEEDED", run_id="run-cli", created_at=at(6))
    kfp.state.required_token = "file-token"
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flywheel", "ui", "--port", "0", "--kfp-host", kfp.url, "--kfp-token-file", str(token_file)],
        cwd=REPO, env=dict(os.environ, FLYWHEEL_HOME=home.root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        first = proc.stdout.readline()
        assert "flywheel dashboard for" in first, first
        base = first.split(" at ", 1)[1].split("/ ", 1)[0]
        assert proc.stdout.readline().strip() == f"Kubeflow runs from {kfp.url}"
        with urllib.request.urlopen(f"{base}/runs", timeout=10) as response:  # noqa: S310 - loopback test server
            html = response.read().decode()
        assert "from the cli" in html and 'data-source="kubeflow"' in html
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert kfp.state.calls("GET", "/runs")[0].authorization == "Bearer file-token"


def test_kfp_options_without_a_host_are_refused(home):
    done = subprocess.run([sys.executable, "-m", "flywheel", "ui", "--kfp-namespace", "team-a"], cwd=REPO, text=True,
                          env=dict(os.environ, FLYWHEEL_HOME=home.root), capture_output=True, timeout=60)
    assert done.returncode != 0
    assert "--kfp-namespace and --kfp-token-file need --kfp-host URL" in done.stderr + done.stdout


def test_a_rotated_token_file_is_read_again(kfp, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    reader = KfpReader(kfp.url, token_file=str(token_file))
    kfp.state.required_token = "first"
    assert reader.list_runs(5) == ([], "")
    token_file.write_text("second-token\n")  # the kubelet rotates a projected token in place
    kfp.state.required_token = "second-token"
    assert reader.list_runs(5) == ([], "")
    assert [r.authorization for r in kfp.state.calls("GET", "/runs")] == ["Bearer first", "Bearer second-token"]

"""Model, monitoring and schedules pages after two real training runs (penguins, few epochs).

The module trains once for all its tests (about 20 s): run 1 pushes version 1,
run 2 (triggered by an alert, regression allowed) pushes version 2. The
monitor's store, serving logs and schedules are filled through their own APIs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flywheel.home import Home
from flywheel.metadata import MetadataStore
from flywheel.registry import ModelRegistry
from flywheel.scheduling import ScheduleStore
from tests.conftest import REPO
from tests.dashboard.conftest import cell_texts, screenshot, serving
from tests.dashboard.loop_data import fill_monitoring, fill_schedules, fill_serving_logs

TRAINING = os.path.join(REPO, "pipelines", "training.py")
REASON = "alert bill_length_drift: drift.bill_length_mm 0.27 > 0.2"


def _train(home: Home, run_id: str, *extra: str) -> None:
    args = [sys.executable, "-m", "flywheel", "run", TRAINING, "--run-id", run_id, "-p", "epochs=15", *extra]
    done = subprocess.run(args, cwd=REPO, env=dict(os.environ, FLYWHEEL_HOME=home.root),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = Home(str(tmp_path_factory.mktemp("dash-training") / "home")).ensure()
    _train(home, "train-1")
    _train(home, "train-2", "-p", "train.seed=1", "-p", "max_regression=1.0", "--trigger", "alert", "--trigger-reason", REASON)
    registry = ModelRegistry(home.registry)
    assert registry.versions("penguins") == [1, 2]
    loop = fill_monitoring(home, "penguins", retrain_run="train-2")
    logs = fill_serving_logs(home, "penguins")
    fill_schedules(home, TRAINING, fired_run="train-1")
    return {"home": home, "registry": registry, "loop": loop, "logs": logs}


def _evaluation(home: Home, run_id: str) -> tuple[dict, dict]:
    store = MetadataStore(home)
    outputs = store.latest_nodes(store.get_run(run_id))["evaluate"].outputs
    with open(os.path.join(outputs["evaluation"].uri, "evaluation.json"), encoding="utf-8") as f:
        evaluation = json.load(f)
    with open(os.path.join(outputs["blessing"].uri, "blessing.json"), encoding="utf-8") as f:
        blessing = json.load(f)
    return evaluation, blessing


def test_model_page_shows_registry_evaluation_and_curves(trained, page):
    home, registry = trained["home"], trained["registry"]
    evaluation, blessing = _evaluation(home, "train-2")
    info = registry.version_info("penguins", 2)
    with open(os.path.join(registry.version_dir("penguins", 2), "history.json"), encoding="utf-8") as f:
        history = json.load(f)
    with serving(home) as url:
        page.goto(f"{url}/models")
        page.click("a.tile:has-text('penguins')")
        page.wait_for_url("**/models/penguins")
        assert cell_texts(page, "table.versions tbody td:first-child") == ["v2", "v1"]
        assert registry.serving_version("penguins") == 2
        assert page.locator("tr[data-version='2'] .badge.state-SERVING").count() == 1
        shown = {m: page.locator(f"table.overall-metrics td[data-metric='{m}']").inner_text() for m in info["metrics"]}
        assert shown == {m: f"{v:.4f}" for m, v in info["metrics"].items()}
        assert cell_texts(page, ".blessing ul.reasons li") == blessing["reasons"]
        trained_on = page.locator(".blessing .data-source").first.inner_text()
        assert trained_on.startswith("trained on palmerpenguins") and "sha256" in trained_on
        slices = evaluation["slices"]
        for feature, values in slices.items():
            for value, metrics in values.items():
                row = page.locator(f"tr[data-slice='{feature}={value}']")
                assert row.locator("td[data-metric='count']").inner_text() == str(metrics["count"])
                accuracy = metrics["balanced_accuracy"]
                assert row.locator("td[data-metric='balanced_accuracy']").inner_text() == f"{accuracy:.4f}"
        assert page.locator(".badge.diagnosis").first.inner_text() == history["diagnosis"]
        assert page.locator(".diagnosis-detail").first.inner_text() == history["detail"]
        matrix = evaluation["overall"]["confusion_matrix"]["matrix"]
        assert cell_texts(page, "svg.cm text.cm-value") == [str(v) for row in matrix for v in row]
        classes = len(evaluation["class_names"])
        roc, pr = page.locator("svg[aria-label='ROC']"), page.locator("svg[aria-label='Precision–recall']")
        assert roc.locator("polyline").count() == classes + 1 == pr.locator("polyline").count()
        learning = page.locator("svg[aria-label='loss'] polyline")
        assert learning.count() == 2  # train and validation
        screenshot(page, "model")

        page.click("a:has-text('compare with v2')")
        page.wait_for_url("**/models/penguins/compare?a=1&b=2")
        first = registry.version_info("penguins", 1)["metrics"]
        for metric, value in info["metrics"].items():
            row = page.locator(f"table.compare-metrics tr[data-metric='{metric}']")
            assert row.locator("td.a").inner_text() == f"{first[metric]:.4f}"
            assert row.locator("td.b").inner_text() == f"{value:.4f}"
            assert row.locator("td.delta").inner_text() == f"{value - first[metric]:+.4f}"
        assert page.locator("svg.cm").count() == 2
        screenshot(page, "model-compare")


def test_runs_show_alert_trigger_and_validate_report(trained, page):
    home = trained["home"]
    with serving(home) as url:
        page.goto(f"{url}/runs")
        row = page.locator("tr[data-run='train-2']")
        assert row.locator(".trigger-kind").inner_text() == "alert"
        assert row.locator(".reason").inner_text() == REASON
        assert page.locator("tr[data-run='train-1'] .trigger-kind").inner_text() == "manual"
        page.click("a.run-link:text-is('train-1')")
        page.wait_for_url("**/runs/train-1")
        nodes = cell_texts(page, "table.nodes .node-link")
        assert nodes == ["ingest", "validate", "transform", "train", "infra_validate", "evaluate", "is_blessed", "push"]
        assert page.locator("svg.dag g.execution").count() == 8
        report = page.locator("iframe").first
        report.scroll_into_view_if_needed()
        assert report.get_attribute("sandbox") == ""
        assert "Data validation" in page.frame_locator("iframe").first.locator("h1").inner_text()
        screenshot(page, "training-run")
        # The second run reused what did not change (same data): the page says which nodes hit the cache.
        store = MetadataStore(home)
        nodes = store.latest_nodes(store.get_run("train-2"))
        page.goto(f"{url}/runs/train-2")
        assert cell_texts(page, "table.nodes .cache") == ["hit" if e.cached else "miss" for e in nodes.values()]
        assert page.locator("svg.dag g.state-CACHED").count() == sum(e.cached for e in nodes.values()) > 0
        screenshot(page, "training-run-2")


def test_monitoring_page_shows_drift_predictions_feedback_alerts_rollbacks(trained, page):
    home, loop, logs = trained["home"], trained["loop"], trained["logs"]
    with serving(home) as url:
        page.goto(f"{url}/monitoring")
        page.click("a.tile:has-text('penguins')")
        page.wait_for_url("**/monitoring/penguins")
        last = {c.feature: c for c in loop["checks"][-3:]}
        for feature, check in last.items():
            row = page.locator(f"table.drift-summary tr[data-feature='{feature}']")
            assert row.locator(".statistic").inner_text() == f"{check.statistic:.4f}"
        drifted = [c for c in loop["checks"] if c.feature == "bill_length_mm" and c.drifted]
        assert page.locator("tr[data-feature='bill_length_mm'] td").last.inner_text() == f"{len(drifted)} / 6"
        # One chart per feature (and the prediction), drifted checks marked in red.
        assert page.locator(".chart-grid svg.chart").count() == 3
        assert page.locator(".chart-grid circle[fill='#dc2626']").count() == len(drifted)
        assert "40 logged predictions" in page.inner_text("body")
        bars = cell_texts(page, "svg[aria-label='predicted class'] text.bar-value")
        assert bars == [str(logs["predictions"][k]) for k in sorted(logs["predictions"])]
        perf = page.locator("table.live-performance tr[data-version='1'] td")
        assert perf.all_inner_texts() == ["v1", "20", "15", f"{15 / 20:.4f}"]
        alert = loop["alert"]
        row = page.locator(f"tr[data-alert='{loop['alert_id']}']")
        assert alert.rule in row.inner_text() and alert.action in row.inner_text()
        assert page.locator(".evidence-row .message").first.inner_text() == alert.message
        assert cell_texts(page, "table.rollbacks td")[1:4] == ["v2", "v1", "automatic"]
        screenshot(page, "monitoring")
        row.locator("a.alert-run").click()
        page.wait_for_url("**/runs/train-2")
        assert page.locator(".facts .trigger-kind").inner_text() == "alert"


def test_schedules_page_shows_next_and_last_firings(trained, page):
    home = trained["home"]
    store = ScheduleStore(home)
    nightly = store.get("nightly")
    slot, run_id = store.firings("nightly")[0]
    import datetime as dt

    with serving(home) as url:
        page.goto(f"{url}/schedules")
        row = page.locator("tr[data-schedule='nightly']")
        expected_next = dt.datetime.fromtimestamp(store.next_slot(nightly)).strftime("%Y-%m-%d %H:%M:%S")
        assert row.locator(".next").inner_text() == expected_next
        assert row.locator(".firing a").inner_text() == run_id == "train-1"
        assert row.locator(".firing .badge").get_attribute("data-state") == "COMPLETE"
        assert page.locator("tr[data-schedule='weekly'] .badge").first.inner_text() == "paused"
        assert page.locator("tr[data-schedule='weekly'] .next").inner_text() == "-"
        screenshot(page, "schedules")
        row.locator(".firing a").click()
        page.wait_for_url("**/runs/train-1")

"""Runs, run, node, artifact and lineage pages in a real browser, after real toy runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from flywheel.metadata import MetadataStore
from tests.conftest import REPO
from tests.dashboard.conftest import cell_texts, screenshot, serving

TOY_FILE = os.path.join(REPO, "tests", "dashboard", "toy.py")


def duration(seconds):
    return "-" if seconds is None else f"{seconds:.2f}s"


def run_toy(home, run_id, *params):
    """``flywheel run`` of the toy pipeline in a subprocess, as a user runs it (node logs capture stdout)."""
    args = [sys.executable, "-m", "flywheel", "run", TOY_FILE, "--run-id", run_id, "--workers", "1"]
    for param in params:
        args += ["-p", param]
    return subprocess.Popen(args, cwd=REPO, env=dict(os.environ, FLYWHEEL_HOME=home.root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def toy_runs(home):
    """Two toy runs: the first computes, the second (same parameters) is all cache hits."""
    for run_id in ("toy-first", "toy-second"):
        proc = run_toy(home, run_id, "count=4")
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
    return "toy-first", "toy-second"


def test_click_from_runs_to_node_to_artifact_to_lineage(home, page, toy_runs):
    first, second = toy_runs
    store = MetadataStore(home)
    with serving(home) as url:
        page.goto(f"{url}/runs")
        runs = store.list_runs(10)
        assert cell_texts(page, "table.runs tbody tr td:first-child") == [r.run_id for r in runs] == [second, first]
        assert cell_texts(page, "table.runs .state-cell") == ["complete", "complete"]
        assert cell_texts(page, "table.runs .duration") == [duration(r.duration_s) for r in runs]
        assert cell_texts(page, "table.runs .trigger-kind") == ["manual", "manual"]
        screenshot(page, "runs")

        page.click(f"a.run-link:text-is('{first}')")
        page.wait_for_url(f"**/runs/{first}")
        nodes = store.latest_nodes(store.get_run(first))
        assert cell_texts(page, "table.nodes .node-link") == list(nodes)
        assert cell_texts(page, "table.nodes .cache") == ["miss", "miss"]
        assert cell_texts(page, "table.nodes .duration") == [duration(e.duration_s) for e in nodes.values()]
        # The DAG: one box per node, coloured by state, and the edge between them.
        assert page.locator("svg.dag g.node.execution.state-COMPLETE").count() == 2
        assert page.locator("svg.dag path.edge").count() == 1
        screenshot(page, "run")

        page.click("table.nodes a.node-link:text-is('make_rows')")
        page.wait_for_url("**/nodes/make_rows")
        assert "writing 4 rows" in page.inner_text("pre.log")
        assert page.inner_text("table.kv").split() == ["count", "4", "sleep_s", "0.0"]
        rows = nodes["make_rows"].outputs["rows"]
        screenshot(page, "node")

        page.click(f"table.outputs a[href='/artifacts/{rows.id}']")
        page.wait_for_url(f"**/artifacts/{rows.id}")
        assert rows.uri in page.inner_text(".uri")
        props = dict(zip(cell_texts(page, "table.kv th"), cell_texts(page, "table.kv td")))
        assert props["count"] == str(rows.properties["count"]) == "4"
        assert "0\n1\n2\n3" in page.inner_text("pre.file-text")
        screenshot(page, "artifact")

        page.click("a.lineage-link")
        page.wait_for_url(f"**/artifacts/{rows.id}/lineage")
        downstream = store.lineage(rows.id, direction="downstream")
        upstream = store.lineage(rows.id, direction="upstream")
        assert [e.node_id for e in upstream] == ["make_rows"]
        assert cell_texts(page, "table.upstream a") == ["make_rows"]
        assert cell_texts(page, "table.downstream a") == [e.node_id for e in downstream] == ["summarize"]
        # The graph: producer and consumer executions, the artifact in focus, and summarize's outputs.
        assert page.locator("svg.lineage g.execution").count() == 2
        assert page.locator("svg.lineage g.artifact.focus").count() == 1
        assert page.locator("svg.lineage g.artifact").count() == 3
        screenshot(page, "lineage")


def test_cache_hits_and_report_in_sandboxed_iframe(home, page, toy_runs):
    _first, second = toy_runs
    store = MetadataStore(home)
    nodes = store.latest_nodes(store.get_run(second))
    assert all(e.cached for e in nodes.values())
    with serving(home) as url:
        page.goto(f"{url}/runs/{second}")
        assert cell_texts(page, "table.nodes .cache") == ["hit", "hit"]
        assert page.locator("svg.dag g.state-CACHED").count() == 2
        report = page.locator("iframe").first
        report.scroll_into_view_if_needed()
        assert report.get_attribute("sandbox") == ""
        frame = page.frame_locator("iframe").first
        total = nodes["summarize"].outputs["summary"].properties["total"]
        assert frame.locator("#total").inner_text() == f"total {total}" == "total 6"
        screenshot(page, "run-cached-with-report", full=False)


def test_runs_page_is_paginated(home, page):
    store = MetadataStore(home)
    for i in range(57):
        run = store.create_run(f"bulk-{i:03d}", "bulk", parameters={}, pipeline_file="")
        store.update_run(run.run_id, state="COMPLETE", end_ms=run.start_ms + 1000)
        time.sleep(0.002)  # distinct start times, as real runs have
    with serving(home) as url:
        page.goto(f"{url}/runs")
        first_page = cell_texts(page, "a.run-link")
        assert first_page == [r.run_id for r in store.list_runs(50)]
        page.click("a.older")
        page.wait_for_url("**/runs?before=*")
        assert cell_texts(page, "a.run-link") == [f"bulk-{i:03d}" for i in range(6, -1, -1)]
        assert page.locator("a.older").count() == 0


def test_live_status_updates_without_reload(home, page):
    run_id = "toy-live-1"
    proc = run_toy(home, run_id, "sleep_s=4")
    try:
        store = MetadataStore(home)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if store.latest_nodes(store.get_run(run_id)):
                    break
            except Exception:  # noqa: BLE001 - the run is not recorded yet
                pass
            time.sleep(0.1)
        with serving(home) as url:
            page.goto(f"{url}/runs")
            row = page.locator(f"tr[data-run='{run_id}']")
            assert row.locator(".badge").get_attribute("data-state") == "RUNNING"
            page.evaluate("window.__same_document = true")
            screenshot(page, "runs-live-running")
            row.locator(".badge[data-state='COMPLETE']").wait_for(timeout=40000)
            assert page.evaluate("window.__same_document === true")  # updated in place, not reloaded
            assert row.locator(".duration").inner_text() == duration(store.get_run(run_id).duration_s)

            page.goto(f"{url}/runs/{run_id}")
            assert page.locator(".run-state .badge").get_attribute("data-state") == "COMPLETE"
            assert cell_texts(page, "table.nodes .state-cell") == ["complete", "complete"]
    finally:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()

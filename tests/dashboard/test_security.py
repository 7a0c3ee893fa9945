"""Escaping, read-only serving, offline assets, loopback binding, and the ``flywheel ui`` command."""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from flywheel.metadata import MetadataStore
from flywheel.monitoring.store import Alert, DriftCheck, MonitorStore
from flywheel.scheduling import ScheduleStore
from tests.conftest import REPO
from tests.dashboard.conftest import screenshot, serving

EVIL = "<script>alert(1)</script>"


def _evil_store(home, monkeypatch):
    """A run, node, parameter, artifact property, feature, alert and schedule all named EVIL.

    Names are checked before they are stored (flywheel.names); a store written by another
    tool or an older flywheel may still hold such names, so the check is lifted while
    this store is written and the pages must escape what they find.
    """
    monkeypatch.setattr("flywheel.metadata.store.check_name", lambda kind, value: value)
    monkeypatch.setattr("flywheel.scheduling.check_name", lambda kind, value: value)
    store = MetadataStore(home)
    run = store.create_run("evil-run", EVIL, parameters={EVIL: EVIL}, pipeline_file="", trigger="alert", trigger_reason=EVIL)
    execution_id, outputs = store.start_execution(
        run, "node", "node", parameters={EVIL: EVIL}, cache_key="k", code_fingerprint="c", log_path="", inputs={},
        outputs={"out": ("Dataset", os.path.join(home.artifacts, "evil"))},
    )
    os.makedirs(os.path.join(home.artifacts, "evil"), exist_ok=True)
    store.complete_execution(execution_id, outputs={outputs["out"]: {EVIL: EVIL, "label": EVIL}}, attempts=1)
    store.update_run(run.run_id, state="COMPLETE", end_ms=run.start_ms + 10)
    monitor = MonitorStore(home)
    monitor.add_drift_checks([DriftCheck(ts=time.time(), model="penguins", version=1, window_rows=10, feature=EVIL,
                                         kind="categorical", test="chi2", statistic=0.5, threshold=0.1, drifted=True)])
    monitor.add_alert(Alert(ts=time.time(), rule=EVIL, model="penguins", version=1, metric=EVIL, value=1.0,
                            threshold=0.5, action="log", message=EVIL, evidence={EVIL: EVIL}, run_id="evil-run"))
    ScheduleStore(home).create(EVIL, "0 3 * * *", os.path.join(REPO, "pipelines", "training.py"),
                               pipeline_name=EVIL, parameters={EVIL: EVIL})
    return outputs["out"]


def test_names_from_stores_render_as_text_and_no_dialog_fires(home, page, monkeypatch):
    artifact_id = _evil_store(home, monkeypatch)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    pages = ["/runs", "/runs/evil-run", "/runs/evil-run/nodes/node", f"/artifacts/{artifact_id}",
             "/monitoring/penguins", "/schedules"]
    with serving(home) as url:
        for path in pages + [f"/artifacts/{artifact_id}/lineage"]:
            page.goto(url + path)
            assert page.locator("main script").count() == 0, path
            with urllib.request.urlopen(url + path) as response:
                html = response.read().decode()
            assert EVIL not in html, path
            if path in pages:  # (the lineage graph shows types and ids, no user-given names)
                assert EVIL in page.inner_text("main"), path  # shown, as text
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        with open(os.path.join(home.artifacts, "evil", "ok.txt"), "w", encoding="utf-8") as handle:
            handle.write("fine")
        with urllib.request.urlopen(f"{url}/artifacts/{artifact_id}/files/ok.txt") as response:
            assert response.read() == b"fine"
            assert response.headers["Content-Security-Policy"].startswith("sandbox")  # reports run without script
        try:
            urllib.request.urlopen(f"{url}/artifacts/{artifact_id}/files/..%2F..%2Fmetadata.sqlite")
            raise AssertionError("a path outside the artifact was served")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        screenshot(page, "xss-schedules")
        page.goto(url + "/monitoring/penguins")
        screenshot(page, "xss-monitoring")
        page.wait_for_timeout(300)
    assert dialogs == []


def _digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_read_only_offline_and_loopback(home, page):
    store = MetadataStore(home)
    run = store.create_run("orphan", "p", parameters={}, pipeline_file="")  # RUNNING, owned by a pid ...
    store.update_run(run.run_id, pid=2 ** 22 + 12345)  # ... that does not exist: the dashboard shows LOST
    before = _digest(home.metadata_db)
    files_before = sorted(os.listdir(home.root))
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    with serving(home) as url:
        for path in ("/runs", "/runs/orphan", "/models", "/monitoring", "/schedules"):
            page.goto(url + path)
            assert page.locator("link[rel=stylesheet]").count() == 1
        page.goto(url + "/runs")
        assert page.locator("tr[data-run='orphan'] .badge").inner_text() == "lost"
        # Every script, style and image came from the dashboard itself (no CDN).
        assert requested and all(r.startswith(url + "/") for r in requested), requested
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port))
        conn.request("POST", "/runs", body=b"x")
        assert conn.getresponse().status == 405
        conn.close()
        conn = http.client.HTTPConnection(host, int(port))
        conn.request("GET", "/runs", headers={"Host": "evil.example:80"})
        assert conn.getresponse().status == 403  # DNS rebinding: another site's name pointing here
        conn.close()
        with urllib.request.urlopen(url + "/runs") as response:
            csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert _digest(home.metadata_db) == before  # nothing written (not even the orphan's reconciliation)
    assert sorted(os.listdir(home.root)) == files_before  # no monitor or schedule store created by looking
    assert MetadataStore(home).get_run("orphan").state == "FAILED"  # the CLI's own reconciliation still works


def test_ui_command_binds_loopback_and_serves(home):
    script = (
        "import argparse, sys\n"
        "from flywheel.cli import ui_commands\n"
        "parser = argparse.ArgumentParser(); parser.add_argument('--home')\n"
        "ui_commands.register(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.handler(args))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, "--home", home.root, "ui", "--port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert "flywheel dashboard for" in line, line
        url = line.split(" at ")[1].split("/ ")[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/runs") as response:
            assert response.status == 200 and "No runs yet" in response.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

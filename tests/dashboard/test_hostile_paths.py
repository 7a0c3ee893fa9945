"""Hostile URLs and a damaged home: the dashboard answers 404 or a page, never a 500 or a file outside the home."""

from __future__ import annotations

import json
import os

import pytest

from flywheel.dashboard.server import Dashboard
from flywheel.dashboard.sources import Sources
from flywheel.metadata import MetadataStore
from flywheel.registry import ModelRegistry
from flywheel.serving.logs import REQUESTS

SECRET = "root:x:0:0:secret-outside-the-artifact"


@pytest.fixture
def artifact(home, tmp_path):
    """(dashboard, artifact id, artifact dir, a secret file outside the home)."""
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    store = MetadataStore(home)
    run = store.create_run("r1", "p", parameters={}, pipeline_file="", trigger="manual", trigger_reason="")
    directory = os.path.join(home.artifacts, "a1")
    os.makedirs(directory)
    execution_id, outputs = store.start_execution(
        run, "node", "node", parameters={}, cache_key="k", code_fingerprint="c", log_path="", inputs={},
        outputs={"out": ("Dataset", directory)},
    )  # fmt: skip
    store.complete_execution(execution_id, outputs={outputs["out"]: {}}, attempts=1)
    store.update_run(run.run_id, state="COMPLETE", end_ms=run.start_ms + 10)
    with open(os.path.join(directory, "ok.txt"), "w", encoding="utf-8") as handle:
        handle.write("inside")
    os.symlink(secret, os.path.join(directory, "passwd.txt"))
    os.symlink(os.path.join(directory, "gone.txt"), os.path.join(directory, "dangling.txt"))
    return Dashboard(Sources(home)), outputs["out"], directory, str(secret)


def test_the_inline_preview_never_follows_a_link_out_of_the_artifact(artifact):
    dashboard, artifact_id, _, _ = artifact
    response = dashboard.handle(f"/artifacts/{artifact_id}")
    html = response.body.decode()
    assert response.status == 200 and "inside" in html  # the real file is previewed
    assert SECRET not in html and "passwd.txt" not in html and "dangling.txt" not in html
    for name in ("passwd.txt", "dangling.txt"):
        assert dashboard.handle(f"/artifacts/{artifact_id}/files/{name}").status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/artifacts/" + "9" * 5000,
        "/artifacts/" + "9" * 5000 + "/lineage",
        "/artifacts/" + "9" * 19,
        "/artifacts/\u0661\u0662",  # Arabic-Indic digits match \d
        "/artifacts/{id}/files/ok%00.txt",
        "/artifacts/{id}/files/..%2f..%2f..%2fetc%2fpasswd",
        "/models/penguins?version=" + "9" * 5000,
        "/models/penguins/compare?a=" + "9" * 5000 + "&b=1",
        "/monitoring/..%2f..%2ftrav",
        "/monitoring/a%00b",
        "/models/..%2f..%2ftrav",
    ],
)
def test_hostile_urls_are_404_not_500(artifact, path):
    dashboard, artifact_id, _, secret = artifact
    registry = ModelRegistry(os.path.join(dashboard.sources.home.root, "registry"))
    version_dir = os.path.join(registry.model_dir("penguins"), "1")
    os.makedirs(version_dir)
    response = dashboard.handle(path.replace("{id}", str(artifact_id)))
    assert response.status == 404, response.body.decode()[:500]
    assert SECRET not in response.body.decode()


def test_monitoring_a_traversal_name_reads_nothing_outside_the_home(artifact, tmp_path):
    dashboard, _, _, _ = artifact
    home = dashboard.sources.home.root
    # what /monitoring/../../trav would have read: <home>/serving/../../trav/requests
    outside = os.path.join(home, "serving", "..", "..", "trav", REQUESTS)
    os.makedirs(outside)
    with open(os.path.join(outside, "x.jsonl"), "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"ts": 4e9, "prediction": "LEAKED-CLASS", "features": {}}) + "\n")
    response = dashboard.handle("/monitoring/..%2f..%2ftrav")
    assert response.status == 404 and "LEAKED-CLASS" not in response.body.decode()
    assert "must start with a letter or digit" in response.body.decode()


@pytest.mark.parametrize(
    "alias", [b'{"version": null}', b"[]", b"\xff\xfe", b'{"version": "1"}', b'{"version": ' + b"9" * 5000 + b"}"]
)
def test_a_damaged_serving_alias_and_version_json_still_render(home, alias):
    registry = ModelRegistry(home.registry)
    for version in (1, 2):
        directory = os.path.join(registry.model_dir("penguins"), str(version))
        os.makedirs(directory)
    with open(os.path.join(registry.model_dir("penguins"), "1", "version.json"), "w", encoding="utf-8") as handle:
        handle.write("[1, 2]")  # a list where an object belongs
    with open(os.path.join(registry.model_dir("penguins"), "2", "version.json"), "w", encoding="utf-8") as handle:
        handle.write('{"pushed_at": "2026-12-01T00:00:00", "metrics": {"accuracy": 0.9}}')
    with open(os.path.join(registry.model_dir("penguins"), "serving.json"), "wb") as handle:
        handle.write(alias)
    dashboard = Dashboard(Sources(home))
    for path in ("/models", "/models/penguins", "/monitoring/penguins"):
        response = dashboard.handle(path)
        assert response.status == 200, (path, response.body.decode()[:800])
    compare = dashboard.handle("/models/penguins/compare")  # v1 against v2: v1's version.json is damaged
    assert compare.status == 404 and "damaged version.json" in compare.body.decode()
    assert "serving alias" in dashboard.handle("/models/penguins").body.decode()

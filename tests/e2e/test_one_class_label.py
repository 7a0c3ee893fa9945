"""#15 item 1 through the CLI: penguins with every species set to one value is stopped at train
(nothing blessed, nothing pushed), and its inferred schema is not the one the next run keeps."""

from __future__ import annotations

import os
import subprocess
import sys

import palmerpenguins

from flywheel.home import Home
from flywheel.metadata import MetadataStore
from tests.conftest import REPO

PIPELINE = os.path.join(REPO, "pipelines", "training.py")


def test_a_one_class_label_stops_the_run_and_its_schema_is_not_kept(tmp_path):
    home = Home(str(tmp_path / "home")).ensure()
    environ = dict(os.environ, FLYWHEEL_HOME=home.root)
    frame = palmerpenguins.load_penguins()
    one_class, good = tmp_path / "one-class.csv", tmp_path / "penguins.csv"
    frame.assign(species="Adelie").to_csv(one_class, index=False)
    frame.to_csv(good, index=False)

    def flywheel(data):
        return subprocess.run(
            [sys.executable, "-m", "flywheel", "run", PIPELINE, "-p", f"data_path={data}", "-p", "epochs=5"],
            cwd=REPO, env=environ, capture_output=True, text=True, timeout=600,
        )

    refused = flywheel(one_class)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "has 1 class(es) in the train split" in refused.stdout and "only ['Adelie']" in refused.stdout
    store = MetadataStore(home)
    failed_run = store.list_runs(1)[0]
    nodes = store.latest_nodes(failed_run)
    assert nodes["validate"].state == "COMPLETE" and nodes["train"].state == "FAILED"
    assert "evaluate" not in nodes and "push" not in nodes
    assert not os.path.exists(os.path.join(home.registry, "penguins"))

    accepted = flywheel(good)

    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    nodes = store.latest_nodes(store.list_runs(1)[0])
    assert "curated_schema" not in nodes["validate"].inputs  # the failed run's one-class schema was not kept
    assert nodes["push"].outputs["pushed_model"].properties["version"] == 1

"""Bundled digits exported as images, and the digits pipeline end to end through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flywheel.components import examples_io
from flywheel.components.ingest import ingest
from flywheel.datasets import digits_arrays, export_digits
from flywheel.dsl.artifacts import Examples
from flywheel.errors import FlywheelError, ParameterError
from flywheel.home import Home
from flywheel.metadata import MetadataStore
from tests.conftest import REPO


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return export_digits(str(root / "folders")), export_digits(str(root / "digits"), "npz")


def test_export_writes_all_1797_digits_as_class_folders_and_npz(exported):
    folders, npz = exported
    images, labels = digits_arrays()
    assert sorted(os.listdir(folders)) == [str(d) for d in range(10)]
    assert sum(len(os.listdir(os.path.join(folders, d))) for d in os.listdir(folders)) == 1797
    first = np.asarray(Image.open(os.path.join(folders, str(labels[0]), "0000.png")))
    assert first.shape == (8, 8) and np.array_equal(first, images[0, ..., 0])
    assert images.max() == 255 and images.dtype == np.uint8
    assert npz.endswith("digits.npz")
    with np.load(npz, allow_pickle=False) as data:
        assert np.array_equal(data["images"], images) and np.array_equal(data["labels"], labels)


def test_export_refuses_to_overwrite_and_unknown_formats(exported):
    folders, npz = exported
    with pytest.raises(FlywheelError, match="not empty; pass overwrite=True"):
        export_digits(folders)
    with pytest.raises(FlywheelError, match="exists already"):
        export_digits(npz, "npz")
    with pytest.raises(ParameterError, match="The 'format' parameter of export_digits must be one of 'folders', 'npz'"):
        export_digits(folders, "tfrecord")


def test_folders_npz_and_bundled_source_ingest_to_the_same_splits(exported, tmp_path):
    folders, npz = exported
    splits = []
    for i, path in enumerate((folders, npz, "sklearn-digits")):
        examples = Examples(uri=str(tmp_path / f"ex{i}"))
        os.makedirs(examples.uri)
        ingest(examples=examples, path=path)
        assert examples.properties["image_shape"] == [8, 8, 1]
        assert examples.properties["class_names"] == [str(d) for d in range(10)]
        per_split = {}
        for split in ("train", "eval"):
            images, frame = examples_io.read_images(examples, split)
            keys = sorted(image.tobytes() + label.encode() for image, label in zip(images, frame["label"]))
            per_split[split] = keys
        splits.append(per_split)
    assert splits[0] == splits[1] == splits[2]
    assert 300 < len(splits[0]["eval"]) < 420


def test_dataset_cli_hook_exports(tmp_path, capsys):
    import argparse

    from flywheel.cli import dataset_commands

    parser = argparse.ArgumentParser()
    dataset_commands.register(parser.add_subparsers())
    args = parser.parse_args(["datasets", "export-digits", str(tmp_path / "d"), "--format", "npz"])
    assert args.handler(args) == 0
    assert os.path.isfile(tmp_path / "d.npz") and "wrote 1797 digits" in capsys.readouterr().out


def test_digits_pipeline_runs_end_to_end_from_exported_folders(exported, tmp_path):
    folders, _ = exported
    home = Home(str(tmp_path / "home")).ensure()
    result = subprocess.run(
        [sys.executable, "-m", "flywheel", "run", os.path.join(REPO, "pipelines", "digits.py"),
         "-p", f"data_path={folders}", "-p", "epochs=6", "-p", "mixup_alpha=0.2"],
        cwd=REPO, env=dict(os.environ, FLYWHEEL_HOME=home.root), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    store = MetadataStore(home)
    run = store.list_runs(1)[0]
    nodes = store.latest_nodes(run)
    assert run.state == "COMPLETE"
    assert [n for n in ("ingest", "transform", "train", "evaluate", "push") if nodes[n].state == "COMPLETE"] == [
        "ingest", "transform", "train", "evaluate", "push"
    ]
    assert nodes["ingest"].outputs["examples"].properties["modality"] == "image"
    assert nodes["train"].outputs["model"].properties["mixup_alpha"] == 0.2
    assert nodes["evaluate"].outputs["evaluation"].properties["accuracy"] >= 0.9
    pushed = nodes["push"].outputs["pushed_model"].properties
    assert pushed["pushed"] is True and pushed["model_name"] == "digits"

"""augment(method="diffusion") on a class-folder image tree: the same artifact as the GAN's."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from flywheel.components import examples_io
from flywheel.components.augment import augment
from flywheel.components.ingest import ingest
from flywheel.dsl.artifacts import Examples
from flywheel.errors import ParameterError


def _class_tree(root, counts: dict[str, int], shape=(7, 5)) -> str:
    """Class folders of grey images: each class its own brightness band (odd sizes: the one-level U-Net)."""
    rng = np.random.RandomState(0)
    for band, (name, count) in enumerate(counts.items()):
        os.makedirs(root / name)
        for i in range(count):
            pixels = rng.randint(band * 128, band * 128 + 128, shape).astype("uint8")
            Image.fromarray(pixels, mode="L").save(root / name / f"{i}.png")
    return str(root)


@pytest.fixture
def tree_examples(tmp_path, new_artifact) -> Examples:
    examples = new_artifact(Examples, "tree")
    ingest(examples=examples, path=_class_tree(tmp_path / "imgs", {"dark": 14, "light": 8}), eval_ratio=0.2)
    return examples


def test_diffusion_tops_up_every_class_and_copies_the_other_splits(tree_examples, new_artifact, capfd):
    augmented = new_artifact(Examples, "augmented")
    augment(examples=tree_examples, augmented=augmented, method="diffusion", target_per_class=20, diffusion_epochs=1, seed=0)

    assert "diffusion epoch 1/1: loss" in capfd.readouterr().err  # progress per epoch
    images, frame = examples_io.read_images(augmented, "train")
    original, original_frame = examples_io.read_images(tree_examples, "train")
    assert images.dtype == np.uint8 and images.shape[1:] == (7, 5, 1)
    assert frame.groupby("label").size().to_dict() == {"dark": 20, "light": 20}
    synthetic = frame["synthetic"].to_numpy(dtype=bool)
    assert synthetic.sum() == 40 - len(original) == augmented.properties["synthetic_rows"]
    assert augmented.properties["augmentation"] == "diffusion"
    np.testing.assert_array_equal(images[~synthetic], original)  # real rows kept, in order
    assert frame.loc[~synthetic, "label"].tolist() == original_frame["label"].tolist()
    eval_images, _ = examples_io.read_images(augmented, "eval")
    np.testing.assert_array_equal(eval_images, examples_io.read_images(tree_examples, "eval")[0])


def test_a_bad_diffusion_setting_names_the_parameter(tree_examples, new_artifact):
    with pytest.raises(ParameterError, match="The 'epochs' parameter of ConditionalDiffusion .* Got 0 instead"):
        augment(examples=tree_examples, augmented=new_artifact(Examples, "out"), method="diffusion", diffusion_epochs=0)

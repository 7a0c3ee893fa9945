"""Model families of train: every family trains, saves, reloads safely and serves raw pixels; bad combos fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flywheel.components import examples_io
from flywheel.models import images as image_models
from flywheel.models import families as model_families
from flywheel.models import layers as model_layers
from flywheel.models import features
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.datasets import digits_arrays
from flywheel.dsl.artifacts import Examples, Model, TransformGraph
from flywheel.errors import FlywheelError, ParameterError
from flywheel.component_call import call_component
from flywheel.home import Home
from flywheel.metadata import MetadataStore
from flywheel.techniques.explain_image import GradCam
from tests.conftest import REPO

# 300 digits leave as few as 3 of a class in the eval split: below train's default data gate of 5.
TINY = {"conv_widths": [8, 16], "hidden_units": [16], "dropout": 0.0, "learning_rate": 0.005, "batch_size": 32,
        "min_class_examples": 2}


def _digits_npz(path: str, rows: int) -> str:
    """The first ``rows`` bundled digits as an ``.npz`` that ingest reads."""
    images, labels = digits_arrays()
    np.savez_compressed(path, images=images[:rows], labels=labels[:rows])
    return path


def _ingest_and_transform(root, rows: int) -> tuple[Examples, TransformGraph]:
    examples = Examples(uri=str(root / "ex"))
    call_component(ingest, {}, {"examples": examples}, {"path": _digits_npz(str(root / "digits.npz"), rows)})
    graph = TransformGraph(uri=str(root / "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    return examples, graph


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """300 digits (about 190 to fit, 50 to validate, 60 to evaluate) ingested and transformed once."""
    return _ingest_and_transform(tmp_path_factory.mktemp("digits"), 300)


def _train(examples, graph, uri, **params) -> Model:
    model = Model(uri=str(uri))
    call_component(train, {"examples": examples, "transform_graph": graph}, {"model": model}, params)
    return model


def _reloaded_and_served(examples, model, rows: int = 16) -> tuple[np.ndarray, np.ndarray, object]:
    """(probabilities of the safely reloaded .keras, of the serving SavedModel on raw pixels, the net)."""
    import tensorflow as tf

    pixels, _ = examples_io.read_images(examples, "eval")
    raw = pixels[:rows].astype("float32")
    net = model_layers.load_model(model.path(features.MODEL_FILE))
    reloaded = np.asarray(net.predict(raw, verbose=0))
    serve = tf.saved_model.load(model.path(features.SERVING_DIR)).signatures["serving_default"]
    served = serve(image=tf.constant(raw))["probabilities"].numpy()
    return reloaded, served, net


# The layer that makes each family what it is, found in the reloaded model.
SIGNATURE_LAYER = {"mlp": "Flatten", "cnn": "MaxPooling2D", "resnet": "Add", "vit": "MultiHeadAttention"}


@pytest.mark.parametrize("family", ["mlp", "cnn", "resnet", "vit"])
def test_family_trains_reloads_safely_and_serves_raw_pixels(tiny_digits, tmp_path, family):
    examples, graph = tiny_digits
    model = _train(examples, graph, tmp_path / family, architecture=family, epochs=4, early_stopping_patience=0, **TINY)

    reloaded, served, net = _reloaded_and_served(examples, model)
    with open(model.path("history.json")) as f:
        losses = json.load(f)["history"]["loss"]

    assert model.properties["architecture"] == family
    assert losses[-1] < losses[0]  # it learned on the tiny subset
    assert np.allclose(reloaded.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(served, reloaded, atol=1e-5)
    assert net.inputs[0].shape[1:] == (8, 8, 1)  # raw 8x8 pixels in; scaling happens inside
    layer_types = {type(layer).__name__ for layer in net._flatten_layers()}
    assert SIGNATURE_LAYER[family] in layer_types and "Lambda" not in layer_types
    assert model.properties["parameters"] == net.count_params()


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_builder_reload_predicts_identical_probabilities(tmp_path, family):
    """A briefly fitted model (BatchNorm statistics moved) predicts bit-for-bit alike after a safe reload."""
    import keras

    keras.utils.set_random_seed(0)
    images, labels = digits_arrays()
    spec = {"image_shape": [8, 8, 1], "pixel_max": 255.0, "normalize": False, "image_input": "image"}
    net = model_families.build_image_classifier(
        family, (8, 8, 1), 10, widths=(8, 16), dense_units=(), preprocess=image_models.build_image_preprocess(spec)
    )
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    net.fit(images[:64].astype("float32"), labels[:64], epochs=1, batch_size=32, verbose=0)
    net.save(str(tmp_path / "m.keras"))

    again = model_layers.load_model(str(tmp_path / "m.keras"))
    batch = images[64:80].astype("float32")
    assert np.array_equal(np.asarray(again.predict(batch, verbose=0)), np.asarray(net.predict(batch, verbose=0)))


def test_resnet_blocks_have_projection_shortcuts_and_gradcam_finds_the_last_block_conv():
    import keras

    net = model_families.build_resnet((8, 8, 1), 10, widths=(8, 16), blocks_per_stage=2)
    convs = [layer.name for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]

    assert convs[-1] == "res1_1_conv2"
    assert GradCam().fit(net).layer_name_ == "res1_1_conv2"  # explain's Grad-CAM weights the main path's last conv
    assert net.get_layer("res1_0_proj").output.shape[1:] == (4, 4, 16)  # stride-2 stage: projected shortcut
    assert "res0_0_proj" not in [layer.name for layer in net.layers]  # same width, stride 1: identity
    assert net.get_layer("res1_1_add").output.shape[1:] == (4, 4, 16)


def test_vit_tokens_positions_and_patch_size(tmp_path):
    net = model_families.build_vit((8, 8, 1), 10, width=12, depth=3, heads=3)
    assert net.get_layer("tokens").output.shape[1:] == (16, 12)  # 2x2 patches of an 8x8 image
    assert net.get_layer("position_embedding").get_weights()[0].shape == (16, 12)
    assert sum(1 for layer in net.layers if type(layer).__name__ == "MultiHeadAttention") == 3
    with pytest.raises(FlywheelError, match="patch_size <= 8"):
        model_families.build_vit((8, 8, 1), 10, patch_size=9)


def test_efficientnet_b0_resizes_repeats_channels_scales_once_trains_reloads_and_serves(tmp_path):
    """Built as train builds it (train's own fit of B0 takes ~50 s here: benchmarks/model_families.py covers it)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    images, labels = digits_arrays()
    spec = {"image_shape": [8, 8, 1], "pixel_max": 255.0, "normalize": False, "image_input": "image"}
    net = model_families.build_image_classifier(
        "efficientnet_b0", (8, 8, 1), 10, dense_units=(), dropout=0.0,
        preprocess=image_models.build_image_preprocess(spec),
    )
    raw = images[48:56].astype("float32")

    assert net.count_params() > 4_000_000 and net.inputs[0].shape[1:] == (8, 8, 1)
    assert net.get_layer("resize").output.shape[1:] == (32, 32, 1)
    assert net.get_layer("gray_to_rgb").output.shape[1:] == (32, 32, 3)
    # EfficientNet's own stem divides by 255; what reaches its first conv must be the [0, 1] pixels, not /255 twice.
    stem = np.asarray(keras.Model(net.inputs, net.get_layer("stem_conv_pad").input)(raw))
    assert 0.9 < stem.max() <= 1.0 + 1e-5 and stem.min() >= -1e-5
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.Normalization)]
    assert norms and all(np.allclose(layer.mean, 0.0) and np.allclose(layer.variance, 1.0) for layer in norms)

    # Eager: tracing B0's train step costs ~20 s of CPU, three eager batches ~4 s.
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    net.fit(images[:48].astype("float32"), labels[:48], epochs=1, batch_size=16, verbose=0)
    net.save(str(tmp_path / "b0.keras"))
    image_models.export_image_serving(net, spec, str(tmp_path / "serving"))
    again = model_layers.load_model(str(tmp_path / "b0.keras"))
    expected = np.asarray(net(raw, training=False))

    assert np.array_equal(np.asarray(again(raw, training=False)), expected)
    assert all(layer.momentum == model_families.BN_MOMENTUM
               for layer in again.layers if isinstance(layer, keras.layers.BatchNormalization))
    serve = tf.saved_model.load(str(tmp_path / "serving")).signatures["serving_default"]
    assert np.allclose(serve(image=tf.constant(raw))["probabilities"].numpy(), expected, atol=1e-5)


def test_unknown_family_and_image_family_on_tables_are_clear_errors(tmp_path):
    from tests.components.model_fixtures import imbalanced_examples

    examples = imbalanced_examples(str(tmp_path / "ex"))
    graph = TransformGraph(uri=str(tmp_path / "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    with pytest.raises(ParameterError, match=r"for tabular Examples .*Got 'vit' for tabular data instead"):
        _train(examples, graph, tmp_path / "m", architecture="vit")
    valid = r"must be one of \('auto', 'mlp', 'cnn', 'resnet', 'efficientnet_b0', 'vit'\)"
    with pytest.raises(ParameterError, match=valid):
        _train(examples, graph, tmp_path / "m2", architecture="transformer")
    assert model_families.resolve_family("auto", image=False) == "mlp"
    assert model_families.resolve_family("auto", image=True) == "cnn"


def test_digits_pipeline_with_resnet_runs_end_to_end(tmp_path):
    home = Home(str(tmp_path / "home")).ensure()
    data = _digits_npz(str(tmp_path / "digits.npz"), 400)
    result = subprocess.run(
        [sys.executable, "-m", "flywheel", "run", os.path.join(REPO, "pipelines", "digits.py"),
         "-p", f"data_path={data}", "-p", "architecture=resnet", "-p", "epochs=6", "-p", "conv_widths=[8, 16]",
         "-p", "hidden_units=[]", "-p", "learning_rate=0.01", "-p", 'thresholds={"accuracy": 0.5}'],
        cwd=REPO, env=dict(os.environ, FLYWHEEL_HOME=home.root), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    store = MetadataStore(home)
    nodes = store.latest_nodes(store.list_runs(1)[0])
    assert all(nodes[n].state == "COMPLETE" for n in ("ingest", "transform", "train", "evaluate", "push"))
    assert nodes["train"].outputs["model"].properties["architecture"] == "resnet"
    assert nodes["evaluate"].outputs["evaluation"].properties["accuracy"] >= 0.5
    assert nodes["push"].outputs["pushed_model"].properties["pushed"] is True

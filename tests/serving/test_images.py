"""Serving an image model (the digits CNN): pixel requests in both TF Serving shapes, checked before the model."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.components import examples_io
from flywheel.models.layers import load_model
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import Examples, Model, TransformGraph
from flywheel.component_call import call_component
from flywheel.serving.background import BackgroundServer
from flywheel.serving.errors import RequestError
from flywheel.serving.inputs import FeatureSchema, parse_predict
from flywheel.serving.server import ServeConfig
from tests.serving.conftest import call

IMAGE_SPEC = {"modality": "image", "label": "label", "label_vocabulary": ["0", "1"], "image_input": "image",
              "image_shape": [2, 3, 1], "pixel_max": 255.0}
SCHEMA = FeatureSchema.from_spec(IMAGE_SPEC)
PIXELS = [[[0], [16], [255]], [[3], [4], [5]]]


def _error(payload) -> str:
    with pytest.raises(RequestError) as caught:
        parse_predict(payload, SCHEMA)
    assert caught.value.status == 400
    return str(caught.value)


def test_image_requests_in_every_tf_serving_shape_become_one_float32_batch():
    flat = [[0, 16, 255], [3, 4, 5]]  # one channel: H x W is taken too
    shapes = [
        {"instances": [{"image": PIXELS}, {"image": flat}]},
        {"instances": [PIXELS, flat]},
        {"inputs": {"image": [PIXELS, flat]}},
        {"inputs": [PIXELS, flat]},
    ]
    for payload in shapes:
        parsed = parse_predict(payload, SCHEMA)
        assert parsed.size == 2 and list(parsed.columns) == ["image"]
        batch = parsed.columns["image"]
        assert batch.dtype == np.float32 and batch.shape == (2, 2, 3, 1)
        assert batch[0, 0, 2, 0] == 255.0 and np.array_equal(batch[0], batch[1] * 0 + batch[0])
        assert np.array_equal(batch[1, :, :, 0], np.array(flat, dtype=np.float32))
    assert parse_predict(shapes[0], SCHEMA).rows()[0] == {"image": PIXELS}  # what the request log keeps


def test_bad_images_are_refused_naming_the_instance_and_the_expected_shape():
    assert "instances[1] has shape 3x2; the model takes images of shape 2x3x1 or 2x3" in _error(
        {"instances": [PIXELS, [[1, 2], [3, 4], [5, 6]]]}
    )
    assert "instances[0] must be nested JSON lists of numbers" in _error({"instances": [[["a", "b", "c"], [1, 2, 3]]]})
    assert "instances[0] must be nested JSON lists of numbers" in _error({"instances": [[[1, 2, 3], [1, 2]]]})
    assert "instances[0] must be nested JSON lists of numbers" in _error({"instances": [[[True, False, True], [True, True, True]]]})
    assert "not a finite number" in _error({"instances": [[[float("nan"), 1, 2], [1, 2, 3]]]})
    assert "unknown feature(s) ['pixels']" in _error({"instances": [{"image": PIXELS, "pixels": 1}]})
    assert "missing the feature(s) ['image']" in _error({"inputs": {"pixels": [PIXELS]}})
    assert "non-empty JSON list" in _error({"instances": []})


@pytest.fixture(scope="module")
def digits_server(tmp_path_factory):
    """A small digits CNN pushed and served; yields (server, eval pixels, the Keras model)."""
    from flywheel.registry import ModelRegistry

    root = tmp_path_factory.mktemp("digits-serving")
    examples, graph, model = Examples(uri=str(root / "ex")), TransformGraph(uri=str(root / "tg")), Model(uri=str(root / "m"))
    call_component(ingest, {}, {"examples": examples}, {"path": "sklearn-digits"})
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    call_component(
        train, {"examples": examples, "transform_graph": graph}, {"model": model},
        {"conv_widths": [8], "hidden_units": [16], "epochs": 3, "early_stopping_patience": 0},
    )
    registry = ModelRegistry(str(root / "registry"))
    registry.set_serving("digits", registry.push("digits", model.uri).version)
    pixels, _ = examples_io.read_images(examples, "eval")
    net = load_model(model.path("model.keras"))
    config = ServeConfig(registry=registry.root, home=str(root / "home"), model="digits", port=0, max_wait_ms=2.0)
    with BackgroundServer(config) as background:
        yield background, pixels[:5], net


def test_the_served_digits_model_answers_pixels_like_the_keras_model(digits_server):
    server, pixels, net = digits_server
    url = f"{server.url}/v1/models/digits"
    expected = net.predict(pixels.astype("float32"), verbose=0)

    status, rows, _ = call(f"{url}:predict", {"instances": [{"image": p.tolist()} for p in pixels]})
    assert status == 200, rows
    assert np.allclose(rows["predictions"], expected, atol=1e-5)
    assert rows["classes"] == [str(i) for i in expected.argmax(axis=1)]
    status, columns, _ = call(f"{url}:predict", {"inputs": [p[:, :, 0].tolist() for p in pixels]})
    assert status == 200 and np.allclose(columns["outputs"], expected, atol=1e-5)

    status, body, _ = call(f"{url}:predict", {"instances": [np.zeros((4, 4)).tolist()]})
    assert status == 400 and "the model takes images of shape 8x8x1 or 8x8" in body["error"]

    status, metadata, _ = call(f"{url}/metadata")
    inputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert [d["size"] for d in inputs["image"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    assert metadata["flywheel"]["image"]["shape"] == [8, 8, 1]

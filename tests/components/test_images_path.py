"""The image path through the components: ingest (folders / npz), transform, train (CNN), evaluate."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from flywheel.models import features
from flywheel.components import examples_io
from flywheel.models import layers as model_layers
from flywheel.components.ingest.images import ImageReadError
from flywheel.components.evaluate import evaluate
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.dsl.artifacts import ClassificationMetrics, Examples, Markdown, Model, ModelBlessing, ModelEvaluation, TransformGraph
from flywheel.errors import ParameterError
from flywheel.component_call import call_component


def _tree(root, sizes: dict[str, list[tuple[int, int]]], mode: str = "L") -> str:
    """A class-folder tree: {class: [(height, width), ...]} of random images."""
    rng = np.random.RandomState(0)
    for name, shapes in sizes.items():
        os.makedirs(root / name, exist_ok=True)
        for i, (h, w) in enumerate(shapes):
            channels = (h, w) if mode == "L" else (h, w, 3)
            Image.fromarray(rng.randint(0, 256, channels).astype("uint8"), mode=mode).save(root / name / f"{i}.png")
    return str(root)


def _ingest(new_artifact, name="ex", **params) -> Examples:
    examples = new_artifact(Examples, name)
    ingest(examples=examples, **params)
    return examples


def _all_images(examples):
    parts = [examples_io.read_images(examples, s) for s in ("train", "eval")]
    return np.concatenate([p[0] for p in parts]), [v for p in parts for v in p[1]["label"]]


def test_class_folders_become_image_examples_split_by_content(tmp_path, new_artifact):
    root = _tree(tmp_path / "imgs", {"cat": [(5, 4)] * 12, "dog": [(5, 4)] * 9})
    first = _ingest(new_artifact, "a", path=root, eval_ratio=0.3)
    second = _ingest(new_artifact, "b", path=root, format="images", eval_ratio=0.3)

    props = first.properties
    assert props["modality"] == "image" and examples_io.is_image(first)
    assert props["image_shape"] == [5, 4, 1] and props["class_names"] == ["cat", "dog"]
    assert props["label"] == "label" and sum(props["row_counts"].values()) == 21
    assert props["row_counts"]["eval"] > 0 and props["fingerprint"] == second.properties["fingerprint"]
    images, frame = examples_io.read_images(first, "train")
    assert images.dtype == np.uint8 and images.shape == (props["row_counts"]["train"], 5, 4, 1)
    assert set(frame.columns) == {"label", "file"}
    # Row i of the frame describes image i: the file's own pixels.
    on_disk = np.asarray(Image.open(os.path.join(root, frame["file"][0])))
    assert np.array_equal(images[0, ..., 0], on_disk)


def test_colour_images_get_three_channels(tmp_path, new_artifact):
    root = _tree(tmp_path / "rgb", {"a": [(4, 4)] * 4, "b": [(4, 4)] * 4}, mode="RGB")
    examples = _ingest(new_artifact, path=root, eval_ratio=0.5)
    assert examples.properties["image_shape"] == [4, 4, 3]


def test_npz_arrays_are_read_without_pickle(tmp_path, new_artifact):
    rng = np.random.RandomState(1)
    x = rng.randint(0, 256, (30, 6, 6)).astype("uint8")
    y = np.array([0, 1, 2] * 10)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    examples = _ingest(new_artifact, path=str(tmp_path / "data.npz"), eval_ratio=0.3)

    assert examples.properties["image_shape"] == [6, 6, 1] and examples.properties["class_names"] == ["0", "1", "2"]
    images, labels = _all_images(examples)
    order = np.lexsort([images.reshape(len(images), -1).sum(1)])
    expected = np.lexsort([x.reshape(30, -1).sum(1)])
    assert np.array_equal(images[order, ..., 0], x[expected])
    assert sorted(labels) == sorted(str(v) for v in y)

    np.savez(tmp_path / "objects.npz", x=np.array([None] * 3, dtype=object), y=np.arange(3))
    with pytest.raises(ImageReadError, match="allow_pickle=False"):
        _ingest(new_artifact, "obj", path=str(tmp_path / "objects.npz"))
    np.savez(tmp_path / "keys.npz", pixels=x, y=y)
    with pytest.raises(ImageReadError, match="'x' or 'images'.*holds \\['pixels', 'y'\\]"):
        _ingest(new_artifact, "keys", path=str(tmp_path / "keys.npz"))


def test_empty_class_folder_unreadable_file_and_mixed_sizes_are_clear_errors(tmp_path, new_artifact):
    root = _tree(tmp_path / "empty", {"a": [(4, 4)] * 3})
    os.makedirs(os.path.join(root, "b"))
    with open(os.path.join(root, "b", "notes.txt"), "w") as f:
        f.write("no images here")
    with pytest.raises(ImageReadError, match=r"Class folder .*empty/b holds no images"):
        _ingest(new_artifact, "e", path=root, format="images")

    root = _tree(tmp_path / "broken", {"a": [(4, 4)] * 3, "b": [(4, 4)] * 3})
    with open(os.path.join(root, "b", "9.png"), "wb") as f:
        f.write(b"not a png at all")
    with pytest.raises(ImageReadError, match=r"broken/b/9\.png cannot be read as an image"):
        _ingest(new_artifact, "u", path=root)

    root = _tree(tmp_path / "mixed", {"a": [(4, 4)] * 3, "b": [(4, 4), (6, 5), (4, 4)]})
    with pytest.raises(ImageReadError, match=r"a/0\.png is 4x4 but .*b/1\.png is 6x5 .*image_size=\[height, width\]"):
        _ingest(new_artifact, "m", path=root)
    resized = _ingest(new_artifact, "r", path=root, image_size=[3, 3], eval_ratio=0.5)
    assert resized.properties["image_shape"] == [3, 3, 1]
    with pytest.raises(ParameterError, match="The 'image_size' parameter of ingest must be"):
        _ingest(new_artifact, "p", path=root, image_size=[3])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Digits ingested once, a transform with normalisation, and a CNN trained for a few epochs."""
    root = tmp_path_factory.mktemp("digits")
    examples = Examples(uri=str(root / "ex"))
    call_component(ingest, {}, {"examples": examples}, {"path": "sklearn-digits"})
    graph = TransformGraph(uri=str(root / "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {"normalize": True})
    model = Model(uri=str(root / "model"))
    call_component(
        train, {"examples": examples, "transform_graph": graph}, {"model": model},
        {"epochs": 8, "learning_rate": 0.003, "hidden_units": [64], "seed": 0},
    )
    return root, examples, graph, model


def test_transform_fits_pixel_scaling_on_train_only(digits):
    _, examples, graph, _ = digits
    spec = features.read_json(graph.path(features.TRANSFORM_JSON))
    train_pixels, _ = examples_io.read_images(examples, "train")
    scaled = train_pixels.astype("float64") / 255.0

    assert spec["modality"] == "image" and spec["pixel_max"] == 255.0 and spec["normalize"] is True
    assert spec["label_vocabulary"] == [str(d) for d in range(10)]
    assert spec["channel_mean"] == pytest.approx([scaled.mean()], rel=1e-6)
    assert spec["channel_variance"] == pytest.approx([scaled.var()], rel=1e-6)
    both = np.concatenate([train_pixels, examples_io.read_images(examples, "eval")[0]]) / 255.0
    assert spec["channel_mean"][0] != pytest.approx(both.mean(), rel=1e-9)  # eval did not leak in
    preprocess = model_layers.load_model(graph.path(features.PREPROCESS_FILE))
    out = np.asarray(preprocess(train_pixels[:4].astype("float32")))
    assert np.allclose(out, (scaled[:4] - scaled.mean()) / np.sqrt(scaled.var()), atol=1e-4)


def test_cnn_on_raw_pixels_loads_safely_and_serves_raw_pixels(digits):
    import keras
    import tensorflow as tf

    _, examples, _, model = digits
    pixels, frame = examples_io.read_images(examples, "eval")
    model_layers.custom_objects()
    net = keras.saving.load_model(model.path(features.MODEL_FILE), safe_mode=True)
    proba = np.asarray(net.predict(pixels.astype("float32"), verbose=0))
    truth = np.asarray([int(v) for v in frame["label"]])

    assert (proba.argmax(1) == truth).mean() >= 0.85
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in net._flatten_layers())
    assert model.properties["modality"] == "image" and model.properties["train_rows"] > 1000
    serve = tf.saved_model.load(model.path(features.SERVING_DIR)).signatures["serving_default"]
    served = serve(image=tf.constant(pixels[:5].astype("float32")))["probabilities"].numpy()
    assert np.allclose(served, proba[:5], atol=1e-5)


def test_evaluate_scores_image_examples_and_skips_slices(digits):
    root, examples, _, model = digits
    outputs = {
        "evaluation": ModelEvaluation(uri=str(root / "ev")),
        "blessing": ModelBlessing(uri=str(root / "bl")),
        "metrics": ClassificationMetrics(uri=str(root / "cm")),
        "summary": Markdown(uri=str(root / "md")),
    }
    call_component(
        evaluate, {"examples": examples, "model": model}, outputs,
        {"registry": str(root / "registry"), "thresholds": {"accuracy": 0.85}},
    )
    with open(outputs["evaluation"].path("evaluation.json")) as f:
        report = json.load(f)
    assert report["overall"]["count"] == examples.properties["row_counts"]["eval"]
    assert report["overall"]["accuracy"] >= 0.85 and report["slices"] == {}
    assert "slices do not apply to image Examples" in report["notes"][0]
    assert outputs["blessing"].properties["blessed"] is True


def test_class_weights_and_focal_loss_train_on_images(digits, tmp_path):
    _, examples, graph, plain = digits
    model = Model(uri=str(tmp_path / "weighted"))
    call_component(
        train, {"examples": examples, "transform_graph": graph}, {"model": model},
        {"epochs": 2, "learning_rate": 0.003, "hidden_units": [64], "class_weights": "balanced", "loss": "focal"},
    )
    assert model.properties["loss"] == "focal" and model.properties["class_weights"] == "balanced"
    assert model.properties["final_train_accuracy"] > 0.5
    assert model.properties["final_train_loss"] != plain.properties["final_train_loss"]


def test_image_only_options_are_refused_for_tables(tmp_path):
    from tests.components.model_fixtures import imbalanced_examples

    examples = imbalanced_examples(str(tmp_path / "ex"))
    graph = TransformGraph(uri=str(tmp_path / "tg"))
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    with pytest.raises(ParameterError, match="apply to image Examples only"):
        call_component(
            train, {"examples": examples, "transform_graph": graph}, {"model": Model(uri=str(tmp_path / "m"))},
            {"mixup_alpha": 0.2},
        )
    with pytest.raises(ParameterError, match="The 'coteaching' parameter of train must come with loss='crossentropy'"):
        call_component(
            train, {"examples": examples, "transform_graph": graph}, {"model": Model(uri=str(tmp_path / "m2"))},
            {"coteaching": True, "loss": "focal"},
        )


def test_infra_validate_serves_an_image_model_raw_pixels_and_blesses_it(digits):
    from flywheel.components.infra_validate import infra_validate
    from flywheel.dsl.artifacts import InfraBlessing

    root, examples, _, model = digits
    blessing = InfraBlessing(uri=str(root / "infra"))
    call_component(infra_validate, {"model": model, "examples": examples}, {"infra_blessing": blessing},
                   {"requests": 2, "rows_per_request": 3})

    assert blessing.properties["blessed"] is True, blessing.properties["reasons"]
    assert blessing.properties["max_abs_difference"] <= 1e-4 and len(blessing.properties["latency_ms"]) == 2

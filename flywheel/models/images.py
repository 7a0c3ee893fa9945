"""Image models: the fitted pixel preprocessing and small CNN classifiers.

``build_cnn`` is the reusable builder (other techniques build their networks
with it): ``[preprocess] -> (Conv2D 3x3 + ReLU, MaxPool 2x2 while the map is
at least 2x2) per width -> Flatten -> Dense head -> softmax``. Everything is a
built-in Keras layer, so a saved model loads with ``safe_mode=True``.

An image model takes raw pixels (``image``: float32 (batch, H, W, C) in the
source's value range, e.g. 0..255) and rescales/normalizes inside itself with
constants that ``transform`` fitted on the train split only.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from flywheel.errors import FlywheelError

IMAGE_INPUT = "image"
OUTPUT_NAME = "probabilities"


def fit_image_spec(images: Any, class_names: list[str], label: str, *, normalize: bool) -> dict[str, Any]:
    """Preprocessing constants of image Examples, from the train split's pixels only.

    Pixels are divided by ``pixel_max`` (255 for integer pixels, the train
    maximum for float pixels), then, with ``normalize``, standardised per
    channel with the train mean and variance of the rescaled pixels.

    Returns:
        The ``transform.json`` document of an image model.
    """
    import numpy as np

    array = np.asarray(images)
    pixel_max = 255.0 if array.dtype.kind in "ui" else float(max(array.max(), 1e-6))
    scaled = array.astype("float64") / pixel_max
    channels = array.shape[-1]
    mean = scaled.reshape(-1, channels).mean(axis=0)
    variance = scaled.reshape(-1, channels).var(axis=0)
    return {
        "modality": "image",
        "label": label,
        "label_vocabulary": list(class_names),
        "image_input": IMAGE_INPUT,
        "image_shape": [int(v) for v in array.shape[1:]],
        "pixel_max": pixel_max,
        "normalize": bool(normalize),
        "channel_mean": [float(v) for v in mean],
        "channel_variance": [float(max(v, 1e-12)) for v in variance],
        "numeric_features": [],
        "categorical_features": [],
        "features": {},
        "fitted_on": {"split": "train", "rows": int(len(array))},
    }


def is_image_spec(spec: dict[str, Any]) -> bool:
    """Whether a ``transform.json`` / ``model.json`` describes an image model."""
    return spec.get("modality") == "image"


def build_image_preprocess(spec: dict[str, Any]) -> Any:
    """Raw pixels -> rescaled (and optionally normalized) pixels, as a Keras model."""
    import keras

    pixels = keras.Input(shape=tuple(spec["image_shape"]), dtype="float32", name=spec["image_input"])
    x = keras.layers.Rescaling(1.0 / spec["pixel_max"], name="rescale")(pixels)
    if spec["normalize"]:
        x = keras.layers.Normalization(
            axis=-1, mean=spec["channel_mean"], variance=spec["channel_variance"], name="normalize"
        )(x)
    return keras.Model(inputs=pixels, outputs=x, name="preprocess")


def build_cnn(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    widths: Sequence[int] = (16, 32),
    dense_units: Sequence[int] = (64,),
    dropout: float = 0.25,
    preprocess: Any = None,
    input_name: str = IMAGE_INPUT,
    name: str = "cnn",
) -> Any:
    """A small CNN classifier (softmax output named ``probabilities``).

    Args:
        input_shape: (height, width, channels) of the raw images.
        n_classes: Output classes.
        widths: Filters of each Conv2D 3x3 block; a block max-pools 2x2 while
            the feature map is still at least 4 pixels on each side.
        dense_units: Hidden Dense layers of the head (ReLU).
        dropout: Dropout rate before each Dense layer (0 disables it).
        preprocess: Optional Keras model applied first (frozen), e.g.
            ``build_image_preprocess(spec)``.
        input_name: Name of the input tensor.
        name: Model name.

    Raises:
        FlywheelError: the shape is not (H, W, C) or a size is not positive.
    """
    import keras

    if len(input_shape) != 3 or min(input_shape) < 1 or n_classes < 2 or not widths or min(widths) < 1:
        raise FlywheelError(
            f"build_cnn needs input_shape (height, width, channels), n_classes >= 2 and positive widths; "
            f"got input_shape={tuple(input_shape)}, n_classes={n_classes}, widths={tuple(widths)}."
        )
    pixels = keras.Input(shape=tuple(int(v) for v in input_shape), dtype="float32", name=input_name)
    x = pixels
    if preprocess is not None:
        preprocess.trainable = False
        x = preprocess(x)
    size = min(int(input_shape[0]), int(input_shape[1]))
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(int(width), 3, padding="same", activation="relu", name=f"conv_{i}")(x)
        if size >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
            size //= 2
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units):
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
        x = keras.layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout_out")(x)
    output = keras.layers.Dense(n_classes, activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs=pixels, outputs=output, name=name)


def pixels(images: Any) -> Any:
    """Raw pixels as the float32 array an image model takes."""
    import numpy as np

    return np.asarray(images, dtype="float32")


def export_image_serving(net: Any, spec: dict[str, Any], path: str) -> None:
    """Exports a SavedModel whose ``serving_default`` takes ``image`` (raw pixels), returns ``probabilities``."""
    import keras
    import tensorflow as tf

    signature = {
        spec["image_input"]: tf.TensorSpec(
            shape=(None, *spec["image_shape"]), dtype=tf.float32, name=spec["image_input"]
        )
    }

    def serve(raw: dict[str, Any]) -> dict[str, Any]:
        return {OUTPUT_NAME: net(raw[spec["image_input"]], training=False)}

    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[signature])
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    archive.write_out(path, verbose=False)

"""Explaining image predictions: Grad-CAM and LIME, each with its faithfulness checks.

* ``GradCam`` (Selvaraju et al. 2017): the last convolution's feature maps,
  weighted by the spatially averaged gradient of the class logit, ReLU,
  upsampled (bilinear) to the input size and scaled to [0, 1]. Computed with
  ``tf.GradientTape`` on a Keras functional CNN (``build_cnn``'s layout).
* ``LimeImage`` (Ribeiro et al. 2016, ``lime.lime_image``) with square
  patches as superpixels (quickshift needs RGB photos; 8x8 digits do not
  have enough pixels for it) and a fixed "hidden" value (the background).

Faithfulness checks (maps are (n, H, W) saliency per image, labels the class):

* ``ink_mass_share``: the share of each map's mass on "ink" pixels (value >
  threshold) against the share of the image that is ink. A map that looks at
  the strokes puts more of its mass there than the ink's area share.
* ``deletion_insertion``: pixels are set to the background in the map's order
  (deletion; a faithful map's probability curve falls fast, low AUC) or
  copied onto a blank image in that order (insertion; high AUC). Compare with
  ``random_maps`` in the same run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from flywheel.techniques._checks import TechniqueInputError
from flywheel.techniques.base import Interval, Technique, validate_parameter

PredictFn = Callable[[np.ndarray], np.ndarray]


def _check_images(owner: str, images: Any, *, shape: Sequence[int] | None = None) -> np.ndarray:
    """``images`` as a finite float32 (n, H, W, C) array, or a TechniqueInputError."""
    array = np.asarray(images)
    if array.ndim != 4 or len(array) == 0 or not np.issubdtype(array.dtype, np.number):
        raise TechniqueInputError(
            f"{owner} needs a non-empty numeric image batch (n, height, width, channels); got shape "
            f"{array.shape} and dtype {array.dtype}."
        )
    array = array.astype("float32")
    if not np.isfinite(array).all():
        raise TechniqueInputError(f"{owner} needs finite pixels; the images hold NaN or inf.")
    if shape is not None and tuple(array.shape[1:]) != tuple(shape):
        raise TechniqueInputError(
            f"{owner} needs images of shape {tuple(shape)} (what the model takes); got {tuple(array.shape[1:])}."
        )
    return array


def _check_maps(owner: str, maps: Any, images: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype="float64")
    if maps.shape != images.shape[:3]:
        raise TechniqueInputError(
            f"{owner} needs one (height, width) map per image, shape {images.shape[:3]}; got {maps.shape}."
        )
    return maps


def _map_area(layer: Any) -> int:
    """H * W of a convolution's output map (2 when the size is not fixed: large enough to localise)."""
    shape = tuple(layer.output.shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return 2
    return int(shape[1]) * int(shape[2])


class GradCam(Technique):
    """Grad-CAM heat maps of a Keras functional CNN, upsampled to the input.

    Args:
        layer_name: The convolution whose maps are weighted; None picks the
            last ``Conv2D`` layer whose map is larger than 1x1 (a 1x1 map, like
            EfficientNet-B0's ``top_conv`` on 32x32 inputs, cannot localise
            anything), or the last ``Conv2D`` if every map is 1x1.
        use_logits: Differentiate the class logit (the softmax layer's input
            times its kernel, as the paper does) instead of the probability.

    Attributes (after ``fit``):
        layer_name_: The convolution used.
        image_shape_: (H, W, C) the model takes.
    """

    _parameter_constraints = {"layer_name": [str, None], "use_logits": [bool]}

    def __init__(self, *, layer_name: str | None = None, use_logits: bool = True) -> None:
        self.layer_name = layer_name
        self.use_logits = use_logits

    def fit(self, model: Any) -> GradCam:
        """Finds the convolution and builds the model that returns its maps and the class scores.

        Raises:
            TechniqueInputError: the model has no such (or no) Conv2D layer.
        """
        import keras

        self._validate_params()
        if not isinstance(model, keras.Model):
            raise TechniqueInputError(f"GradCam needs a Keras functional model; got {type(model).__name__}.")
        convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        with_maps = [name for name in convs if _map_area(model.get_layer(name)) > 1]
        name = self.layer_name or ((with_maps or convs)[-1] if convs else None)
        if name is None or name not in convs:
            raise TechniqueInputError(
                f"GradCam needs a Conv2D layer of the model; got layer_name={self.layer_name!r}, "
                f"and the model's Conv2D layers are {convs}. Pass one of them (or None for the last), "
                "or explain a convolutional model (train architecture cnn, resnet, efficientnet_b0 or vit)."
            )
        head = model.layers[-1]
        self.layer_name_ = name
        self.image_shape_ = tuple(int(v) for v in model.inputs[0].shape[1:])
        self.maps_model_ = keras.Model(model.inputs, [model.get_layer(name).output, head.input, model.outputs[0]])
        self.head_ = head
        return self

    def explain(self, images: Any, labels: Sequence[int] | None = None) -> np.ndarray:
        """Heat maps (n, H, W) in [0, 1], one per image, for ``labels`` (None: the predicted class)."""
        import tensorflow as tf

        images = _check_images("GradCam", images, shape=self.image_shape_)
        batch = tf.constant(images)
        with tf.GradientTape() as tape:
            maps, penultimate, probabilities = self.maps_model_(batch, training=False)
            if self.use_logits:
                scores = tf.matmul(penultimate, self.head_.kernel) + self.head_.bias
            else:
                scores = probabilities
            chosen = tf.argmax(probabilities, axis=1) if labels is None else tf.constant(np.asarray(labels, dtype=int))
            if chosen.shape[0] != len(images):
                raise TechniqueInputError(f"GradCam needs one label per image ({len(images)}); got {chosen.shape[0]}.")
            target = tf.gather(scores, chosen, axis=1, batch_dims=1)
        gradients = tape.gradient(target, maps)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, self.image_shape_[:2], method="bilinear")[..., 0].numpy().astype("float64")
        peak = cam.reshape(len(cam), -1).max(axis=1)
        self.labels_ = chosen.numpy()
        return np.where(peak[:, None, None] > 0, cam / np.maximum(peak, 1e-12)[:, None, None], 0.0)

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        model, images = _tiny_cnn_case()
        return {
            "params": {"layer_name": None, "use_logits": True},
            "bad_params": [{"layer_name": 3}, {"use_logits": "yes"}],
            "call": lambda technique: technique.fit(model).explain(images),
            "bad_input": lambda technique: technique.fit(model).explain(images[:, :4]),
            "shapes": lambda cams: np.asarray(cams).shape == images.shape[:3],
        }


def _patch_segments(height: int, width: int, patch: int) -> np.ndarray:
    """Square superpixels: segment id of every pixel for patches of ``patch`` x ``patch``."""
    rows = np.arange(height) // patch
    cols = np.arange(width) // patch
    return rows[:, None] * ((width + patch - 1) // patch) + cols[None, :]


class LimeImage(Technique):
    """LIME for images (``lime.lime_image``) with square-patch superpixels.

    Args:
        patch_size: Side of the square superpixels, in pixels.
        num_samples: Perturbed images per explanation.
        hide_value: Pixel value of a superpixel turned off (the background).
        random_state: Seeds the perturbations.

    Attributes (after ``explain``):
        scores_: R² of each image's weighted linear surrogate, (n,).
        labels_: The explained class per image, (n,).
    """

    _parameter_constraints = {
        "patch_size": [Interval(int, 1, None)],
        "num_samples": [Interval(int, 10, None)],
        "hide_value": [float],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, patch_size: int = 2, num_samples: int = 300, hide_value: float = 0.0, random_state: int | None = None
    ) -> None:
        self.patch_size = patch_size
        self.num_samples = num_samples
        self.hide_value = hide_value
        self.random_state = random_state

    def fit(self, predict_fn: PredictFn) -> LimeImage:
        """Stores the model (images -> probabilities) after checking the parameters."""
        self._validate_params()
        if not callable(predict_fn):
            raise TechniqueInputError(f"LimeImage needs a callable predict_fn (images -> probabilities); got {predict_fn!r}.")
        self.predict_fn_ = predict_fn
        return self

    def explain(self, images: Any, labels: Sequence[int] | None = None) -> np.ndarray:
        """Per-pixel maps (n, H, W): each pixel carries its superpixel's LIME weight for the class."""
        from lime.lime_image import LimeImageExplainer

        images = _check_images("LimeImage", images)
        if labels is None:
            labels = np.asarray(self.predict_fn_(images)).argmax(axis=1)
        labels = np.asarray(labels, dtype=int)
        if labels.shape != (len(images),):
            raise TechniqueInputError(f"LimeImage needs one label per image ({len(images)}); got shape {labels.shape}.")
        segments = _patch_segments(images.shape[1], images.shape[2], self.patch_size)
        explainer = LimeImageExplainer(random_state=self.random_state)
        maps = np.zeros(images.shape[:3], dtype="float64")
        scores = []
        for i, (image, label) in enumerate(zip(images, labels)):
            explanation = _quiet(
                explainer.explain_instance,
                image.astype("float64"),
                lambda batch: np.asarray(self.predict_fn_(np.asarray(batch, dtype="float32"))),
                labels=(int(label),),
                top_labels=None,
                hide_color=float(self.hide_value),
                num_features=int(segments.max()) + 1,
                num_samples=self.num_samples,
                batch_size=self.num_samples,
                segmentation_fn=lambda _image: segments,
                random_seed=self.random_state,
            )
            for segment, weight in explanation.local_exp[int(label)]:
                maps[i][segments == segment] = weight
            scores.append(float(explanation.score))
        self.scores_ = np.asarray(scores)
        self.labels_ = labels
        return maps

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        images, predict = _linear_image_case()
        return {
            "params": {"patch_size": 2, "num_samples": 40, "random_state": 0},
            "bad_params": [{"patch_size": 0}, {"num_samples": 2}, {"hide_value": "black"}, {"random_state": -1}],
            "call": lambda technique: (technique.fit(predict).explain(images), technique.scores_),
            "bad_input": lambda technique: technique.fit(predict).explain(images[0]),
        }


def _quiet(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs ``function`` with lime's tqdm progress bar disabled."""
    from unittest import mock

    import lime.lime_image

    with mock.patch.object(lime.lime_image, "tqdm", lambda iterable, *a, **k: iterable):
        return function(*args, **kwargs)


def ink_mass_share(maps: Any, images: Any, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(share of each map's positive mass on ink pixels, share of each image's pixels that are ink).

    Ink is a pixel whose value (summed over channels) exceeds ``threshold``.
    A map with no positive mass counts as 0 on ink.
    """
    images = _check_images("ink_mass_share", images)
    maps = np.clip(_check_maps("ink_mass_share", maps, images), 0.0, None)
    ink = images.sum(axis=-1) > threshold
    total = maps.reshape(len(maps), -1).sum(axis=1)
    on_ink = (maps * ink).reshape(len(maps), -1).sum(axis=1)
    return np.where(total > 0, on_ink / np.maximum(total, 1e-12), 0.0), ink.reshape(len(ink), -1).mean(axis=1)


@dataclasses.dataclass(frozen=True)
class CurveResult:
    """Deletion and insertion AUCs per image (probability of the class vs share of pixels moved)."""

    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    deletion_curve: np.ndarray  # mean over images, (steps + 1,)
    insertion_curve: np.ndarray


def deletion_insertion(
    predict_fn: PredictFn,
    images: Any,
    maps: Any,
    labels: Sequence[int],
    *,
    steps: int = 16,
    baseline: float = 0.0,
) -> CurveResult:
    """Deletion and insertion curves of saliency maps (Petsiuk et al. 2018, RISE).

    Pixels are ranked by the map (ties keep raster order); at step s the first
    ``s / steps`` of them are set to ``baseline`` (deletion) or copied from the
    image onto an all-``baseline`` canvas (insertion). AUC is the trapezoid
    area under the class probability over the moved share, in [0, 1].

    Raises:
        ParameterError: steps < 1.
        TechniqueInputError: shapes do not fit together.
    """
    validate_parameter("deletion_insertion", "steps", steps, [Interval(int, 1, None)])
    images = _check_images("deletion_insertion", images)
    maps = _check_maps("deletion_insertion", maps, images)
    labels = np.asarray(labels, dtype=int)
    n, height, width, _ = images.shape
    pixels = height * width
    order = np.argsort(-maps.reshape(n, pixels), axis=1, kind="stable")
    counts = np.round(np.linspace(0, pixels, steps + 1)).astype(int)
    deleted, inserted = [], []
    for count in counts:
        mask = np.zeros((n, pixels), dtype=bool)
        np.put_along_axis(mask, order[:, :count], True, axis=1)
        mask = mask.reshape(n, height, width, 1)
        deleted.append(np.where(mask, baseline, images))
        inserted.append(np.where(mask, images, baseline))
    batch = np.concatenate(deleted + inserted).astype("float32")
    probabilities = np.asarray(predict_fn(batch), dtype="float64").reshape(2, steps + 1, n, -1)
    chosen = probabilities[:, :, np.arange(n), labels]  # (2, steps + 1, n)
    auc = (chosen[:, 1:] + chosen[:, :-1]).sum(axis=1) / (2.0 * steps)  # trapezoid rule, (2, n)
    return CurveResult(auc[0], auc[1], chosen[0].mean(axis=1), chosen[1].mean(axis=1))


def random_maps(shape: Sequence[int], *, random_state: int | None = None) -> np.ndarray:
    """Uniform random saliency maps of ``shape`` (n, H, W): the baseline every map must beat."""
    return np.random.default_rng(random_state).random(tuple(shape))


def _tiny_cnn_case() -> tuple[Any, np.ndarray]:
    """A seeded, untrained 8x8 CNN and four images (the contract suite's problem)."""
    import keras

    from flywheel.models.images import build_cnn

    keras.utils.set_random_seed(0)
    model = build_cnn((8, 8, 1), 3, widths=(4, 8), dense_units=(8,), dropout=0.0)
    images = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32") * 16
    return model, images


def _linear_image_case() -> tuple[np.ndarray, PredictFn]:
    """Two images and a softmax over fixed linear pixel scores."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(64, 3))
    images = rng.random((2, 8, 8, 1)).astype("float32")

    def predict(batch: np.ndarray) -> np.ndarray:
        logits = np.asarray(batch, dtype="float64").reshape(len(batch), -1) @ weights
        logits -= logits.max(axis=1, keepdims=True)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    return images, predict

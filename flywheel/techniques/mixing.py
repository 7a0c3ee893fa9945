"""Image augmentation by Keras 3's own layers: mixup and RandAugment.

Keras 3.15 ships ``keras.layers.MixUp`` (Zhang et al. 2018), ``CutMix`` and
``RandAugment`` (Cubuk et al. 2020); these estimators only configure them,
check their parameters with the uniform message, seed them, and hand
``train`` a function to map over a ``tf.data`` batch stream. Augmentation runs
in the input pipeline, never inside the saved model, so inference is untouched.

* ``MixUp(alpha)``: per sample, lambda ~ Beta(alpha, alpha); an image and its
  one-hot label become ``lambda * own + (1 - lambda) * partner``, the partner
  drawn by a permutation of the batch. Keras documents alpha "between 0 and 1"
  but the formula holds for any alpha > 0 (the paper uses 0.1-0.4 on ImageNet,
  1.0 on CIFAR), so this accepts (0, inf).
* ``RandAugment(num_ops=N, magnitude=M)``: each batch applies N operations
  drawn from Keras' 11 (shear, translate, rotate, brightness, colour,
  contrast, sharpness, posterize, solarize, auto-contrast, equalize) at
  strength ``factor = M / 10`` (M on the usual 0..10 scale; Keras' factor is
  in [0, 1]). Keras draws the operations once per batch, not per image.
"""

from __future__ import annotations

from typing import Any

from flywheel.techniques._checks import TechniqueInputError
from flywheel.techniques.base import Interval, Technique


def _check_images(owner: str, images: Any) -> Any:
    import numpy as np

    array = np.asarray(images)
    if array.ndim != 4 or not np.issubdtype(array.dtype, np.number) or not len(array):
        raise TechniqueInputError(
            f"{owner} needs a non-empty batch of images of shape (N, height, width, channels); "
            f"got shape {array.shape} and dtype {array.dtype}."
        )
    return array.astype("float32")


def _is_range(value: Any) -> bool:
    """a [low, high] pair of numbers with low < high"""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and value[0] < value[1]
    )


class MixUp(Technique):
    """Mixup of images and one-hot labels (``keras.layers.MixUp``).

    Args:
        alpha: Beta(alpha, alpha) concentration of the mixing weight; small
            alpha mixes little, alpha = 1 mixes uniformly.
        random_state: Seed of the weights and partners.
    """

    _parameter_constraints = {"alpha": [Interval(float, 0, None, closed="neither")], "random_state": ["random_state"]}

    def __init__(self, *, alpha=0.2, random_state=None):
        self.alpha = alpha
        self.random_state = random_state

    def layer(self) -> Any:
        """A fresh, seeded ``keras.layers.MixUp``."""
        import keras

        self._validate_params()
        return keras.layers.MixUp(alpha=float(self.alpha), seed=self.random_state)

    def batch_fn(self) -> Any:
        """``(images, one_hot_labels) -> (mixed images, mixed labels)`` for ``tf.data`` ``map``."""
        layer = self.layer()

        def mix(images: Any, labels: Any) -> Any:
            out = layer({"images": images, "labels": labels}, training=True)
            return out["images"], out["labels"]

        return mix

    def transform(self, images: Any, labels: Any) -> tuple[Any, Any]:
        """Mixes one batch eagerly; returns numpy arrays.

        Raises:
            ParameterError: a parameter breaks its rule.
            TechniqueInputError: images are not (N, H, W, C) or labels are not one-hot rows of N.
        """
        import numpy as np

        batch = _check_images("MixUp", images)
        targets = np.asarray(labels, dtype="float32")
        if targets.ndim != 2 or len(targets) != len(batch):
            raise TechniqueInputError(
                f"MixUp needs one-hot labels of shape (N, classes) with N = {len(batch)}; got shape {targets.shape}."
            )
        mixed_images, mixed_labels = self.batch_fn()(batch, targets)
        return np.asarray(mixed_images), np.asarray(mixed_labels)

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        import numpy as np

        def data() -> tuple[Any, Any]:
            images = np.random.RandomState(0).uniform(0, 255, size=(8, 6, 6, 1)).astype("float32")
            return images, np.eye(4, dtype="float32")[np.arange(8) % 4]

        return {
            "params": {"alpha": 0.4, "random_state": 0},
            "bad_params": [{"alpha": 0}, {"alpha": "0.2"}, {"random_state": 1.5}],
            "call": lambda technique: list(technique.transform(*data())),
            "bad_input": lambda technique: technique.transform(data()[0][0], data()[1]),
            "shapes": lambda result: result[0].shape == (8, 6, 6, 1) and result[1].shape == (8, 4),
        }


class RandAugment(Technique):
    """RandAugment with N operations at magnitude M (``keras.layers.RandAugment``).

    Args:
        num_ops: N, operations applied in sequence.
        magnitude: M in [0, 10]; Keras' ``factor`` is ``M / 10``.
        value_range: ``[low, high]`` of the pixels it receives (raw 0..255 by default).
        random_state: Seed of the operation choice and strengths.
    """

    _parameter_constraints = {
        "num_ops": [Interval(int, 1, None)],
        "magnitude": [Interval(float, 0, 10)],
        "value_range": [_is_range],
        "random_state": ["random_state"],
    }

    def __init__(self, *, num_ops=2, magnitude=5.0, value_range=(0, 255), random_state=None):
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.value_range = value_range
        self.random_state = random_state

    def layer(self) -> Any:
        """A fresh, seeded ``keras.layers.RandAugment``."""
        import keras

        self._validate_params()
        return keras.layers.RandAugment(
            value_range=tuple(float(v) for v in self.value_range),
            num_ops=int(self.num_ops),
            factor=float(self.magnitude) / 10.0,
            seed=self.random_state,
        )

    def batch_fn(self) -> Any:
        """``(images, labels) -> (augmented images, labels)`` for ``tf.data`` ``map``."""
        layer = self.layer()

        def augment(images: Any, labels: Any) -> Any:
            return layer(images, training=True), labels

        return augment

    def transform(self, images: Any) -> Any:
        """Augments one batch eagerly; returns a numpy array of the same shape.

        Raises:
            ParameterError: a parameter breaks its rule.
            TechniqueInputError: images are not (N, H, W, C).
        """
        import numpy as np

        batch = _check_images("RandAugment", images)
        return np.asarray(self.layer()(batch, training=True))

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        import numpy as np

        images = np.random.RandomState(0).uniform(0, 255, size=(6, 8, 8, 1)).astype("float32")
        return {
            "params": {"num_ops": 2, "magnitude": 9.0, "random_state": 0},
            "bad_params": [{"num_ops": 0}, {"magnitude": 11}, {"value_range": [1, 0]}, {"random_state": -2}],
            "call": lambda technique: [technique.transform(images)],
            "bad_input": lambda technique: technique.transform(images[0]),
            "shapes": lambda result: result[0].shape == images.shape,
        }

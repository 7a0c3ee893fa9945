"""Keras custom objects of flywheel models, and loading a saved model safely.

Models are saved as ``.keras`` files and loaded with ``safe_mode=True``, so no
Lambda layers: the few operations Keras has no layer for (imputing missing
numbers, a missing-value indicator, a sparse focal loss) are small classes
registered with ``keras.saving.register_keras_serializable``.

Keras is imported lazily: the classes are defined the first time
``custom_objects()`` is called, so importing this module stays cheap. Anything
that loads a flywheel model (train, evaluate, the registry, serving) goes
through ``load_model`` so the classes are registered first.
"""

from __future__ import annotations

import functools
from typing import Any

PACKAGE = "flywheel"


@functools.cache
def custom_objects() -> dict[str, type]:
    """Defines and registers flywheel's Keras classes once; returns them by registered name."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package=PACKAGE)
    class ImputeMissing(keras.layers.Layer):
        """Casts a numeric feature to float32 of shape (batch, 1); NaN becomes ``fill_value``."""

        def __init__(self, fill_value: float = 0.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.fill_value = float(fill_value)

        def call(self, inputs: Any) -> Any:
            x = _as_column(ops.cast(inputs, "float32"))
            return ops.where(ops.isnan(x), ops.full_like(x, self.fill_value), x)

        def compute_output_shape(self, input_shape: Any) -> tuple:
            return (input_shape[0], 1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "fill_value": self.fill_value}

    @keras.saving.register_keras_serializable(package=PACKAGE)
    class MissingIndicator(keras.layers.Layer):
        """1.0 where a numeric feature is missing (NaN), else 0.0; shape (batch, 1)."""

        def call(self, inputs: Any) -> Any:
            x = _as_column(ops.cast(inputs, "float32"))
            return ops.cast(ops.isnan(x), "float32")

        def compute_output_shape(self, input_shape: Any) -> tuple:
            return (input_shape[0], 1)

    @keras.saving.register_keras_serializable(package=PACKAGE)
    class SparseCategoricalFocalCrossentropy(keras.losses.Loss):
        """Focal loss (Lin et al. 2017) for integer labels and softmax probabilities.

        Keras 3 ships ``CategoricalFocalCrossentropy`` for one-hot labels only;
        this one-hots integer labels and delegates to it, so the formula is
        Keras' own: ``-alpha * (1 - p_t) ** gamma * log(p_t)``.
        """

        def __init__(
            self,
            gamma: float = 2.0,
            alpha: float = 0.25,
            from_logits: bool = False,
            name: str = "sparse_categorical_focal_crossentropy",
            **kwargs: Any,
        ) -> None:
            super().__init__(name=name, **kwargs)
            self.gamma = float(gamma)
            self.alpha = float(alpha)
            self.from_logits = bool(from_logits)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            depth = ops.shape(y_pred)[-1]
            labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
            one_hot = ops.one_hot(labels, depth, dtype=y_pred.dtype)
            return keras.losses.categorical_focal_crossentropy(
                one_hot, y_pred, alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits
            )

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "gamma": self.gamma,
                "alpha": self.alpha,
                "from_logits": self.from_logits,
            }

    def _as_column(x: Any) -> Any:
        # Serving sends one scalar per feature and row (shape (batch,)); Keras fit may add a unit axis.
        return ops.reshape(x, (-1, 1))

    classes = (ImputeMissing, MissingIndicator, SparseCategoricalFocalCrossentropy)
    return {f"{PACKAGE}>{cls.__name__}": cls for cls in classes}


def layer(class_name: str, **kwargs: Any) -> Any:
    """Builds one of flywheel's registered Keras classes by its class name."""
    return custom_objects()[f"{PACKAGE}>{class_name}"](**kwargs)


def load_model(path: str) -> Any:
    """Loads a ``.keras`` file with ``safe_mode=True`` after registering flywheel's classes."""
    import keras

    custom_objects()
    return keras.saving.load_model(path, safe_mode=True)

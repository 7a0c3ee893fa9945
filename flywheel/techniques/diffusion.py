"""A small class-conditional denoising diffusion model that generates extra samples for low-data classes.

DDPM training (Ho et al. 2020): a network learns to predict the Gaussian noise
added to an image at a random step t of a fixed noising schedule (cosine,
Nichol & Dhariwal 2021, or linear); the loss is the mean squared error of that
prediction. Sampling runs DDIM (Song et al. 2021, eta = 0): a few deterministic
denoising steps from pure noise instead of the ~1,000 of the training chain.
Conditioning is a class embedding added to the step embedding; with
``class_dropout`` > 0 the label is replaced by a "no class" token during
training, so ``guidance`` > 0 applies classifier-free guidance (Ho & Salimans
2022) when sampling.

The denoiser is a small convolutional U-Net built from stock Keras 3 layers
only (no Lambda, no custom layer), so its ``.keras`` file loads with
``safe_mode=True``; the step's sinusoidal features are computed in NumPy and
fed as an input. TensorFlow/Keras is imported only when a model is built::

    model = ConditionalDiffusion(epochs=10, random_state=0).fit(images, labels)
    fake_images, fake_labels = model.sample({3: 50, 7: 50})
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.techniques._checks import requested_labels
from flywheel.techniques.base import Interval, Options, Technique

_STEP_FEATURES = 32  # sinusoidal features of the noising step fed to the denoiser
_MODEL_FILE = "denoiser.keras"
_STATE_FILE = "diffusion.json"


def _multiple_of_eight(value: Any) -> bool:
    """a positive int divisible by 8 (the U-Net's group normalisation uses 8 groups)"""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value % 8 == 0


def noise_schedule(kind: str, timesteps: int) -> np.ndarray:
    """alpha-bar_t (the signal fraction kept after t noising steps) for t = 1..timesteps, decreasing."""
    if kind == "linear":
        betas = np.linspace(1e-4, 0.02 * 1000 / timesteps, timesteps)
        return np.cumprod(1.0 - np.clip(betas, 0.0, 0.999))
    steps = np.arange(timesteps + 1) / timesteps
    f = np.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    return np.cumprod(1.0 - betas)


def step_features(t: np.ndarray, timesteps: int) -> np.ndarray:
    """Sinusoidal features (n, _STEP_FEATURES) of integer steps t in [0, timesteps)."""
    half = _STEP_FEATURES // 2
    frequencies = np.exp(-math.log(10000.0) * np.arange(half) / half)
    angles = (np.asarray(t, dtype=np.float64)[:, None] * 1000.0 / timesteps) * frequencies[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def build_denoiser(shape: tuple[int, ...], n_classes: int, channels: int) -> Any:
    """The noise-predicting U-Net: inputs (noisy image, step features, one-hot class incl. a null token)."""
    import keras
    from keras import layers

    height, width, depth = shape
    image = keras.Input(shape, name="noisy_image")
    step = keras.Input((_STEP_FEATURES,), name="step_features")
    label = keras.Input((n_classes + 1,), name="class_onehot")
    embedding = layers.Dense(4 * channels, activation="swish")(step)
    embedding = layers.Add()([layers.Dense(4 * channels)(embedding), layers.Dense(4 * channels)(label)])
    embedding = layers.Activation("swish")(embedding)

    def block(x: Any, width_out: int, size: tuple[int, int]) -> Any:
        # pre-activation residual block; the embedding is added after the first convolution
        h = layers.Conv2D(width_out, 3, padding="same")(layers.Activation("swish")(layers.GroupNormalization(groups=8)(x)))
        shift = layers.Reshape((1, 1, width_out))(layers.Dense(width_out)(embedding))
        h = layers.Add()([h, layers.UpSampling2D(size)(shift)])
        h = layers.Conv2D(width_out, 3, padding="same")(layers.Activation("swish")(layers.GroupNormalization(groups=8)(h)))
        skip = x if x.shape[-1] == width_out else layers.Conv2D(width_out, 1)(x)
        return layers.Add()([h, skip])

    stem = layers.Conv2D(channels, 3, padding="same")(image)
    high = block(stem, channels, (height, width))
    if height % 2 == 0 and width % 2 == 0:
        low = block(layers.AveragePooling2D(2)(high), 2 * channels, (height // 2, width // 2))
        low = block(low, 2 * channels, (height // 2, width // 2))
        up = layers.UpSampling2D(2)(low)
        high = block(layers.Concatenate()([up, high]), channels, (height, width))
    else:  # odd sizes: one resolution is enough for the small images this is meant for
        high = block(high, channels, (height, width))
    out = layers.Conv2D(depth, 3, padding="same", kernel_initializer="zeros")(
        layers.Activation("swish")(layers.GroupNormalization(groups=8)(high))
    )
    return keras.Model([image, step, label], out, name="denoiser")


class ConditionalDiffusion(Technique):
    """Class-conditional DDPM with DDIM sampling (see the module docstring).

    Args:
        channels: Width of the U-Net's first level (the second has twice as many); a multiple of 8.
        timesteps: Length of the training noising chain.
        schedule: "cosine" or "linear" noising schedule.
        epochs: Training epochs (one progress line each).
        steps_per_epoch: Gradient steps per epoch (batches drawn with replacement).
        batch_size: Examples per step.
        learning_rate: Adam step size.
        class_dropout: Fraction of training labels replaced by the null token (enables guidance).
        sampling_steps: DDIM denoising steps per sample.
        guidance: Classifier-free guidance weight w (eps = (1 + w) eps_class - w eps_null); 0 = plain conditional.
        verbose: Print a progress line per epoch.
        random_state: Seeds weights, batches, noise and sampling.

    Attributes:
        classes_: Labels seen in fit.
        shape_: Shape of one example (restored by ``sample``).
        history_: (epochs,) mean noise-prediction loss per epoch.
        denoiser_: The trained Keras model.
    """

    _parameter_constraints = {
        "channels": [_multiple_of_eight],
        "timesteps": [Interval(int, 2, None)],
        "schedule": [Options({"cosine", "linear"})],
        "epochs": [Interval(int, 1, None)],
        "steps_per_epoch": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "class_dropout": [Interval(float, 0, 1, closed="left")],
        "sampling_steps": [Interval(int, 1, None)],
        "guidance": [Interval(float, 0, None)],
        "verbose": [bool],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, channels=32, timesteps=1000, schedule="cosine", epochs=10, steps_per_epoch=100, batch_size=64,
        learning_rate=2e-3, class_dropout=0.1, sampling_steps=20, guidance=0.0, verbose=False, random_state=None,
    ):
        self.channels = channels
        self.timesteps = timesteps
        self.schedule = schedule
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.class_dropout = class_dropout
        self.sampling_steps = sampling_steps
        self.guidance = guidance
        self.verbose = verbose
        self.random_state = random_state

    def _validate_data(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        self._validate_params()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim not in (3, 4) or y.ndim != 1 or len(X) != len(y) or len(X) == 0:
            raise FlywheelError(
                f"ConditionalDiffusion.fit needs images X (n, height, width[, channels]) and labels y (n,) of equal "
                f"length; got X {X.shape} and y {y.shape}. Reshape flat vectors to images and pass one label per image."
            )
        if not np.all(np.isfinite(X)) or X.min() < 0 or X.max() > 1:
            raise FlywheelError("ConditionalDiffusion.fit needs finite values in [0, 1]; scale images first (e.g. uint8 / 255).")
        return X, y

    def fit(self, X: Any, y: Any) -> ConditionalDiffusion:
        """Trains the denoiser on images X (n, h, w[, c]) with values in [0, 1] and labels y.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: malformed data or values outside [0, 1].
        """
        X, y = self._validate_data(X, y)
        import keras

        self.shape_ = X.shape[1:]
        images = (X if X.ndim == 4 else X[..., None]) * 2.0 - 1.0
        self.classes_, codes = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        seed = 0 if self.random_state is None else self.random_state
        keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(self.random_state)
        self.denoiser_ = build_denoiser(images.shape[1:], k, self.channels)
        self.denoiser_.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse")
        alpha_bar = noise_schedule(self.schedule, self.timesteps)
        onehot = np.eye(k + 1, dtype=np.float32)
        m = self.steps_per_epoch * self.batch_size
        history = []
        for epoch in range(self.epochs):
            started = time.perf_counter()
            idx = rng.integers(0, len(images), m)
            t = rng.integers(0, self.timesteps, m)
            noise = rng.standard_normal((m, *images.shape[1:])).astype(np.float32)
            a = alpha_bar[t].reshape(-1, 1, 1, 1).astype(np.float32)
            noisy = np.sqrt(a) * images[idx] + np.sqrt(1.0 - a) * noise
            labels = np.where(rng.random(m) < self.class_dropout, k, codes[idx])
            result = self.denoiser_.fit(
                [noisy, step_features(t, self.timesteps), onehot[labels]], noise,
                batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0,
            )
            history.append(float(result.history["loss"][0]))
            if self.verbose:
                print(
                    f"diffusion epoch {epoch + 1}/{self.epochs}: loss {history[-1]:.4f} "
                    f"({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True,
                )
        self.history_ = np.asarray(history)
        self._sample_rng = np.random.default_rng(None if self.random_state is None else self.random_state + 1)
        return self

    def _predict_noise(self, x: np.ndarray, t: int, codes: np.ndarray) -> np.ndarray:
        k = len(self.classes_)
        onehot = np.eye(k + 1, dtype=np.float32)
        features = step_features(np.full(len(x), t), self.timesteps)
        if self.guidance == 0:
            return np.asarray(self.denoiser_.predict_on_batch([x, features, onehot[codes]]))
        both = np.asarray(self.denoiser_.predict_on_batch([
            np.concatenate([x, x]), np.concatenate([features, features]),
            np.concatenate([onehot[codes], onehot[np.full(len(x), k)]]),
        ]))
        conditional, unconditional = both[: len(x)], both[len(x):]
        return (1.0 + self.guidance) * conditional - self.guidance * unconditional

    def sample(self, counts: dict[Any, int] | int, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Generates examples by DDIM: ``counts`` maps class -> how many (an int means that many per class).

        Returns:
            (examples in the fitted shape with values in [0, 1], their labels).

        Raises:
            FlywheelError: not fitted, or a class that fit did not see.
        """
        if not hasattr(self, "denoiser_"):
            raise FlywheelError("ConditionalDiffusion.sample called before fit; fit it on the real examples first (or load a saved one).")
        labels, codes = requested_labels("ConditionalDiffusion", self.classes_, counts)
        shape = tuple(self.denoiser_.inputs[0].shape[1:])
        noise = self._sample_rng.standard_normal((len(labels), *shape)).astype(np.float32)
        parts = [self._ddim(noise[i: i + batch_size], codes[i: i + batch_size]) for i in range(0, len(labels), batch_size)]
        images = np.concatenate(parts) if parts else noise
        return ((images + 1.0) / 2.0).reshape((len(labels), *self.shape_)), labels

    def _ddim(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        alpha_bar = noise_schedule(self.schedule, self.timesteps)
        steps = np.unique(np.linspace(0, self.timesteps - 1, self.sampling_steps).round().astype(int))[::-1]
        for i, t in enumerate(steps):
            eps = self._predict_noise(x, int(t), codes)
            a = alpha_bar[t]
            # predicted clean image, clipped to the data range (keeps a small model's few steps stable)
            x0 = np.clip((x - np.sqrt(1.0 - a) * eps) / np.sqrt(a), -1.0, 1.0)
            if i + 1 == len(steps):
                return x0.astype(np.float32)
            a_next = alpha_bar[steps[i + 1]]
            eps = (x - np.sqrt(a) * x0) / np.sqrt(1.0 - a)
            x = (np.sqrt(a_next) * x0 + np.sqrt(1.0 - a_next) * eps).astype(np.float32)
        return x

    def save(self, directory: str) -> None:
        """Writes the denoiser (``denoiser.keras``) and what sampling needs (``diffusion.json``) into ``directory``."""
        if not hasattr(self, "denoiser_"):
            raise FlywheelError("ConditionalDiffusion.save called before fit; fit it first.")
        os.makedirs(directory, exist_ok=True)
        self.denoiser_.save(os.path.join(directory, _MODEL_FILE))
        state = {"params": self.get_params(), "classes": self.classes_.tolist(), "shape": list(self.shape_)}
        with open(os.path.join(directory, _STATE_FILE), "w", encoding="utf-8") as handle:
            json.dump(state, handle)

    @classmethod
    def load(cls, directory: str) -> ConditionalDiffusion:
        """A fitted model from ``save``'s directory; the denoiser loads with Keras ``safe_mode=True``.

        Raises:
            FlywheelError: the directory lacks the saved files.
        """
        import keras

        paths = [os.path.join(directory, name) for name in (_MODEL_FILE, _STATE_FILE)]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FlywheelError(f"ConditionalDiffusion.load: {missing} not found; pass a directory written by ConditionalDiffusion.save.")
        with open(paths[1], encoding="utf-8") as handle:
            state = json.load(handle)
        model = cls(**state["params"])
        model.denoiser_ = keras.saving.load_model(paths[0], safe_mode=True)
        model.classes_ = np.asarray(state["classes"])
        model.shape_ = tuple(state["shape"])
        seed = model.random_state
        model._sample_rng = np.random.default_rng(None if seed is None else seed + 1)
        return model

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        X = rng.random((12, 4, 4, 1))
        y = np.repeat([0, 1], 6)

        def bad_input(model: ConditionalDiffusion) -> None:
            model.fit(X * 255.0, y)

        return {
            "params": {"channels": 8, "epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "sampling_steps": 2, "random_state": 0},
            "bad_params": [{"channels": 4}, {"epochs": 0}, {"schedule": "quadratic"}, {"guidance": -1.0}, {"learning_rate": 0.0}],
            "call": lambda model: model.fit(X, y).sample(2),
            "bad_input": bad_input,
            "shapes": lambda result: result[0].shape == (4, 4, 4, 1) and result[1].tolist() == [0, 0, 1, 1],
        }

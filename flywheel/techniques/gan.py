"""A small class-conditional GAN that generates extra samples for low-data classes.

In the spirit of DAGAN (Antoniou et al. 2017) but far smaller: a conditional
MLP GAN (Mirza & Osindero 2014) on flattened images scaled to [0, 1]. The
generator maps (noise, one-hot class) to an image; the discriminator scores
(image, one-hot class). Written in NumPy (two-layer networks, Adam,
non-saturating loss) because 8x8 digits need nothing bigger, it is exactly
reproducible under a seed, and it keeps TensorFlow out of this step::

    gan = ConditionalGAN(steps=3000, random_state=0).fit(images, labels)
    fake_images, fake_labels = gan.sample({3: 50, 7: 50})
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.techniques._checks import requested_labels
from flywheel.techniques.base import Interval, Technique


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, beta1: float = 0.5, beta2: float = 0.999) -> None:
        self.params, self.lr, self.b1, self.b2 = params, lr, beta1, beta2
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= self.lr * (m / (1 - self.b1**self.t)) / (np.sqrt(v / (1 - self.b2**self.t)) + 1e-8)


class ConditionalGAN(Technique):
    """Conditional MLP GAN (see the module docstring).

    Args:
        latent_dim: Size of the generator's noise input.
        hidden_units: Width of the hidden layer of both networks.
        steps: Generator/discriminator update pairs.
        batch_size: Real (and fake) examples per step.
        learning_rate: Adam step size (beta1 = 0.5, as in DCGAN).
        random_state: Seeds initialisation, batches, noise and sampling.

    Attributes:
        classes_: Labels seen in fit.
        shape_: Shape of one example (restored by ``sample``).
        history_: (steps, 2) discriminator and generator losses.
    """

    _parameter_constraints = {
        "latent_dim": [Interval(int, 1, None)],
        "hidden_units": [Interval(int, 1, None)],
        "steps": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, *, latent_dim=16, hidden_units=128, steps=3000, batch_size=64, learning_rate=1e-3, random_state=None):
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _generate(self, z: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        V1, c1, V2, c2 = self.generator_
        g_in = np.hstack([z, c])
        a = g_in @ V1 + c1
        h = np.maximum(a, 0.0)
        x = _sigmoid(h @ V2 + c2)
        return x, (g_in, a, h)

    def _discriminate(self, x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        W1, b1, w2, b2 = self.discriminator_
        d_in = np.hstack([x, c])
        a = d_in @ W1 + b1
        h = np.where(a > 0, a, 0.2 * a)
        return (h @ w2 + b2)[:, 0], (d_in, a, h)

    def _d_backward(self, dlogit: np.ndarray, cache: tuple[np.ndarray, ...]) -> tuple[list[np.ndarray], np.ndarray]:
        W1, _, w2, _ = self.discriminator_
        d_in, a, h = cache
        dlogit = dlogit[:, None]
        da = (dlogit @ w2.T) * np.where(a > 0, 1.0, 0.2)
        grads = [d_in.T @ da, da.sum(axis=0), h.T @ dlogit, dlogit.sum(axis=0)]
        return grads, (da @ W1.T)[:, : self.dim_]

    def fit(self, X: Any, y: Any) -> ConditionalGAN:
        """Trains the GAN on examples X (any shape per example, values in [0, 1]) with labels y.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: malformed data or values outside [0, 1].
        """
        self._validate_params()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim < 2 or y.ndim != 1 or len(X) != len(y) or len(X) == 0:
            raise FlywheelError(f"ConditionalGAN.fit needs X (n, ...) and y (n,) of equal length; got X {X.shape} and y {y.shape}.")
        if not np.all(np.isfinite(X)) or X.min() < 0 or X.max() > 1:
            raise FlywheelError("ConditionalGAN.fit needs finite values in [0, 1]; scale images first (e.g. uint8 / 255).")
        self.shape_ = X.shape[1:]
        flat = X.reshape(len(X), -1)
        self.dim_ = flat.shape[1]
        self.classes_, codes = np.unique(y, return_inverse=True)
        k, z_dim, hid = len(self.classes_), self.latent_dim, self.hidden_units
        onehot = np.eye(k)
        rng = np.random.default_rng(self.random_state)

        def init(n_in: int, n_out: int) -> np.ndarray:
            return rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))

        self.generator_ = [init(z_dim + k, hid), np.zeros(hid), init(hid, self.dim_) * 0.5, np.zeros(self.dim_)]
        self.discriminator_ = [init(self.dim_ + k, hid), np.zeros(hid), init(hid, 1) * 0.5, np.zeros(1)]
        g_opt = _Adam(self.generator_, self.learning_rate)
        d_opt = _Adam(self.discriminator_, self.learning_rate)
        history = np.zeros((self.steps, 2))
        m = min(self.batch_size, len(flat))
        for step in range(self.steps):
            idx = rng.integers(0, len(flat), m)
            c_real = onehot[codes[idx]]
            c_fake = onehot[rng.integers(0, k, m)]
            fake, _ = self._generate(rng.standard_normal((m, z_dim)), c_fake)
            # discriminator: BCE(real -> 1, fake -> 0); d loss / d logit = sigmoid(logit) - target
            logit_r, cache_r = self._discriminate(flat[idx], c_real)
            logit_f, cache_f = self._discriminate(fake, c_fake)
            g_r, _ = self._d_backward((_sigmoid(logit_r) - 1.0) / m, cache_r)
            g_f, _ = self._d_backward(_sigmoid(logit_f) / m, cache_f)
            d_opt.step([a + b for a, b in zip(g_r, g_f)])
            # generator: non-saturating loss BCE(D(G(z, c)) -> 1)
            fake, (g_in, a, h) = self._generate(rng.standard_normal((m, z_dim)), c_fake)
            logit, cache = self._discriminate(fake, c_fake)
            _, dx = self._d_backward((_sigmoid(logit) - 1.0) / m, cache)
            do = dx * fake * (1.0 - fake)
            da = (do @ self.generator_[2].T) * (a > 0)
            g_opt.step([g_in.T @ da, da.sum(axis=0), h.T @ do, do.sum(axis=0)])
            history[step] = [
                -np.mean(np.log(_sigmoid(logit_r) + 1e-12) + np.log(1 - _sigmoid(logit_f) + 1e-12)),
                -np.mean(np.log(_sigmoid(logit) + 1e-12)),
            ]
        self.history_ = history
        self._sample_rng = np.random.default_rng(None if self.random_state is None else self.random_state + 1)
        return self

    def sample(self, counts: dict[Any, int] | int) -> tuple[np.ndarray, np.ndarray]:
        """Generates examples: ``counts`` maps class -> how many (an int means that many per class).

        Returns:
            (examples in the fitted shape with values in [0, 1], their labels).

        Raises:
            FlywheelError: not fitted, or a class that fit did not see.
        """
        if not hasattr(self, "generator_"):
            raise FlywheelError("ConditionalGAN.sample called before fit; fit it on the real examples first.")
        labels, codes = requested_labels("ConditionalGAN", self.classes_, counts)
        fake, _ = self._generate(self._sample_rng.standard_normal((len(labels), self.latent_dim)), np.eye(len(self.classes_))[codes])
        return fake.reshape((len(labels), *self.shape_)), labels

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        X = rng.random((40, 4, 4, 1))
        y = np.repeat([0, 1], 20)

        def bad_input(gan: ConditionalGAN) -> None:
            gan.fit(X * 255.0, y)

        return {
            "params": {"latent_dim": 4, "hidden_units": 8, "steps": 20, "batch_size": 16, "random_state": 0},
            "bad_params": [{"latent_dim": 0}, {"steps": 0}, {"learning_rate": 0.0}, {"hidden_units": 2.5}],
            "call": lambda gan: gan.fit(X, y).sample(3),
            "bad_input": bad_input,
        }

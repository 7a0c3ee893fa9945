"""Co-teaching (Han et al., NeurIPS 2018): two networks teach each other which labels to trust.

Each mini-batch, each network ranks the samples by its own cross-entropy and
keeps the ``R(T)`` fraction with the smallest loss; each network is then
updated on the samples its *peer* kept. Small-loss samples are likely
correctly labelled (networks fit clean labels before noisy ones), and the two
networks' different errors keep each other from confirming their own
mistakes. The share kept follows the paper's schedule, per epoch T (from 1)::

    R(T) = 1 - min(T / T_k * tau, tau)      tau = forget_rate, T_k = num_gradual

(the paper's code counts epochs from 0 and uses ``(T / T_k) ** c`` with
``c = exponent = 1``; here epoch 1 already forgets ``tau / T_k``). ``tau`` is
set to the (estimated) noise rate.
"""

from __future__ import annotations

from typing import Any, Callable

from flywheel.techniques._checks import check_features_labels
from flywheel.techniques.base import Interval, Technique


def forget_rate_schedule(epochs: int, forget_rate: float, num_gradual: int, exponent: float = 1.0) -> list[float]:
    """The share of each batch dropped (``1 - R(T)``) for epochs 1..``epochs``."""
    if num_gradual <= 0:
        return [float(forget_rate)] * epochs
    return [float(forget_rate * min((t / num_gradual) ** exponent, 1.0)) for t in range(1, epochs + 1)]


def _callable(value: Any) -> bool:
    """a callable () -> compiled-or-not Keras model"""
    return callable(value)


class CoTeaching(Technique):
    """Trains two Keras networks by co-teaching; predicts with the one that validates better.

    Args:
        build_network: ``() -> keras.Model`` with softmax output; called twice
            (after seeding, so the two get different initial weights).
        forget_rate: tau, the largest share of each batch dropped, in [0, 1).
        num_gradual: T_k, epochs over which the drop share grows linearly to tau
            (0: tau from the first epoch).
        exponent: c of the schedule ``min((T / T_k) ** c, 1) * tau``.
        epochs: Training epochs (no early stopping, as in the paper).
        batch_size: Samples per step.
        learning_rate: Adam learning rate of both networks.
        random_state: Seeds Python, NumPy and TensorFlow before building and training.

    Attributes:
        networks_: The two trained networks.
        best_index_: 0 or 1, the network with the higher validation accuracy
            (network 0 without validation data).
        history_: Per-epoch ``loss`` and ``accuracy`` (on the kept samples and
            all given labels), ``val_loss``/``val_accuracy``, ``forget_rate``,
            for the chosen network; ``peer_*`` for the other.
    """

    _parameter_constraints = {
        "build_network": [_callable],
        "forget_rate": [Interval(float, 0, 1, closed="left")],
        "num_gradual": [Interval(int, 0, None)],
        "exponent": [Interval(float, 0, None, closed="neither")],
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        build_network=None,
        forget_rate=0.2,
        num_gradual=10,
        exponent=1.0,
        epochs=20,
        batch_size=64,
        learning_rate=0.001,
        random_state=None,
    ):
        self.build_network = build_network
        self.forget_rate = forget_rate
        self.num_gradual = num_gradual
        self.exponent = exponent
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, x: Any, y: Any, *, validation_data: tuple[Any, Any] | None = None) -> CoTeaching:
        """Trains both networks on ``(x, y)`` (integer labels 0..k-1, possibly noisy).

        Raises:
            ParameterError: a parameter breaks its rule.
            TechniqueInputError: x and y do not fit together (see ``_checks``).
        """
        import keras
        import numpy as np
        import tensorflow as tf

        self._validate_params()
        x, y = check_features_labels("CoTeaching", x, y)
        x = x.astype("float32")
        y = y.astype("int32")
        keras.utils.set_random_seed(0 if self.random_state is None else self.random_state)
        nets = [self.build_network(), self.build_network()]
        optimizers = [keras.optimizers.Adam(learning_rate=self.learning_rate) for _ in nets]
        step = _train_step(nets, optimizers)
        rates = forget_rate_schedule(self.epochs, self.forget_rate, self.num_gradual, self.exponent)
        seed = 0 if self.random_state is None else self.random_state
        data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        data = data.batch(self.batch_size)
        logs: dict[str, list[float]] = {key: [] for key in ("loss", "peer_loss", "forget_rate")}
        for key in ("accuracy", "val_loss", "val_accuracy"):
            logs[key], logs[f"peer_{key}"] = [], []
        for rate in rates:
            totals = np.zeros(2)
            batches = 0
            for xb, yb in data:
                keep = max(1, int(round((1.0 - rate) * int(xb.shape[0]))))
                totals += np.asarray(step(xb, yb, tf.constant(keep, dtype=tf.int32)))
                batches += 1
            logs["loss"].append(float(totals[0] / batches))
            logs["peer_loss"].append(float(totals[1] / batches))
            logs["forget_rate"].append(rate)
            for i, prefix in enumerate(("", "peer_")):
                logs[f"{prefix}accuracy"].append(_score(nets[i], x, y)[1])
                if validation_data is not None:
                    val_x, val_y = validation_data
                    val_loss, val_acc = _score(nets[i], np.asarray(val_x, "float32"), np.asarray(val_y, "int32"))
                    logs[f"{prefix}val_loss"].append(val_loss)
                    logs[f"{prefix}val_accuracy"].append(val_acc)
        best = 0
        if validation_data is not None and logs["peer_val_accuracy"][-1] > logs["val_accuracy"][-1]:
            best = 1
        self.networks_ = nets
        self.best_index_ = best
        self.history_ = _swap(logs) if best == 1 else logs
        return self

    def predict_proba(self, x: Any) -> Any:
        """Class probabilities of the chosen network."""
        import numpy as np

        return _proba(self.networks_[self.best_index_], np.asarray(x, "float32"))

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        import numpy as np

        rng = np.random.RandomState(0)
        x = rng.normal(size=(64, 4)).astype("float32")
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)

        def build() -> Any:
            import keras

            inputs = keras.Input(shape=(4,))
            hidden = keras.layers.Dense(8, activation="relu")(inputs)
            return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))

        def call(technique: Technique) -> list[Any]:
            technique.fit(x, y)
            return [technique.predict_proba(x[:10]), np.asarray(technique.history_["loss"])]

        return {
            "params": {"build_network": build, "forget_rate": 0.2, "num_gradual": 2, "epochs": 3, "batch_size": 16,
                       "learning_rate": 0.01, "random_state": 0},
            "bad_params": [{"forget_rate": 1.0}, {"num_gradual": -1}, {"epochs": 0}, {"build_network": None},
                           {"learning_rate": 0}, {"random_state": "0"}],
            "call": call,
            "bad_input": lambda technique: technique.fit(x, y[:-3]),
            "shapes": lambda result: result[0].shape == (10, 2) and result[1].shape == (3,),
        }


def _swap(logs: dict[str, list[float]]) -> dict[str, list[float]]:
    swapped = dict(logs)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        swapped[key], swapped[f"peer_{key}"] = logs[f"peer_{key}"], logs[key]
    return swapped


def _score(net: Any, x: Any, y: Any) -> tuple[float, float]:
    import numpy as np

    proba = _proba(net, x).astype("float64")
    loss = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)).mean()
    return float(loss), float((proba.argmax(axis=1) == y).mean())


def _proba(net: Any, x: Any, batch: int = 2048) -> Any:
    # A direct call, not predict(): predict() retraces a function per new network.
    import numpy as np

    return np.concatenate([np.asarray(net(x[i:i + batch], training=False)) for i in range(0, len(x), batch)])


def _train_step(nets: list[Any], optimizers: list[Any]) -> Callable[..., Any]:
    """One co-teaching step: each net keeps its ``keep`` smallest-loss samples; its peer learns from them."""
    import keras
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(xb: Any, yb: Any, keep: Any) -> Any:
        with tf.GradientTape(persistent=True) as tape:
            losses = [keras.losses.sparse_categorical_crossentropy(yb, net(xb, training=True)) for net in nets]
            # Selection by each net's own loss (no gradient through the ranking).
            picks = [tf.argsort(tf.stop_gradient(loss))[:keep] for loss in losses]
            # Net 0 learns from net 1's picks and vice versa.
            updates = [tf.reduce_mean(tf.gather(losses[0], picks[1])), tf.reduce_mean(tf.gather(losses[1], picks[0]))]
        for net, optimizer, loss in zip(nets, optimizers, updates):
            grads = tape.gradient(loss, net.trainable_variables)
            optimizer.apply_gradients(zip(grads, net.trainable_variables))
        del tape
        return tf.stack(updates)

    return step

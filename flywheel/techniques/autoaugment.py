"""AutoAugment-style augmentation-policy search, much smaller than the paper's.

A policy is a list of sub-policies; a sub-policy is a list of
``[operation, probability, magnitude]`` (magnitude in [0, 1]). Applying a
policy (Cubuk et al., "AutoAugment", CVPR 2019) draws one sub-policy per image
and applies each of its operations with its probability. The operations are
written here in NumPy/SciPy for small grey or colour images.

The search is NOT the paper's: AutoAugment trains an RNN controller with
reinforcement learning over 15,000 child models. ``PolicySearch`` runs a
seeded random search over policies followed by a (1+1) evolutionary
refinement (mutate the best, keep the child if it scores higher), each
candidate scored by the validation accuracy of a quick child model
(logistic regression on pixels, or with ``child_model="cnn"`` a small
Keras CNN) trained on the train split plus ``n_copies`` augmented copies of
it::

    search = PolicySearch(n_candidates=16, n_mutations=8, random_state=0)
    search.fit(train_images, train_labels, val_images, val_labels)
    augmented = apply_policy(train_images, search.best_policy_, random_state=0)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from flywheel.errors import FlywheelError, ParameterError
from flywheel.techniques.base import Interval, Options, Technique


def _affine(image: np.ndarray, matrix: np.ndarray, offset_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    from scipy.ndimage import affine_transform

    h, w = image.shape[:2]
    center = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    offset = center - matrix @ center - np.asarray(offset_px)
    return np.stack(
        [affine_transform(image[..., ch], matrix, offset=offset, order=1, mode="constant", cval=0.0) for ch in range(image.shape[2])],
        axis=-1,
    )


def _rotate(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    t = np.deg2rad(30.0 * m * sign)
    return _affine(img, np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]))


def _shear_x(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return _affine(img, np.array([[1.0, 0.0], [0.4 * m * sign, 1.0]]))


def _shear_y(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return _affine(img, np.array([[1.0, 0.4 * m * sign], [0.0, 1.0]]))


def _translate_x(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return _affine(img, np.eye(2), (0.0, 0.25 * img.shape[1] * m * sign))


def _translate_y(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return _affine(img, np.eye(2), (0.25 * img.shape[0] * m * sign, 0.0))


def _scale(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return _affine(img, np.eye(2) / (1.0 + 0.3 * m * sign))


def _noise(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0.0, 0.25 * m, img.shape), 0.0, 1.0)


def _erase(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    size = max(1, int(round(m * 0.5 * min(h, w))))
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    out = img.copy()
    out[top : top + size, left : left + size] = 0.0
    return out


def _contrast(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img.mean() + (img - img.mean()) * (1.0 + 0.8 * m * sign), 0.0, 1.0)


def _brightness(img: np.ndarray, m: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img * (1.0 + 0.6 * m * sign), 0.0, 1.0)


OPERATIONS: dict[str, Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]] = {
    "rotate": _rotate,
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
    "scale": _scale,
    "noise": _noise,
    "erase": _erase,
    "contrast": _contrast,
    "brightness": _brightness,
}


def check_policy(policy: Any) -> list[list[list[Any]]]:
    """A policy as a list of sub-policies of [operation, probability, magnitude].

    Raises:
        ParameterError: not that shape, an unknown operation, or a value outside [0, 1].
    """
    ok = isinstance(policy, list) and bool(policy) and all(isinstance(sub, list) and sub for sub in policy)
    for sub in policy if ok else []:
        for step in sub:
            ok = ok and isinstance(step, (list, tuple)) and len(step) == 3 and step[0] in OPERATIONS
            ok = ok and all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in step[1:])
    if not ok:
        raise ParameterError(
            "An augmentation policy must be a list of sub-policies, each a non-empty list of "
            f"[operation, probability in [0, 1], magnitude in [0, 1]] with operation one of {', '.join(OPERATIONS)}. "
            f"Got {policy!r} instead."
        )
    return [[[str(op), float(p), float(m)] for op, p, m in sub] for sub in policy]


def apply_policy(images: Any, policy: Any, *, random_state: int | None = None) -> np.ndarray:
    """Augments every image once: one random sub-policy each, each op with its probability.

    Args:
        images: (n, h, w, c) floats in [0, 1].
        policy: See ``check_policy``.
        random_state: Seeds the draws.

    Raises:
        ParameterError: malformed policy.
        FlywheelError: images not (n, h, w, c) in [0, 1].
    """
    policy = check_policy(policy)
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise FlywheelError(f"apply_policy needs images of shape (n, h, w, c) with values in [0, 1]; got shape {images.shape}.")
    rng = np.random.default_rng(random_state)
    out = images.copy()
    for i in range(len(out)):
        for op, prob, magnitude in policy[rng.integers(len(policy))]:
            if rng.random() < prob:
                out[i] = OPERATIONS[op](out[i], magnitude, 1.0 if rng.random() < 0.5 else -1.0, rng)
    return out


def random_policy(rng: np.random.Generator, n_subpolicies: int, ops_per_subpolicy: int) -> list[list[list[Any]]]:
    """A random policy; probabilities and magnitudes on AutoAugment's grids (11 and 10 levels)."""
    names = list(OPERATIONS)
    return [
        [[names[rng.integers(len(names))], rng.integers(0, 11) / 10.0, rng.integers(1, 11) / 10.0] for _ in range(ops_per_subpolicy)]
        for _ in range(n_subpolicies)
    ]


def _mutate(policy: list[list[list[Any]]], rng: np.random.Generator) -> list[list[list[Any]]]:
    child = [[list(step) for step in sub] for sub in policy]
    step = child[rng.integers(len(child))][rng.integers(len(child[0]))]
    field = rng.integers(3)
    if field == 0:
        step[0] = list(OPERATIONS)[rng.integers(len(OPERATIONS))]
    else:
        step[field] = float(np.clip(step[field] + rng.choice([-0.2, -0.1, 0.1, 0.2]), 0.0 if field == 1 else 0.1, 1.0))
        step[field] = round(step[field], 1)
    return child


def child_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *, C: float = 1.0) -> float:
    """Accuracy of the quick child model (logistic regression on flattened pixels)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C, max_iter=500).fit(train_x.reshape(len(train_x), -1), train_y)
    return float(model.score(test_x.reshape(len(test_x), -1), test_y))


def cnn_child_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *, epochs: int = 20, seed: int = 0
) -> float:
    """Accuracy of a small CNN child: Conv2D(16, 3x3) -> max-pool -> Dense(32) -> softmax, Adam 0.003, batch 32.

    Seeds Keras globally (``keras.utils.set_random_seed``) so a score is
    reproducible, as ``train`` does.
    """
    import keras

    keras.utils.set_random_seed(seed)
    n_classes = int(max(np.max(train_y), np.max(test_y))) + 1
    model = keras.Sequential([
        keras.Input(train_x.shape[1:]),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    model.fit(train_x.astype(np.float32), np.asarray(train_y), epochs=epochs, batch_size=32, verbose=0)
    predicted = np.argmax(model.predict(test_x.astype(np.float32), batch_size=256, verbose=0), axis=1)
    return float(np.mean(predicted == np.asarray(test_y)))


def augmented_training_set(images: np.ndarray, labels: np.ndarray, policy: Any, n_copies: int, random_state: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The originals plus ``n_copies`` policy-augmented copies of them."""
    copies = [apply_policy(images, policy, random_state=None if random_state is None else random_state + i) for i in range(n_copies)]
    return np.concatenate([images, *copies]), np.concatenate([labels] * (n_copies + 1))


CHILD_MODELS = ("logreg", "cnn")


class PolicySearch(Technique):
    """Random + (1+1)-evolutionary search of augmentation policies (see the module docstring).

    Args:
        n_candidates: Random policies scored first.
        n_mutations: Evolutionary steps after the random phase.
        n_subpolicies: Sub-policies per policy.
        ops_per_subpolicy: Operations per sub-policy.
        n_copies: Augmented copies of the train split per child model.
        C: Inverse regularisation of the child logistic regression.
        child_model: "logreg" (logistic regression on pixels, fast) or
            "cnn" (``cnn_child_accuracy``, closer to the image models, slower).
        child_epochs: Epochs of the CNN child.
        random_state: Seeds the search and the augmentations.

    Attributes:
        best_policy_: The highest-scoring policy.
        best_score_: Its validation accuracy.
        baseline_score_: Validation accuracy without augmentation.
        trials_: Every candidate as {"policy", "score", "phase"}.
    """

    _parameter_constraints = {
        "n_candidates": [Interval(int, 1, None)],
        "n_mutations": [Interval(int, 0, None)],
        "n_subpolicies": [Interval(int, 1, None)],
        "ops_per_subpolicy": [Interval(int, 1, None)],
        "n_copies": [Interval(int, 1, None)],
        "C": [Interval(float, 0, None, closed="neither")],
        "child_model": [Options(CHILD_MODELS)],
        "child_epochs": [Interval(int, 1, None)],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, n_candidates=16, n_mutations=8, n_subpolicies=5, ops_per_subpolicy=2, n_copies=4, C=1.0,
        child_model="logreg", child_epochs=20, random_state=None,
    ):
        self.n_candidates = n_candidates
        self.n_mutations = n_mutations
        self.n_subpolicies = n_subpolicies
        self.ops_per_subpolicy = ops_per_subpolicy
        self.n_copies = n_copies
        self.C = C
        self.child_model = child_model
        self.child_epochs = child_epochs
        self.random_state = random_state

    def _child(self, x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray, seed: int) -> float:
        if self.child_model == "cnn":
            return cnn_child_accuracy(x, y, vx, vy, epochs=self.child_epochs, seed=seed)
        return child_accuracy(x, y, vx, vy, C=self.C)

    def _score(self, policy: Any, data: tuple[np.ndarray, ...], seed: int) -> float:
        x, y, vx, vy = data
        ax, ay = augmented_training_set(x, y, policy, self.n_copies, seed)
        return self._child(ax, ay, vx, vy, seed)

    def fit(self, images: Any, labels: Any, val_images: Any, val_labels: Any) -> PolicySearch:
        """Searches for the policy whose augmented train split scores best on the validation split.

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: images not (n, h, w, c) in [0, 1] or lengths that differ.
        """
        self._validate_params()
        data = []
        for x, y, what in ((images, labels, "train"), (val_images, val_labels, "validation")):
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
            if x.ndim != 4 or len(x) != len(y) or len(x) == 0 or x.min() < 0 or x.max() > 1:
                raise FlywheelError(
                    f"PolicySearch.fit needs {what} images of shape (n, h, w, c) in [0, 1] and one label each; "
                    f"got images {x.shape} and labels {y.shape}."
                )
            data += [x, y]
        rng = np.random.default_rng(self.random_state)
        seed = int(rng.integers(2**31))
        self.baseline_score_ = self._child(data[0], data[1], data[2], data[3], seed)
        self.trials_ = []
        for _ in range(self.n_candidates):
            policy = random_policy(rng, self.n_subpolicies, self.ops_per_subpolicy)
            self.trials_.append({"policy": policy, "score": self._score(policy, tuple(data), seed), "phase": "random"})
        best = max(self.trials_, key=lambda t: t["score"])
        for _ in range(self.n_mutations):
            child = _mutate(best["policy"], rng)
            trial = {"policy": child, "score": self._score(child, tuple(data), seed), "phase": "evolution"}
            self.trials_.append(trial)
            if trial["score"] > best["score"]:
                best = trial
        self.best_policy_, self.best_score_ = best["policy"], best["score"]
        return self

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        X = rng.random((30, 6, 6, 1))
        y = np.tile([0, 1, 2], 10)
        X[np.arange(30), y, y, 0] = 1.0  # a learnable signal per class

        def bad_input(search: PolicySearch) -> None:
            search.fit(X[..., 0], y, X, y)

        return {
            "params": {"n_candidates": 2, "n_mutations": 1, "n_subpolicies": 2, "n_copies": 1, "random_state": 0},
            "bad_params": [{"n_candidates": 0}, {"n_mutations": -1}, {"n_copies": 0}, {"C": -1.0}, {"child_model": "tree"}, {"child_epochs": 0}],
            "call": lambda search: np.array([t["score"] for t in search.fit(X[:18], y[:18], X[18:], y[18:]).trials_]),
            "bad_input": bad_input,
        }


def policy_from_json(value: Any) -> list[list[list[Any]]]:
    """Reads a policy that may come wrapped as {"policy": [...]} (the artifact's JSON)."""
    if isinstance(value, dict) and "policy" in value:
        value = value["policy"]
    return check_policy(value)

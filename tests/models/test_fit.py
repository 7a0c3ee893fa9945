"""The one fit loop (flywheel.models.fit): options are checked when made, and each path trains."""

from __future__ import annotations

import time

import numpy as np
import pytest

from flywheel.errors import ParameterError
from flywheel.models import fit as fl


def _blobs(n=240, seed=0):
    """Two separable Gaussian classes in 4 features: (x_train, y_train, x_val, y_val)."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 2
    x = (rng.normal(size=(n, 4)) + 2.0 * y[:, None]).astype("float32")
    cut = int(n * 0.75)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _dense(width=8, inputs=4, classes=2):
    def build():
        import keras

        i = keras.Input(shape=(inputs,))
        return keras.Model(i, keras.layers.Dense(classes, activation="softmax")(keras.layers.Dense(width, activation="relu")(i)))

    return build


def _images(n=64, seed=0):
    """Tiny 6x6 one-channel images of two classes (bright top or bright bottom half), pixels in [0, 255]."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0, 60, size=(n, 6, 6, 1)).astype("float32")
    x[y == 0, :3] += 190
    x[y == 1, 3:] += 190
    return x, y


def _conv():
    import keras

    i = keras.Input(shape=(6, 6, 1))
    h = keras.layers.Rescaling(1 / 255.0)(i)
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(h))
    return keras.Model(i, keras.layers.Dense(2, activation="softmax")(h))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fl.Optimizer(learning_rate=0), "'learning_rate' parameter of Optimizer"),
        (lambda: fl.Schedule(epochs=0), "'epochs' parameter of Schedule"),
        (lambda: fl.Schedule(epochs=1, shuffle="random"), "'shuffle' parameter of Schedule"),
        (lambda: fl.Schedule(epochs=1, seed=1.5), "'seed' parameter of Schedule"),
        (lambda: fl.Objective(loss="hinge"), "'loss' parameter of Objective"),
        (lambda: fl.Objective(class_weights="inverse"), "'class_weights' parameter of Objective"),
        (lambda: fl.Augmentation(randaugment_m=11.0), "'randaugment_m' parameter of Augmentation"),
        (lambda: fl.CoTeachingOptions(forget_rate=1.0), "'forget_rate' parameter of CoTeachingOptions"),
        (lambda: fl.Distillation(teacher=object()), "'teacher' parameter of Distillation must be a Keras model"),
        (lambda: fl.FitOptions(schedule=3), "'schedule' parameter of FitOptions must be a Schedule"),
        (lambda: fl.FitOptions(fl.Schedule(1), objective=fl.Objective(loss="focal"), coteaching=fl.CoTeachingOptions()),
         "FitOptions with coteaching must have Objective"),
        (lambda: fl.FitOptions(fl.Schedule(1), augmentation=fl.Augmentation(mixup_alpha=0.2),
                               distillation=fl.Distillation(_dense()())), "FitOptions with distillation"),
        (lambda: fl.FitOptions(fl.Schedule(1, shuffle="keras"), augmentation=fl.Augmentation(randaugment_n=1)),
         "shuffle='keras'"),
    ],
)
def test_options_are_checked_when_made(make, match):
    with pytest.raises(ParameterError, match=match):
        make()


def test_options_are_frozen():
    schedule = fl.Schedule(epochs=3)
    with pytest.raises(AttributeError):
        schedule.epochs = 4


def test_arrays_fit_with_early_stopping_and_the_same_seed_gives_the_same_history():
    x, y, xv, yv = _blobs()
    options = fl.FitOptions(fl.Schedule(epochs=40, batch_size=16, early_stopping_patience=2, seed=3), fl.Optimizer(0.05))
    first = fl.fit(_dense(), (x, y), (xv, yv), options)
    again = fl.fit(_dense(), (x, y), (xv, yv), options)

    assert first.history == again.history
    assert first.evaluate((xv, yv))["accuracy"] > 0.9
    assert set(first.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # Early stopping ends 2 epochs after the best one (unless the epoch limit came first).
    assert first.epochs_run == 40 or first.best_epoch == first.epochs_run - 2
    assert first.fit_seconds > 0


def test_a_batched_dataset_trains_exactly_as_the_same_arrays_do():
    x, y, xv, yv = _blobs()
    options = fl.FitOptions(fl.Schedule(epochs=4, batch_size=16, seed=5), fl.Optimizer(0.05),
                            fl.Objective(loss="focal", focal_gamma=1.0))
    from_arrays = fl.fit(_dense(), (x, y), (xv, yv), options)
    # The reader's dataset, batched and shuffled as fit batches arrays: the same steps, so the same numbers.
    streamed = fl.fit(_dense(), fl.dataset(x, y, 16, shuffle_seed=5), fl.dataset(xv, yv, 16), options)

    assert set(streamed.history) == set(from_arrays.history)
    for key, values in from_arrays.history.items():
        assert streamed.history[key] == pytest.approx(values, rel=1e-5), key
    assert streamed.evaluate(fl.dataset(xv, yv, 64)) == pytest.approx(from_arrays.evaluate((xv, yv)))


def test_a_dataset_is_refused_where_arrays_are_needed_and_kinds_do_not_mix():
    x, y, xv, yv = _blobs()
    data = fl.dataset(x, y, 16)
    teacher = _dense()()
    for options, what in [
        (fl.FitOptions(fl.Schedule(1), coteaching=fl.CoTeachingOptions()), "co-teaching"),
        (fl.FitOptions(fl.Schedule(1), distillation=fl.Distillation(teacher)), "distillation"),
        (fl.FitOptions(fl.Schedule(1, shuffle="keras")), "Schedule\\(shuffle='keras'\\)"),
    ]:
        with pytest.raises(ParameterError, match=f"fit's {what}.*needs \\(features, labels\\) in memory"):
            fl.fit(_dense(), data, None, options)
    with pytest.raises(ParameterError, match="both \\(features, labels\\) in memory or both"):
        fl.fit(_dense(), data, (xv, yv), fl.FitOptions(fl.Schedule(1)))
    with pytest.raises(ParameterError, match="needs validation_data"):
        fl.fit(_dense(), (x, y), None, fl.FitOptions(fl.Schedule(1, early_stopping_patience=2)))


def test_mixup_trains_on_one_hot_labels_from_arrays_and_from_a_dataset():
    x, y = _images()
    options = fl.FitOptions(fl.Schedule(epochs=2, batch_size=16, seed=0), fl.Optimizer(0.01),
                            augmentation=fl.Augmentation(mixup_alpha=0.4, randaugment_n=1))
    result = fl.fit(_conv, (x, y), (x, y), options)
    assert result.one_hot_classes == 2
    assert result.net.loss.__class__.__name__ == "CategoricalCrossentropy"
    assert result.epochs_run == 2 and 0.0 <= result.evaluate((x, y))["accuracy"] <= 1.0

    streamed = fl.fit(_conv, fl.dataset(x, y, 16, shuffle_seed=0), fl.dataset(x, y, 16), options)
    assert streamed.one_hot_classes == 2 and streamed.epochs_run == 2
    assert streamed.evaluate(fl.dataset(x, y, 32))["loss"] > 0
    with pytest.raises(ParameterError, match="image arrays only"):
        fl.fit(_dense(), ({"a": np.zeros(4)}, np.zeros(4)), None, options)


def test_coteaching_keeps_the_better_network_and_its_history():
    x, y, xv, yv = _blobs(n=160)
    options = fl.FitOptions(fl.Schedule(epochs=3, batch_size=32, early_stopping_patience=5, seed=1), fl.Optimizer(0.05),
                            coteaching=fl.CoTeachingOptions(forget_rate=0.2, num_gradual=2))
    result = fl.fit(_dense(), (x, y), (xv, yv), options)

    assert result.history["forget_rate"] == pytest.approx([0.1, 0.2, 0.2])
    assert result.best_epoch == result.epochs_run == 3  # fixed epochs: no early stopping under co-teaching
    assert result.history["val_accuracy"][-1] >= result.history["peer_val_accuracy"][-1]
    assert result.evaluate((xv, yv))["accuracy"] == pytest.approx(result.history["val_accuracy"][-1], abs=1e-6)


def test_distillation_fits_on_teacher_targets_and_returns_a_plainly_compiled_student():
    x, y, xv, yv = _blobs()
    teacher = fl.fit(_dense(16), (x, y), None, fl.FitOptions(fl.Schedule(epochs=10, batch_size=16), fl.Optimizer(0.05))).net
    options = fl.FitOptions(fl.Schedule(epochs=6, batch_size=16, early_stopping_patience=2, seed=2), fl.Optimizer(0.05),
                            distillation=fl.Distillation(teacher, temperature=2.0, alpha=0.3))
    result = fl.fit(_dense(2), (x, y), (xv, yv), options)

    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.net.loss.__class__.__name__ == "SparseCategoricalCrossentropy"  # savable, evaluates on labels
    assert result.evaluate((xv, yv))["accuracy"] > 0.85


def test_keras_shuffle_with_a_passed_deadline_stops_after_one_batch():
    x, y, xv, yv = _blobs()
    options = fl.FitOptions(fl.Schedule(epochs=5, batch_size=16, shuffle="keras", deadline=time.perf_counter()))
    result = fl.fit(_dense(), (x, y), None, options)
    assert result.epochs_run == 1 and set(result.history) == {"loss", "accuracy"}


def test_balanced_class_weights_follow_sklearn_and_count_a_datasets_labels():
    labels = np.array([0, 0, 0, 1])
    assert fl.balanced_class_weights(labels, 3) == {0: pytest.approx(4 / 9), 1: pytest.approx(4 / 3), 2: 1.0}
    assert list(fl._all_labels(fl.dataset(np.zeros((4, 1)), labels, 3))) == list(labels)  # noqa: SLF001
    x, y, xv, yv = _blobs()
    keep = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:10]])  # 90 to 10: the minority counts more
    options = fl.FitOptions(fl.Schedule(epochs=3, batch_size=16), fl.Optimizer(0.05), fl.Objective(class_weights="balanced"))
    result = fl.fit(_dense(), fl.dataset(x[keep], y[keep], 16, shuffle_seed=0), fl.dataset(xv, yv, 16), options)
    assert result.epochs_run == 3 and result.evaluate(fl.dataset(xv, yv, 64))["accuracy"] > 0.8

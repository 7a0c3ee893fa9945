"""Explainers pass their faithfulness checks on small seeded models (penguins table, digits CNN)."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.errors import ParameterError
from flywheel.techniques._checks import TechniqueInputError
from flywheel.techniques.explain_image import (
    GradCam,
    LimeImage,
    deletion_insertion,
    ink_mass_share,
    random_maps,
)
from flywheel.techniques.explain_tabular import KernelShap, LimeTabular, additivity_errors, deletion_test

INK = 4.0  # digits pixels are 0..16; above a quarter of the range counts as stroke


@pytest.fixture(scope="module")
def penguins():
    """(X train, X explained, predict_fn) of a seeded logistic regression on encoded penguins."""
    from palmerpenguins import load_penguins
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = load_penguins().dropna().sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame["island"] = frame["island"].map({"Biscoe": 0, "Dream": 1, "Torgersen": 2})
    frame["sex"] = (frame["sex"] == "male").astype(float)
    columns = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"]
    X = frame[columns].to_numpy(dtype="float64")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000)).fit(X[:250], frame["species"][:250])
    return X[:250], X[250:270], model.predict_proba


@pytest.fixture(scope="module")
def digits_cnn():
    """(images to explain, Keras CNN, predict_fn) of a seeded small CNN trained 8 epochs on digits."""
    import keras
    from sklearn.datasets import load_digits

    from flywheel.models.images import build_cnn, build_image_preprocess, fit_image_spec

    digits = load_digits()
    images = digits.images[..., None].astype("float32")
    spec = fit_image_spec(images[:1400], [str(i) for i in range(10)], "label", normalize=False)
    keras.utils.set_random_seed(0)
    model = build_cnn((8, 8, 1), 10, widths=(16, 32), dense_units=(64,), dropout=0.25, preprocess=build_image_preprocess(spec))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[:1400], digits.target[:1400], epochs=8, batch_size=32, verbose=0)
    accuracy = model.evaluate(images[1400:], digits.target[1400:], verbose=0)[1]
    assert accuracy > 0.8, f"the fixture CNN did not learn digits (accuracy {accuracy:.3f})"
    return images[1400:1430], model, lambda batch: model.predict(batch, batch_size=4096, verbose=0)


def test_shap_values_plus_base_value_add_up_to_every_output(penguins):
    X_train, X, predict = penguins
    # 6 features: 2**6 - 2 = 62 coalitions, so nsamples=30 samples them (not exact enumeration)
    shap = KernelShap(background_size=15, nsamples=30, random_state=0).fit(predict, X_train)
    values = shap.explain(X)
    assert values.shape == (len(X), X.shape[1], 3)
    errors = additivity_errors(values, shap.expected_value_, predict(X))
    assert errors.max() < 1e-6
    # the check can fail: a wrong base value breaks additivity on every row
    assert additivity_errors(values, shap.expected_value_ + 0.05, predict(X)).min() > 0.04


def test_shap_top_features_move_the_prediction_more_than_random_ones(penguins):
    X_train, X, predict = penguins
    shap = KernelShap(background_size=15, nsamples=64, random_state=0).fit(predict, X_train)
    values = shap.explain(X)
    labels = predict(X).argmax(axis=1)
    attributions = values[np.arange(len(X)), :, labels]
    result = deletion_test(predict, X, attributions, X_train.mean(axis=0), k=2, random_state=0)
    assert result.top_change > 1.5 * result.random_change
    # reversed ranking (least important first) moves it less than the top
    reverse = deletion_test(predict, X, 1.0 / (np.abs(attributions) + 1e-9), X_train.mean(axis=0), k=2, random_state=0)
    assert reverse.top_change < result.top_change


def test_lime_tabular_reports_its_fit_and_passes_the_deletion_test(penguins):
    X_train, X, predict = penguins
    lime = LimeTabular(num_samples=300, random_state=0).fit(
        predict, X_train, feature_names=["bl", "bd", "fl", "bm", "island", "sex"], categorical_features=[4, 5]
    )
    weights = lime.explain(X[:12])
    assert weights.shape == (12, 6) and lime.scores_.shape == (12,)
    assert np.all(lime.scores_ <= 1.0) and lime.scores_.mean() > 0.2
    assert np.array_equal(lime.labels_, predict(X[:12]).argmax(axis=1))
    result = deletion_test(predict, X[:12], weights, X_train.mean(axis=0), k=2, random_state=0)
    assert result.top_change > result.random_change


def test_explainers_refuse_bad_input(penguins):
    X_train, X, predict = penguins
    with pytest.raises(TechniqueInputError, match="finite"):
        KernelShap().fit(predict, np.where(X_train > 100, np.nan, X_train))
    with pytest.raises(TechniqueInputError, match="probabilities"):
        KernelShap().fit(lambda x: x[:, 0], X_train)
    with pytest.raises(ParameterError, match="The 'k' parameter of deletion_test"):
        deletion_test(predict, X, X, X_train.mean(axis=0), k=0)


def test_grad_cam_puts_more_mass_on_strokes_and_beats_a_random_map(digits_cnn):
    images, model, predict = digits_cnn
    cam = GradCam().fit(model)
    maps = cam.explain(images)
    assert cam.layer_name_ == "conv_1" and maps.shape == images.shape[:3]
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    on_ink, ink_area = ink_mass_share(maps, images, threshold=INK)
    assert on_ink.mean() > ink_area.mean() + 0.05
    noise = random_maps(maps.shape, random_state=0)
    noise_on_ink, _ = ink_mass_share(noise, images, threshold=INK)
    assert abs(noise_on_ink.mean() - ink_area.mean()) < 0.05  # the measure does not favour any map
    ours = deletion_insertion(predict, images, maps, cam.labels_)
    baseline = deletion_insertion(predict, images, noise, cam.labels_)
    assert ours.deletion_auc.mean() < baseline.deletion_auc.mean()
    assert ours.insertion_auc.mean() > baseline.insertion_auc.mean()


def test_grad_cam_follows_the_requested_class_and_layer(digits_cnn):
    images, model, _ = digits_cnn
    first = GradCam(layer_name="conv_0").fit(model)
    assert first.explain(images[:3], labels=[1, 2, 3]).shape == (3, 8, 8)
    assert list(first.labels_) == [1, 2, 3]
    with pytest.raises(TechniqueInputError, match="Conv2D"):
        GradCam(layer_name="dense_0").fit(model)


def test_lime_image_fits_its_surrogate_and_beats_a_random_map(digits_cnn):
    images, _, predict = digits_cnn
    lime = LimeImage(patch_size=2, num_samples=200, random_state=0).fit(predict)
    maps = lime.explain(images[:8])
    assert maps.shape == (8, 8, 8) and lime.scores_.mean() > 0.5
    ours = deletion_insertion(predict, images[:8], maps, lime.labels_)
    baseline = deletion_insertion(predict, images[:8], random_maps(maps.shape, random_state=0), lime.labels_)
    assert ours.deletion_auc.mean() < baseline.deletion_auc.mean()
    assert ours.insertion_auc.mean() > baseline.insertion_auc.mean()


def test_lime_removal_effects_predict_the_deletion_better_than_random(penguins):
    X_train, X, predict = penguins
    lime = LimeTabular(num_samples=300, discretize_continuous=False, random_state=0).fit(
        predict, X_train, categorical_features=[4, 5]
    )
    baseline = X_train.mean(axis=0)
    baseline[4:] = [0.0, 1.0]  # most common island code and sex
    effects = lime.removal_effects(X[:12], lime.explain(X[:12]), baseline)
    assert np.all(effects[:, 4][X[:12, 4] == 0.0] == 0.0)  # a row already at the baseline category loses nothing
    result = deletion_test(predict, X[:12], effects, baseline, k=2, random_state=0)
    assert result.top_change > result.random_change
    with pytest.raises(TechniqueInputError, match="discretize_continuous=False"):
        LimeTabular(random_state=0).fit(predict, X_train).removal_effects(X[:2], np.zeros((2, 6)), baseline)


def test_grad_cam_skips_a_last_convolution_whose_map_is_1x1():
    import keras

    pixels = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="with_map")(pixels)
    x = keras.layers.MaxPooling2D(8)(x)
    x = keras.layers.Conv2D(4, 1, activation="relu", name="one_by_one")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(pixels, keras.layers.Dense(3, activation="softmax")(x))

    assert GradCam().fit(model).layer_name_ == "with_map"
    assert GradCam(layer_name="one_by_one").fit(model).layer_name_ == "one_by_one"  # asked for: honoured

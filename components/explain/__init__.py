"""explain: SHAP, LIME and Grad-CAM explanations of a trained model, each checked for faithfulness.

Writes an HTML report (``index.html``, self-contained but for its PNGs) and
``explanations.json`` into ``report.uri``; the faithfulness numbers also go
into the artifact's properties (recorded in ML Metadata).

Tabular models (a dict of raw features in): KernelSHAP and LIME tabular over
an encoded matrix (numbers as they are, missing -> the train mean;
categorical values -> their index in the model's vocabulary, "" last).

* SHAP: global importance (mean |SHAP| per feature and class), per-prediction
  bar plots, the additivity error per prediction (values + base = output),
  and the deletion test against random features.
* LIME (numbers not discretised, so the surrogate is linear in them):
  per-prediction effects of removing each feature as the surrogate predicts
  them, the surrogate's R², and the deletion test.

Image models (raw pixels in): Grad-CAM on the last convolution and LIME with
square patches. Faithfulness: the share of the map's mass on ink pixels
against the ink's area share, and deletion/insertion AUC against a random map.
"""

from __future__ import annotations

from typing import Annotated, Any

from flywheel.dsl.artifacts import HTML, Examples, Model
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components import examples_io

from . import report as report_pages
from flywheel.models import images as image_models
from flywheel.models import features


@component
def explain(
    examples: Input[Examples],
    model: Input[Model],
    report: Output[HTML],
    split: str = "eval",
    rows: Annotated[int, Interval(int, 1, None)] = 10,
    background_size: Annotated[int, Interval(int, 1, None)] = 20,
    shap_nsamples: Annotated[int, Interval(int, 2, None)] = 200,
    lime_samples: Annotated[int, Interval(int, 10, None)] = 300,
    top_k: Annotated[int, Interval(int, 1, None)] = 2,
    patch_size: Annotated[int, Interval(int, 1, None)] = 2,
    ink_threshold: float = -1.0,
    hide_value: float = 0.0,
    curve_steps: Annotated[int, Interval(int, 1, None)] = 16,
    grad_cam_layer: str = "",
    seed: int = 0,
) -> None:
    """Explains ``rows`` predictions of ``model`` on ``split`` and checks each explainer's faithfulness.

    Args:
        examples: Examples with the ``split`` split (and ``train`` for the background).
        model: Output of ``train`` (``model.keras`` and ``model.json``).
        report: Receives ``index.html``, its PNG plots and ``explanations.json``.
        split: Split whose first ``rows`` rows (or images) are explained.
        rows: Predictions explained.
        background_size: Tables: train rows of SHAP's background sample.
        shap_nsamples: Tables: coalitions per explained row (>= 2**d - 2 is exact).
        lime_samples: Perturbed neighbours per LIME explanation (tables and images).
        top_k: Tables: features replaced by the deletion test.
        patch_size: Images: side of LIME's square superpixels.
        ink_threshold: Images: pixel value above which a pixel is ink; < 0
            means a quarter of the model's ``pixel_max``.
        hide_value: Images: pixel value of "removed" pixels (the background).
        curve_steps: Images: steps of the deletion/insertion curves.
        grad_cam_layer: Images: the Conv2D layer Grad-CAM weights; "" is the last one.
        seed: Seeds sampling (background, SHAP coalitions, LIME, random baselines).

    Raises:
        ParameterError: a parameter breaks its rule.
        FlywheelError: the split is missing or the model's features are not in the data.
    """
    from flywheel.models import layers as model_layers

    spec = features.read_json(model.path(features.MODEL_JSON))
    net = model_layers.load_model(model.path(features.MODEL_FILE))
    vocabulary = list(spec["label_vocabulary"])
    if image_models.is_image_spec(spec):
        threshold = ink_threshold if ink_threshold >= 0 else 0.25 * float(spec["pixel_max"])
        results = _explain_images(examples, split, net, rows=rows, lime_samples=lime_samples, patch_size=patch_size,
                                  threshold=threshold, hide_value=hide_value, steps=curve_steps, layer=grad_cam_layer,
                                  seed=seed)
        page = report_pages.image_report(report.uri, results, vocabulary)
    else:
        results = _explain_table(examples, split, net, spec, rows=rows, background_size=background_size,
                                 shap_nsamples=shap_nsamples, lime_samples=lime_samples, top_k=top_k, seed=seed)
        page = report_pages.table_report(report.uri, results, vocabulary)
    summary = results["summary"]
    features.write_json(report.path("explanations.json"), {"summary": summary, "rows": results["rows_json"]})
    with open(report.path("index.html"), "w", encoding="utf-8") as handle:
        handle.write(page)
    report.properties.update({**summary, "split": split, "modality": "image" if "grad_cam" in summary else "table"})


class TableCodec:
    """Encodes a flywheel model's raw features as a numeric matrix and back (for SHAP and LIME).

    Numeric columns stay numbers (missing -> the train mean the model's
    spec records); a categorical column becomes the index of its value in
    the model's vocabulary, with "" (missing or unknown) as the last code.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.numeric = list(spec["numeric_features"])
        self.categorical = list(spec["categorical_features"])
        self.names = [*self.numeric, *self.categorical]
        self.categories = {name: [*spec["features"][name]["vocabulary"], ""] for name in self.categorical}

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(len(self.numeric), len(self.names)))

    def encode(self, frame: Any) -> Any:
        import numpy as np

        raw = features.raw_inputs(frame, self.spec)
        columns = []
        for name in self.numeric:
            values = raw[name].astype("float64")
            columns.append(np.where(np.isnan(values), float(self.spec["features"][name].get("mean", 0.0)), values))
        for name in self.categorical:
            index = {value: i for i, value in enumerate(self.categories[name])}
            columns.append(np.asarray([index.get(v, len(index) - 1) for v in raw[name]], dtype="float64"))
        return np.stack(columns, axis=1)

    def decode(self, matrix: Any) -> dict[str, Any]:
        import numpy as np

        matrix = np.asarray(matrix, dtype="float64")
        raw: dict[str, Any] = {}
        for i, name in enumerate(self.numeric):
            raw[name] = matrix[:, i].astype("float32")
        for j, name in enumerate(self.categorical):
            codes = np.clip(np.rint(matrix[:, len(self.numeric) + j]), 0, len(self.categories[name]) - 1).astype(int)
            raw[name] = np.asarray(self.categories[name], dtype=object)[codes]
        return raw

    def describe(self, row: Any) -> dict[str, Any]:
        """A readable {feature: value} of one encoded row."""
        values = self.decode(row[None, :])
        return {name: (str(values[name][0]) if name in self.categories else round(float(values[name][0]), 4))
                for name in self.names}

    def baseline(self, matrix: Any) -> Any:
        """The "removed" value per column: the mean of numbers, the most common category code."""
        import numpy as np

        base = matrix.mean(axis=0)
        for i in self.categorical_indices:
            codes, counts = np.unique(matrix[:, i], return_counts=True)
            base[i] = codes[counts.argmax()]
        return base


def _explain_table(examples: Examples, split: str, net: Any, spec: dict[str, Any], *, rows: int, background_size: int,
                   shap_nsamples: int, lime_samples: int, top_k: int, seed: int) -> dict[str, Any]:
    import numpy as np

    from flywheel.techniques.explain_tabular import KernelShap, LimeTabular, additivity_errors, deletion_test

    codec = TableCodec(spec)
    if top_k > len(codec.names):
        raise ParameterError(
            f"The 'top_k' parameter of explain must be at most the number of features ({len(codec.names)}). "
            f"Got {top_k!r} instead."
        )
    train = codec.encode(examples_io.read_split(examples, "train"))
    X = codec.encode(examples_io.read_split(examples, split).iloc[:rows])

    def predict(matrix: Any) -> Any:
        return np.asarray(net.predict(codec.decode(matrix), batch_size=8192, verbose=0), dtype="float64")

    outputs = predict(X)
    labels = outputs.argmax(axis=1)
    baseline = codec.baseline(train)

    shap = KernelShap(background_size=background_size, nsamples=shap_nsamples, random_state=seed).fit(predict, train)
    values = shap.explain(X)
    errors = additivity_errors(values, shap.expected_value_, outputs)
    shap_attr = values[np.arange(len(X)), :, labels]
    shap_deletion = deletion_test(predict, X, shap_attr, baseline, k=top_k, labels=labels, random_state=seed)

    lime = LimeTabular(num_samples=lime_samples, discretize_continuous=False, random_state=seed).fit(
        predict, train, feature_names=codec.names, categorical_features=codec.categorical_indices
    )
    weights = lime.removal_effects(X, lime.explain(X, labels=labels), baseline)
    lime_deletion = deletion_test(predict, X, weights, baseline, k=top_k, labels=labels, random_state=seed)

    summary = {
        "rows_explained": int(len(X)),
        "shap": {
            "max_additivity_error": float(errors.max()),
            "mean_additivity_error": float(errors.mean()),
            "additive_within_1e-4": bool(errors.max() < 1e-4),
            "deletion_top_k_change": shap_deletion.top_change,
            "deletion_random_change": shap_deletion.random_change,
            "global_importance": {name: float(v) for name, v in zip(codec.names, np.abs(values).mean(axis=(0, 2)))},
        },
        "lime": {
            "mean_r2": float(lime.scores_.mean()),
            "min_r2": float(lime.scores_.min()),
            "deletion_top_k_change": lime_deletion.top_change,
            "deletion_random_change": lime_deletion.random_change,
        },
        "top_k": top_k,
    }
    rows_json = [
        {
            "features": codec.describe(X[i]),
            "predicted": spec["label_vocabulary"][int(labels[i])],
            "probability": float(outputs[i, labels[i]]),
            "shap_base_value": float(shap.expected_value_[labels[i]]),
            "shap": {name: float(v) for name, v in zip(codec.names, shap_attr[i])},
            "shap_additivity_error": float(errors[i]),
            "lime": {name: float(v) for name, v in zip(codec.names, weights[i])},
            "lime_r2": float(lime.scores_[i]),
        }
        for i in range(len(X))
    ]
    return {"summary": summary, "rows_json": rows_json, "names": codec.names, "values": values, "labels": labels,
            "shap_attr": shap_attr, "lime_weights": weights, "lime_r2": lime.scores_, "outputs": outputs,
            "base": shap.expected_value_, "errors": errors}


def _explain_images(examples: Examples, split: str, net: Any, *, rows: int, lime_samples: int, patch_size: int,
                    threshold: float, hide_value: float, steps: int, layer: str, seed: int) -> dict[str, Any]:
    import numpy as np

    from flywheel.techniques.explain_image import GradCam, LimeImage, deletion_insertion, ink_mass_share, random_maps

    if not examples_io.is_image(examples):
        raise FlywheelError(
            f"explain got an image model but tabular Examples at {examples.uri}; explain the Examples the model was trained on."
        )
    images, _ = examples_io.read_images(examples, split)
    images = image_models.pixels(images[:rows])

    def predict(batch: Any) -> Any:
        return np.asarray(net.predict(np.asarray(batch, dtype="float32"), batch_size=4096, verbose=0), dtype="float64")

    labels = predict(images).argmax(axis=1)
    cam = GradCam(layer_name=layer or None).fit(net)
    cams = cam.explain(images, labels=labels)
    lime = LimeImage(patch_size=patch_size, num_samples=lime_samples, hide_value=float(hide_value),
                     random_state=seed).fit(predict)
    lime_maps = lime.explain(images, labels=labels)
    noise = random_maps(cams.shape, random_state=seed)
    ink_share_of_area = ink_mass_share(cams, images, threshold=threshold)[1]

    def faithfulness(maps: Any) -> dict[str, Any]:
        on_ink, _ = ink_mass_share(maps, images, threshold=threshold)
        curves = deletion_insertion(predict, images, maps, labels, steps=steps, baseline=hide_value)
        return {"mass_on_ink": float(on_ink.mean()), "deletion_auc": float(curves.deletion_auc.mean()),
                "insertion_auc": float(curves.insertion_auc.mean()), "_curves": curves}

    measured = {"grad_cam": faithfulness(cams), "lime_image": faithfulness(lime_maps), "random_map": faithfulness(noise)}
    curves = {name: result.pop("_curves") for name, result in measured.items()}
    summary = {
        "images_explained": int(len(images)),
        "ink_threshold": float(threshold),
        "ink_share_of_area": float(ink_share_of_area.mean()),
        "grad_cam": {**measured["grad_cam"], "layer": cam.layer_name_},
        "lime_image": {**measured["lime_image"], "mean_r2": float(lime.scores_.mean()), "min_r2": float(lime.scores_.min())},
        "random_map": measured["random_map"],
    }
    rows_json = [{"predicted": int(labels[i]), "lime_r2": float(lime.scores_[i])} for i in range(len(images))]
    return {"summary": summary, "rows_json": rows_json, "images": images, "labels": labels, "cams": cams,
            "lime_maps": lime_maps, "curves": curves, "lime_r2": lime.scores_}

"""One ``tune`` trial: train's network with the trial's values, scored on the validation split.

``TrainObjective`` reads the data once (``train.training_data``) and, per trial, builds the
same network ``train`` builds (``flywheel.models.families.build_classifier``: the dense model
for tables, the ``architecture`` family for images, itself tunable) and fits it through train's
fit loop (``flywheel.models.fit.fit`` with ``train.fit_options``: Adam, loss, class weights,
input pipeline and early stopping). The score comes from the ``validation`` split, or train's
stratified hold-out of the train split when there is none; the ``eval`` split is never read
(it belongs to ``evaluate``). Train's co-teaching, distillation and augmentation options are not tunable.
"""

from __future__ import annotations

from typing import Any, Mapping

from flywheel.dsl.artifacts import Examples, TransformGraph

# Parameters of train a trial can set (the rest keep train's defaults or ``fixed``).
TUNABLE = (
    "hidden_units", "dropout", "learning_rate", "batch_size", "early_stopping_patience",
    "class_weights", "loss", "focal_gamma", "conv_widths", "architecture",
)


class TrainObjective:
    """``(values, epochs) -> {"val_accuracy", "val_loss", "train_accuracy", "epochs_run"}``.

    Args:
        examples: Examples with a ``train`` split (and optionally ``validation``).
        transform_graph: Output of ``transform``.
        fixed: Train parameters every trial uses (names from ``TUNABLE``).
        seed: Seeds the split and every trial's initialisation and shuffling.
        validation_fraction: Hold-out share when there is no ``validation`` split.
    """

    def __init__(
        self, examples: Examples, transform_graph: TransformGraph, *, fixed: Mapping[str, Any], seed: int,
        validation_fraction: float,
    ) -> None:
        from flywheel.components.data import resampling
        from flywheel.models import images as image_models
        from flywheel.models import features
        from flywheel.components import train as train_module

        self._train = train_module
        self.transform_graph = transform_graph
        self.fixed = dict(fixed)
        self.seed = seed
        self.spec = features.read_json(transform_graph.path(features.TRANSFORM_JSON))
        self.image = image_models.is_image_spec(self.spec)
        source = resampling.resampled_examples(transform_graph) or examples
        self.data = train_module.training_data(source, self.spec, validation_fraction, seed)

    def parameters(self, values: Mapping[str, Any], epochs: int) -> dict[str, Any]:
        """Train's defaults, then ``fixed``, then the trial's values (checked by train's rules)."""
        params = {name: spec.default for name, spec in self._train.train.parameters.items()}
        params.update(self.fixed)
        params.update(values)
        params["epochs"] = int(epochs)
        self._train.train.check_parameters(params)  # the rules train declares in its signature
        return params

    def __call__(self, values: dict[str, Any], epochs: int) -> dict[str, float]:
        from flywheel.models import families as model_families
        from flywheel.models import features
        from flywheel.models import fit as fit_loop
        from flywheel.models import layers as model_layers

        p = {**self.parameters(values, epochs), "seed": self.seed, "coteaching": False, "mixup_alpha": 0.0,
             "randaugment_n": 0}  # train's co-teaching, distillation and augmentation options are not tunable
        x_train, y_train, x_val, y_val = self.data
        preprocess = model_layers.load_model(self.transform_graph.path(features.PREPROCESS_FILE))

        def build() -> Any:
            return model_families.build_classifier(
                self.spec, preprocess, architecture=p["architecture"], hidden_units=p["hidden_units"],
                conv_widths=p["conv_widths"], dropout=p["dropout"],
            )

        fitted = fit_loop.fit(build, (x_train, y_train), (x_val, y_val), self._train.fit_options(p, self.spec))
        val = fitted.evaluate((x_val, y_val))
        return {
            "val_accuracy": float(val["accuracy"]),
            "val_loss": float(val["loss"]),
            "train_accuracy": float(fitted.history["accuracy"][-1]),
            "epochs_run": float(len(fitted.history["loss"])),
        }

"""The image training pipeline: ingest -> transform -> train -> evaluate -> push, on digits.

Defaults read scikit-learn's bundled 8x8 digits directly
(``data_path="sklearn-digits"``); a class-folder tree or an ``.npz`` written
by ``flywheel.datasets.export_digits`` (or any images of that layout) works too:

    flywheel run pipelines/digits.py
    python -c "from flywheel.datasets import export_digits; export_digits('/tmp/digits')"
    flywheel run pipelines/digits.py -p data_path=/tmp/digits
    flywheel run pipelines/digits.py -p mixup_alpha=0.2 -p randaugment_n=1
    flywheel run pipelines/digits.py -p coteaching=true -p forget_rate=0.2
    flywheel run pipelines/digits.py -p architecture=resnet   # or mlp, cnn, efficientnet_b0, vit

There is no ``validate`` step: TFDV statistics and schemas describe table
columns, not pixel arrays, so image Examples skip it (the label frame alone
holds one column; its class set is checked by ``transform``/``evaluate``,
which refuse labels outside the train vocabulary).
"""

from flywheel import pipeline
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.pipelines import evaluate_and_push


@pipeline(name="digits")
def digits(
    data_path: str = "sklearn-digits",
    eval_ratio: float = 0.2,
    image_size: list = [],  # noqa: B006 - pipeline defaults are recorded, never mutated
    normalize: bool = False,
    resample: str = "none",
    architecture: str = "auto",
    conv_widths: list = [16, 32],  # noqa: B006
    hidden_units: list = [64],  # noqa: B006
    dropout: float = 0.25,
    learning_rate: float = 0.003,
    epochs: int = 30,
    batch_size: int = 32,
    class_weights: str = "none",
    loss: str = "crossentropy",
    mixup_alpha: float = 0.0,
    randaugment_n: int = 0,
    randaugment_m: float = 5.0,
    coteaching: bool = False,
    forget_rate: float = 0.2,
    num_gradual: int = 10,
    seed: int = 0,
    thresholds: dict = {"accuracy": 0.9},  # noqa: B006
    max_regression: float = 0.02,
    registry: str = "",
    model_name: str = "digits",
) -> None:
    """Trains, evaluates and (if blessed) pushes an image classifier (a small CNN by default).

    ``architecture`` picks the model family (``train``'s parameter).

    ``registry`` "" means ``<flywheel home>/registry``.
    """
    rows = ingest(path=data_path, eval_ratio=eval_ratio, image_size=image_size)
    features = transform(examples=rows.outputs["examples"], normalize=normalize, resample=resample, seed=seed)
    trained = train(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        architecture=architecture,
        conv_widths=conv_widths,
        hidden_units=hidden_units,
        dropout=dropout,
        learning_rate=learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        class_weights=class_weights,
        loss=loss,
        mixup_alpha=mixup_alpha,
        randaugment_n=randaugment_n,
        randaugment_m=randaugment_m,
        coteaching=coteaching,
        forget_rate=forget_rate,
        num_gradual=num_gradual,
        seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], trained.outputs["model"], registry=registry, model_name=model_name,
        slice_features=[], thresholds=thresholds, max_regression=max_regression,
    )

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
    seed: int = 0,
    registry: str = "",
    model_name: str = "digits",
) -> None:
    """Trains, evaluates and (if blessed) pushes an image classifier (a small CNN by default).

    ``seed`` goes to transform (its validation split) and train. ``registry`` ""
    means ``<flywheel home>/registry``. The training values below suit 8x8
    digits; each is train's parameter and is overridden with ``-p`` (``-p
    epochs=5``, ``-p train.architecture=resnet``).
    """
    rows = ingest(path=data_path)
    features = transform(examples=rows.outputs["examples"], seed=seed)
    trained = train(
        examples=rows.outputs["examples"],
        transform_graph=features.outputs["transform_graph"],
        hidden_units=[64],
        dropout=0.25,
        learning_rate=0.003,
        epochs=30,
        seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], trained.outputs["model"], registry=registry, model_name=model_name,
        thresholds={"accuracy": 0.9},
    )

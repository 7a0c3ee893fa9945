"""Model optimisation on digits: the Deep Compression pipeline.

``compression``: ingest -> transform -> train (the original) -> compress
(prune -> share -> Huffman, optionally int8) -> evaluate (the compressed model,
absolute thresholds and regression vs the serving model) -> gate_compression
(at most ``max_accuracy_drop`` of accuracy lost against the original) -> push.

Knowledge distillation is ``pipelines/distillation.py`` (one pipeline per
file, so every file here loads and compiles without a ``--pipeline`` name).

    flywheel run pipelines/compression.py
    flywheel run pipelines/compression.py -p quantize_int8=true -p max_accuracy_drop=0.02
"""

from flywheel import pipeline
from flywheel.components.compress import compress, gate_compression
from flywheel.components.evaluate import evaluate
from flywheel.components.ingest import ingest
from flywheel.components.push import push
from flywheel.components.train import train
from flywheel.components.transform import transform


@pipeline(name="compression")
def compression(
    data_path: str = "sklearn-digits",
    eval_ratio: float = 0.2,
    conv_widths: list = [32, 64],  # noqa: B006 - pipeline defaults are recorded, never mutated
    hidden_units: list = [128],  # noqa: B006
    dropout: float = 0.25,
    learning_rate: float = 0.003,
    epochs: int = 30,
    sparsity: float = 0.95,
    pruning_scope: str = "global",
    pruning_steps: int = 5,
    bits: int = 4,
    fine_tune_epochs: int = 12,
    compress_learning_rate: float = 0.001,
    quantize_int8: bool = False,
    max_accuracy_drop: float = 0.01,
    seed: int = 0,
    thresholds: dict = {"accuracy": 0.9},  # noqa: B006
    max_regression: float = 0.02,
    registry: str = "",
    model_name: str = "digits-compressed",
) -> None:
    """Trains a CNN, compresses it, and pushes the compressed model if it keeps its accuracy.

    Defaults are the measured configuration of ``benchmarks/RESULTS.md`` that
    reaches >= 30x at <= 1 point (a wider CNN than the digits pipeline's: the
    13.7k-parameter default compresses only ~13x, see docs/techniques.md).

    ``registry`` "" means ``<flywheel home>/registry``.
    """
    rows = ingest(path=data_path, eval_ratio=eval_ratio)
    features = transform(examples=rows.outputs["examples"], seed=seed)
    trained = train(
        examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
        conv_widths=conv_widths, hidden_units=hidden_units, dropout=dropout, learning_rate=learning_rate,
        epochs=epochs, seed=seed,
    )
    small = compress(
        model=trained.outputs["model"], examples=rows.outputs["examples"], sparsity=sparsity,
        pruning_scope=pruning_scope, pruning_steps=pruning_steps, bits=bits, fine_tune_epochs=fine_tune_epochs,
        learning_rate=compress_learning_rate, quantize_int8=quantize_int8, seed=seed,
    )
    evaluated = evaluate(
        examples=rows.outputs["examples"], model=small.outputs["compressed"], slice_features=[],
        thresholds=thresholds, registry=registry, model_name=model_name, max_regression=max_regression,
    )
    gated = gate_compression(
        blessing=evaluated.outputs["blessing"], compressed=small.outputs["compressed"],
        max_accuracy_drop=max_accuracy_drop,
    )
    push(model=small.outputs["compressed"], blessing=gated.outputs["gated"], registry=registry, model_name=model_name)

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
    seed: int = 0,
    registry: str = "",
    model_name: str = "digits-compressed",
) -> None:
    """Trains a CNN, compresses it, and pushes the compressed model if it keeps its accuracy.

    The values below are the measured configuration of ``benchmarks/RESULTS.md``
    that reaches >= 30x at <= 1 point (a wider CNN than the digits pipeline's:
    the 13.7k-parameter default compresses only ~13x, see docs/techniques.md);
    each is its task's parameter (``-p compress.sparsity=0.9``,
    ``-p train.epochs=10``). ``seed`` goes to transform, train and compress.

    ``registry`` "" means ``<flywheel home>/registry``.
    """
    rows = ingest(path=data_path)
    features = transform(examples=rows.outputs["examples"], seed=seed)
    trained = train(
        examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
        conv_widths=[32, 64], hidden_units=[128], dropout=0.25, learning_rate=0.003, epochs=30, seed=seed,
    )
    small = compress(
        model=trained.outputs["model"], examples=rows.outputs["examples"], sparsity=0.95, pruning_steps=5,
        fine_tune_epochs=12, seed=seed,
    )
    evaluated = evaluate(
        examples=rows.outputs["examples"], model=small.outputs["compressed"],
        thresholds={"accuracy": 0.9}, registry=registry, model_name=model_name,
    )
    gated = gate_compression(blessing=evaluated.outputs["blessing"], compressed=small.outputs["compressed"])
    push(model=small.outputs["compressed"], blessing=gated.outputs["gated"], registry=registry, model_name=model_name)

"""Model optimisation pipelines on digits: Deep Compression, and knowledge distillation.

``compression``: ingest -> transform -> train (the original) -> compress
(prune -> share -> Huffman, optionally int8) -> evaluate (the compressed model,
absolute thresholds and regression vs the serving model) -> gate_compression
(at most ``max_accuracy_drop`` of accuracy lost against the original) -> push.

``distillation``: ingest -> transform -> train (the teacher) -> train (a small
student on the teacher's softened outputs plus the hard labels) -> evaluate
-> push.

    flywheel run pipelines/compression.py --pipeline compression
    flywheel run pipelines/compression.py --pipeline compression -p quantize_int8=true
    flywheel run pipelines/compression.py --pipeline distillation -p distill_temperature=4
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
    conv_widths: list = [16, 32],  # noqa: B006 - pipeline defaults are recorded, never mutated
    hidden_units: list = [64],  # noqa: B006
    dropout: float = 0.25,
    learning_rate: float = 0.003,
    epochs: int = 30,
    sparsity: float = 0.9,
    pruning_scope: str = "global",
    pruning_steps: int = 3,
    bits: int = 4,
    fine_tune_epochs: int = 8,
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


@pipeline(name="distillation")
def distillation(
    data_path: str = "sklearn-digits",
    eval_ratio: float = 0.2,
    teacher_conv_widths: list = [32, 64],  # noqa: B006
    teacher_hidden_units: list = [128],  # noqa: B006
    student_conv_widths: list = [8, 16],  # noqa: B006
    student_hidden_units: list = [32],  # noqa: B006
    dropout: float = 0.25,
    learning_rate: float = 0.003,
    epochs: int = 30,
    distill_temperature: float = 4.0,
    distill_alpha: float = 0.1,
    seed: int = 0,
    thresholds: dict = {"accuracy": 0.9},  # noqa: B006
    max_regression: float = 0.02,
    registry: str = "",
    model_name: str = "digits-student",
) -> None:
    """Trains a teacher CNN, distils it into a small student, and pushes the student if blessed."""
    rows = ingest(path=data_path, eval_ratio=eval_ratio)
    features = transform(examples=rows.outputs["examples"], seed=seed)
    teacher = train(
        examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
        conv_widths=teacher_conv_widths, hidden_units=teacher_hidden_units, dropout=dropout,
        learning_rate=learning_rate, epochs=epochs, seed=seed,
    )
    student = train(
        examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
        teacher=teacher.outputs["model"], conv_widths=student_conv_widths, hidden_units=student_hidden_units,
        dropout=dropout, learning_rate=learning_rate, epochs=epochs, distill_temperature=distill_temperature,
        distill_alpha=distill_alpha, seed=seed,
    )
    evaluated = evaluate(
        examples=rows.outputs["examples"], model=student.outputs["model"], slice_features=[],
        thresholds=thresholds, registry=registry, model_name=model_name, max_regression=max_regression,
    )
    push(model=student.outputs["model"], blessing=evaluated.outputs["blessing"], registry=registry, model_name=model_name)

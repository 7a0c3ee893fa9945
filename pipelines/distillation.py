"""Knowledge distillation on digits: ingest -> transform -> train (teacher) -> train (student) -> evaluate -> push.

The student (``student_*`` sizes, about a fifteenth of the teacher's
parameters by default) trains on the teacher's temperature-softened outputs
plus the hard labels (Hinton et al.; ``train``'s ``teacher`` input):

    flywheel run pipelines/distillation.py
    flywheel run pipelines/distillation.py -p distill_temperature=2 -p distill_alpha=0.5
"""

from flywheel import pipeline
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.pipelines import evaluate_and_push


@pipeline(name="distillation")
def distillation(
    data_path: str = "sklearn-digits",
    eval_ratio: float = 0.2,
    teacher_conv_widths: list = [32, 64],  # noqa: B006 - pipeline defaults are recorded, never mutated
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
    evaluate_and_push(
        rows.outputs["examples"], student.outputs["model"], registry=registry, model_name=model_name,
        slice_features=[], thresholds=thresholds, max_regression=max_regression,
    )

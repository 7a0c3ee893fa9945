"""Knowledge distillation on digits: ingest -> transform -> train (teacher) -> train (student) -> evaluate -> push.

The student (``student_*`` sizes, about a fifteenth of the teacher's
parameters by default) trains on the teacher's temperature-softened outputs
plus the hard labels (Hinton et al.; ``train``'s ``teacher`` input):

    flywheel run pipelines/distillation.py
    flywheel run pipelines/distillation.py -p train-2.distill_temperature=2 -p train-2.distill_alpha=0.5
"""

from flywheel import pipeline
from flywheel.components.ingest import ingest
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.pipelines import evaluate_and_push


@pipeline(name="distillation")
def distillation(
    data_path: str = "sklearn-digits",
    epochs: int = 30,
    seed: int = 0,
    registry: str = "",
    model_name: str = "digits-student",
) -> None:
    """Trains a teacher CNN, distils it into a small student, and pushes the student if blessed.

    ``epochs`` and ``seed`` go to both: the teacher (task ``train``) and the
    student (task ``train-2``); set one of them with ``-p train.epochs=...`` or
    ``-p train-2.epochs=...``. Their widths and the distillation values are
    the tasks' own parameters (``-p train-2.conv_widths=[4,8]``,
    ``-p train-2.distill_alpha=0.3``).
    """
    rows = ingest(path=data_path)
    features = transform(examples=rows.outputs["examples"], seed=seed)
    teacher = train(
        examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
        conv_widths=[32, 64], hidden_units=[128], dropout=0.25, learning_rate=0.003, epochs=epochs, seed=seed,
    )
    student = train(
        examples=rows.outputs["examples"], transform_graph=features.outputs["transform_graph"],
        teacher=teacher.outputs["model"], conv_widths=[8, 16], hidden_units=[32],
        dropout=0.25, learning_rate=0.003, epochs=epochs, seed=seed,
    )
    evaluate_and_push(
        rows.outputs["examples"], student.outputs["model"], registry=registry, model_name=model_name,
        thresholds={"accuracy": 0.9},
    )

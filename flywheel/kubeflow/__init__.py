"""Kubeflow Pipelines v2: compile flywheel pipelines to IR YAML, submit and schedule runs.

* ``compiler.compile_pipeline`` writes KFP v2 IR with the kfp SDK's compiler;
  every task runs ``python -m flywheel.kubeflow.entrypoint`` (``flywheel/kubeflow/entrypoint.py``)
  in the flywheel image.
* ``client`` submits runs, lists them and manages recurring runs through
  ``kfp.Client``.

kfp itself is imported only inside the functions that need it.
"""

from flywheel.kubeflow.compiler import DEFAULT_IMAGE, compile_pipeline
from flywheel.kubeflow.errors import (
    CronExpressionError,
    KubeflowCompileError,
    KubeflowConnectionError,
    KubeflowError,
    ScheduleError,
)

__all__ = [
    "DEFAULT_IMAGE",
    "CronExpressionError",
    "KubeflowCompileError",
    "KubeflowConnectionError",
    "KubeflowError",
    "ScheduleError",
    "compile_pipeline",
]

"""The pure pipeline model: artifact types, components, pipelines.

Knows nothing of ML Metadata, Kubeflow or the CLI.
"""

from flywheel.dsl.artifacts import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    DriftReport,
    ExampleAnomalies,
    Examples,
    ExampleStatistics,
    Markdown,
    Metrics,
    Model,
    ModelBlessing,
    ModelEvaluation,
    PushedModel,
    Schema,
    TransformGraph,
)
from flywheel.dsl.component import Component, FinalStatus, Input, Output, component
from flywheel.dsl.control import Elif, Else, ExitHandler, If
from flywheel.dsl.loops import Collected, ParallelFor
from flywheel.dsl.resources import Placement, Resources, SecretEnv, Toleration
from flywheel.dsl.pipeline import LatestRef, OutputRef, Pipeline, PipelineParam, Task, latest, pipeline

__all__ = [
    "HTML", "Artifact", "ClassificationMetrics", "Component", "Dataset", "DriftReport",
    "ExampleAnomalies", "ExampleStatistics", "Examples", "Input", "Markdown", "Metrics",
    "Model", "ModelBlessing", "ModelEvaluation", "Output", "OutputRef", "Pipeline",
    "PipelineParam", "PushedModel", "Schema", "Task", "TransformGraph", "component", "pipeline",
    "LatestRef", "latest", "ExitHandler", "If", "Elif", "Else", "ParallelFor", "Collected", "FinalStatus", "Placement", "Resources", "SecretEnv", "Toleration",
]

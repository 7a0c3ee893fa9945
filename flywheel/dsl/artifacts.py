"""Artifact types.

An artifact is a directory (``uri``) plus typed properties. Each type has a
stable ML Metadata type name (TFX's names, so lineage reads like TFX's) and a
Kubeflow Pipelines schema title (``system.*``, so the Kubeflow UI renders what
flywheel emits).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

PropertyValue = int | float | str | bool | list | dict | None


class Artifact:
    """A typed output of a component: a directory plus properties.

    Attributes:
        uri: Directory that holds the artifact's files. While a component runs
            this is a private staging directory; after the node succeeds the
            runner moves it to its published location.
        properties: JSON-compatible values recorded in ML Metadata with the
            artifact (row counts, metrics, fingerprints, ...).
        id: ML Metadata artifact id once recorded, else None.
    """

    TYPE_NAME: ClassVar[str] = "Artifact"
    SCHEMA_TITLE: ClassVar[str] = "system.Artifact"

    def __init__(
        self,
        uri: str = "",
        properties: dict[str, PropertyValue] | None = None,
        id: int | None = None,  # noqa: A002 - mirrors MLMD's field name
        name: str = "",
    ) -> None:
        self.uri = uri
        self.properties: dict[str, PropertyValue] = dict(properties or {})
        self.id = id
        self.name = name

    def path(self, *parts: str) -> str:
        """Returns a path inside the artifact directory."""
        return os.path.join(self.uri, *parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.TYPE_NAME,
            "uri": self.uri,
            "properties": self.properties,
            "id": self.id,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        artifact_cls = artifact_class(data.get("type", cls.TYPE_NAME))
        return artifact_cls(
            uri=data.get("uri", ""),
            properties=data.get("properties") or {},
            id=data.get("id"),
            name=data.get("name", ""),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self.uri!r}, id={self.id!r})"


class Examples(Artifact):
    """Rows split into train/eval (Parquet per split)."""

    TYPE_NAME = "Examples"
    SCHEMA_TITLE = "system.Dataset"


class ExampleStatistics(Artifact):
    """Per-split feature statistics (TFDV DatasetFeatureStatisticsList)."""

    TYPE_NAME = "ExampleStatistics"


class Schema(Artifact):
    """A TFDV schema (tensorflow_metadata Schema proto as text)."""

    TYPE_NAME = "Schema"


class ExampleAnomalies(Artifact):
    """Anomalies of examples against a schema, plus skew and drift."""

    TYPE_NAME = "ExampleAnomalies"


class TransformGraph(Artifact):
    """Fitted preprocessing (Keras preprocessing layers)."""

    TYPE_NAME = "TransformGraph"


class Model(Artifact):
    """A trained model (Keras format plus an exported SavedModel)."""

    TYPE_NAME = "Model"
    SCHEMA_TITLE = "system.Model"


class ModelEvaluation(Artifact):
    """Evaluation metrics, overall and per slice."""

    TYPE_NAME = "ModelEvaluation"
    SCHEMA_TITLE = "system.Metrics"


class ModelBlessing(Artifact):
    """Whether a model passed its evaluation thresholds, and why."""

    TYPE_NAME = "ModelBlessing"


class InfraBlessing(Artifact):
    """Whether the serving code path loaded a model and answered requests correctly, and why."""

    TYPE_NAME = "InfraBlessing"


class InferenceResult(Artifact):
    """Predictions of a model over a dataset (Parquet shards), with the model that made them."""

    TYPE_NAME = "InferenceResult"
    SCHEMA_TITLE = "system.Dataset"


class PushedModel(Artifact):
    """A model version pushed to the registry."""

    TYPE_NAME = "PushedModel"
    SCHEMA_TITLE = "system.Model"


class DriftReport(Artifact):
    """Drift of live or new data against training statistics."""

    TYPE_NAME = "DriftReport"


class HyperParameters(Artifact):
    """Tuned hyperparameters: the best values (``best_hyperparameters.json``, train
    parameter name -> value) plus every trial of the search (``trials.json``)."""

    TYPE_NAME = "HyperParameters"


class Metrics(Artifact):
    """Scalar metrics (KFP's system.Metrics)."""

    TYPE_NAME = "Metrics"
    SCHEMA_TITLE = "system.Metrics"


class ClassificationMetrics(Artifact):
    """Confusion matrix and curves (KFP's system.ClassificationMetrics)."""

    TYPE_NAME = "ClassificationMetrics"
    SCHEMA_TITLE = "system.ClassificationMetrics"


class HTML(Artifact):
    """An HTML report that dashboards render inline."""

    TYPE_NAME = "HTML"
    SCHEMA_TITLE = "system.HTML"


class Markdown(Artifact):
    """A Markdown report that dashboards render inline."""

    TYPE_NAME = "Markdown"
    SCHEMA_TITLE = "system.Markdown"


class Dataset(Artifact):
    """A generic dataset (KFP's system.Dataset)."""

    TYPE_NAME = "Dataset"
    SCHEMA_TITLE = "system.Dataset"


BUILTIN_ARTIFACT_TYPES: tuple[type[Artifact], ...] = (
    Artifact,
    Examples,
    ExampleStatistics,
    Schema,
    ExampleAnomalies,
    TransformGraph,
    Model,
    ModelEvaluation,
    ModelBlessing,
    PushedModel,
    DriftReport,
    HyperParameters,
    Metrics,
    ClassificationMetrics,
    HTML,
    Markdown,
    Dataset,
)


def artifact_class(type_name: str) -> type[Artifact]:
    """Returns the artifact class with the given ML Metadata type name.

    User-defined subclasses are found too, as long as their module is imported.
    Unknown names map to the generic ``Artifact`` so old records stay readable.
    """
    stack: list[type[Artifact]] = [Artifact]
    while stack:
        cls = stack.pop()
        if cls.TYPE_NAME == type_name:
            return cls
        stack.extend(cls.__subclasses__())
    return Artifact

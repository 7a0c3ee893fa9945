"""The error classes of flywheel.

One base class; definition errors (raised while a component or a pipeline is
declared), run-time errors of the platform, and errors raised by user code are
different classes, so callers and the CLI can tell them apart. User code is
wrapped at exactly one boundary (the node worker) and chained ``from exc``.
"""

from __future__ import annotations


class FlywheelError(Exception):
    """Base class of every error flywheel raises on purpose."""


class DefinitionError(FlywheelError):
    """A component or pipeline is declared wrongly (caught when it is built)."""


class ComponentDefinitionError(DefinitionError):
    """A component function cannot be turned into a component."""


class PipelineDefinitionError(DefinitionError):
    """Components are wired together wrongly."""


class ParameterError(FlywheelError):
    """A run-time parameter value is missing, unknown or of the wrong type."""


class PipelineFileError(FlywheelError):
    """A pipeline file cannot be found or loaded, or holds no pipeline."""


class MetadataError(FlywheelError):
    """The ML Metadata store cannot be opened or does not hold what was asked."""


class RunNotFoundError(MetadataError):
    """No run has the given id."""


class ScheduleError(FlywheelError):
    """A recurring run cannot be created, found or changed (local or on Kubeflow)."""


class RunError(FlywheelError):
    """A pipeline run did not complete."""


class UserCodeError(FlywheelError):
    """A component's own code raised; the original error is chained."""


class DataSanityError(FlywheelError):
    """Data can be read but cannot train or judge a sound model.

    One label class, a class too rare in a split, or a label vocabulary that
    differs from the model it is compared with.
    """

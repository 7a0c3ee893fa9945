"""Errors of the Kubeflow Pipelines integration (compile, submit, schedule)."""

from __future__ import annotations

from flywheel import errors
from flywheel.errors import DefinitionError, FlywheelError, ParameterError


class KubeflowError(FlywheelError):
    """Base class of the errors the Kubeflow integration raises on purpose."""


class KubeflowCompileError(KubeflowError, DefinitionError):
    """A pipeline cannot be expressed as a Kubeflow Pipelines v2 pipeline."""


class KubeflowConnectionError(KubeflowError):
    """The Kubeflow Pipelines API cannot be reached or refused a request."""


class CronExpressionError(KubeflowError, ParameterError):
    """A cron expression is not one Kubeflow Pipelines accepts."""


class ScheduleError(KubeflowError, errors.ScheduleError):
    """A schedule cannot be created, found or changed."""

"""What a task asks of a Kubernetes cluster: resources, placement, secrets as env.

Declared on a component as its defaults and overridable per task::

    @component(resources=Resources(cpu="1", memory="4Gi", memory_limit="8Gi"))
    def train(...): ...

    train(...).set_resources(accelerator="nvidia.com/gpu", accelerator_count=1)
    train(...).set_placement(node_selector={"pool": "gpu"},
                             tolerations=[Toleration("nvidia.com/gpu", effect="NoSchedule")])
    notify(...).set_secret_env("WEBHOOK_URL", secret="alerts", key="url")

    @component(image="serving")          # the image role the task's container runs
    def infra_validate(...): ...

The Kubeflow compiler turns them into kfp's own task settings (``set_cpu_limit``,
``set_accelerator_type``, ...) and kfp-kubernetes calls (node selector,
tolerations, ``use_secret_as_env``). The local runner runs every task on this
machine: it records what was asked in the execution's details and applies none
of it; a secret's variable is whatever the runner's own environment holds.
Values are checked when declared, so a typo fails at definition time.

An image role (``IMAGE_ROLES``) names which of flywheel's images a task's
container runs on Kubeflow: ``component`` (every task by default) or
``serving`` (the lean ``flywheel serve`` image). The compiler maps each role to
an image reference (``flywheel compile --image / --serving-image``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

from flywheel.errors import ComponentDefinitionError

# Kubernetes quantities: "500m", "2", "0.5", "1Gi", "512M", "1e3".
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_LABEL = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# The images a task can run in on Kubeflow (flywheel.images.IMAGES has the same keys).
IMAGE_ROLES = ("component", "serving")


def check_image_role(role: object) -> str:
    """``role`` if it is one of IMAGE_ROLES.

    Raises:
        ComponentDefinitionError: any other value (an image reference included).
    """
    if not isinstance(role, str) or role not in IMAGE_ROLES:
        raise ComponentDefinitionError(
            f"The 'image' option names an image role, one of {', '.join(map(repr, IMAGE_ROLES))}; got {role!r}. "
            "The reference each role runs is chosen at compile time (flywheel compile --image / --serving-image)."
        )
    return role


def _check_quantity(field: str, value: str | None, example: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise ComponentDefinitionError(
            f"Resource '{field}' must be a Kubernetes quantity string such as {example}; "
            f"got {value!r}. Write it as a string, e.g. {field}={example!r}."
        )


@dataclasses.dataclass(frozen=True)
class Resources:
    """CPU and memory requests and limits, and an accelerator, of one task.

    Attributes:
        cpu / memory: Requests ("500m", "2"; "512Mi", "4Gi"): what the scheduler reserves.
        cpu_limit / memory_limit: Limits: above them the pod is throttled / OOM-killed.
        accelerator: Accelerator resource type, e.g. ``"nvidia.com/gpu"``.
        accelerator_count: How many of it (needs ``accelerator``).
    """

    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None
    accelerator: str | None = None
    accelerator_count: int | None = None

    def __post_init__(self) -> None:
        _check_quantity("cpu", self.cpu, "500m")
        _check_quantity("cpu_limit", self.cpu_limit, "2")
        _check_quantity("memory", self.memory, "2Gi")
        _check_quantity("memory_limit", self.memory_limit, "4Gi")
        if self.accelerator_count is not None:
            if isinstance(self.accelerator_count, bool) or not isinstance(self.accelerator_count, int) or self.accelerator_count < 1:
                raise ComponentDefinitionError(
                    f"Resource 'accelerator_count' must be an int >= 1; got {self.accelerator_count!r}."
                )
            if not self.accelerator:
                raise ComponentDefinitionError(
                    f"Resource 'accelerator_count'={self.accelerator_count} needs an accelerator type; "
                    "pass accelerator='nvidia.com/gpu' (or your cluster's resource name) as well."
                )
        if self.accelerator is not None and (not isinstance(self.accelerator, str) or not _LABEL.match(self.accelerator)):
            raise ComponentDefinitionError(
                f"Resource 'accelerator' must be a Kubernetes resource name such as 'nvidia.com/gpu'; "
                f"got {self.accelerator!r}."
            )

    @classmethod
    def coerce(cls, value: Resources | Mapping[str, Any] | None) -> Resources:
        """``value`` as Resources: an instance, a mapping of its fields, or None (nothing asked)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - fields)
            if unknown:
                raise ComponentDefinitionError(
                    f"resources has no field {', '.join(map(repr, unknown))}; its fields are {', '.join(sorted(fields))}."
                )
            return cls(**value)
        raise ComponentDefinitionError(
            f"resources takes flywheel.Resources(...) or a dict of its fields, e.g. "
            f"{{'cpu': '1', 'memory': '4Gi'}}; got {value!r}."
        )

    def merged(self, **changes: Any) -> Resources:
        """A copy with the given fields replaced (None keeps the current value)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def declared(self) -> dict[str, Any]:
        """The fields that are set, by name."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration: lets the pod run on nodes with a matching taint."""

    key: str | None = None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.operator not in ("Equal", "Exists"):
            raise ComponentDefinitionError(
                f"A toleration's operator must be 'Equal' or 'Exists'; got {self.operator!r}."
            )
        if self.operator == "Exists" and self.value is not None:
            raise ComponentDefinitionError(
                f"A toleration with operator 'Exists' matches any value; drop value={self.value!r} "
                "or use operator='Equal'."
            )
        if self.effect is not None and self.effect not in _EFFECTS:
            raise ComponentDefinitionError(
                f"A toleration's effect must be one of {', '.join(_EFFECTS)} (or None for all); got {self.effect!r}."
            )
        if self.key is None and self.operator != "Exists":
            raise ComponentDefinitionError(
                "A toleration without a key matches every taint and needs operator='Exists'."
            )


@dataclasses.dataclass(frozen=True)
class SecretEnv:
    """An environment variable read from a key of a Kubernetes Secret."""

    env: str
    secret: str
    key: str

    def __post_init__(self) -> None:
        if not isinstance(self.env, str) or not _ENV_NAME.match(self.env):
            raise ComponentDefinitionError(
                f"A secret's environment variable name must be letters, digits and _ (not starting "
                f"with a digit); got {self.env!r}."
            )
        for field in ("secret", "key"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise ComponentDefinitionError(
                    f"Secret variable '{self.env}' needs a non-empty {field}; got {getattr(self, field)!r}."
                )


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a task's pod may run: a node selector and tolerations, plus secrets as env.

    Attributes:
        node_selector: Label -> value pairs a node must carry, as sorted pairs.
        tolerations: Taints the pod tolerates.
        secret_env: Environment variables read from Secrets.
    """

    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    secret_env: tuple[SecretEnv, ...] = ()

    @classmethod
    def of(
        cls,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Iterable[Toleration] = (),
        secret_env: Iterable[SecretEnv] = (),
    ) -> Placement:
        """Builds a placement from a plain mapping and lists, checking each entry."""
        selector = dict(node_selector or {})
        for label, value in selector.items():
            if not isinstance(label, str) or not _LABEL.match(label) or not isinstance(value, str):
                raise ComponentDefinitionError(
                    f"A node selector maps label names to string values, e.g. "
                    f"{{'cloud.google.com/gke-nodepool': 'gpu-pool'}}; got {label!r}: {value!r}."
                )
        tolerations = tuple(tolerations)
        for toleration in tolerations:
            if not isinstance(toleration, Toleration):
                raise ComponentDefinitionError(
                    f"tolerations takes flywheel.Toleration objects; got {toleration!r}. "
                    "Write Toleration(key='nvidia.com/gpu', operator='Exists', effect='NoSchedule')."
                )
        return cls(tuple(sorted(selector.items())), tolerations, tuple(secret_env))

    def with_secret(self, entry: SecretEnv) -> Placement:
        """A copy in which ``entry.env`` comes from ``entry`` (replacing an earlier one)."""
        kept = tuple(s for s in self.secret_env if s.env != entry.env)
        return dataclasses.replace(self, secret_env=kept + (entry,))

    def declared(self) -> dict[str, Any]:
        """What is set, as JSON-able values."""
        found: dict[str, Any] = {}
        if self.node_selector:
            found["node_selector"] = dict(self.node_selector)
        if self.tolerations:
            found["tolerations"] = [
                {k: v for k, v in dataclasses.asdict(t).items() if v is not None} for t in self.tolerations
            ]
        if self.secret_env:
            found["secret_env"] = {s.env: f"{s.secret}/{s.key}" for s in self.secret_env}
        return found

"""What the compiler puts in a task pod's environment besides the component's own settings.

* **Object store** (``ObjectStoreEnv``): every task gets ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` from a Kubernetes Secret (kfp-kubernetes ``use_secret_as_env``: the IR
  names the Secret and its keys, never a value) and ``FLYWHEEL_S3_ENDPOINT_URL``, so steps read and
  write ``s3://`` / ``minio://`` data, registries and logs through ``flywheel.storage``.
* **Run id**: a task whose component writes the registry (a ``PushedModel`` output: push) gets
  KFP's run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``) in the extra input parameter
  ``flywheel.kubeflow.entrypoint.RUN_ID_PARAMETER``; the executor exports it as ``KFP_RUN_ID``, and push
  records ``{"kind": "kfp", "run_id": ...}`` as the version's lineage. The id differs every run, so
  KFP never serves such a task from its cache (push is idempotent: the same model gives the same version).

kfp is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlsplit

from flywheel.dsl.artifacts import PushedModel
from flywheel.dsl.component import Component
from flywheel.kubeflow.errors import KubeflowCompileError

SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # keys of the Secret, exported under the same names
ENDPOINT_ENV = "FLYWHEEL_S3_ENDPOINT_URL"
DEFAULT_SECRET = "flywheel-object-store"  # k8s/: the Secret serving and the monitor read too
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclasses.dataclass(frozen=True)
class ObjectStoreEnv:
    """The object store every task reaches.

    Attributes:
        secret: Kubernetes Secret holding the keys ``SECRET_KEYS`` (k8s/: ``flywheel-object-store``);
            None: no credentials from a Secret (a workload identity, or none needed).
        endpoint: S3 API endpoint (``http://minio-service.kubeflow:9000``); None: AWS's default.

    Raises:
        KubeflowCompileError: the Secret name is not a Kubernetes name, or the endpoint is not an
            http(s) URL without credentials, path, query or fragment.
    """

    secret: str | None = None
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.secret is not None and (len(self.secret) > 253 or not _SECRET_NAME.match(self.secret)):
            raise KubeflowCompileError(
                f"The object-store Secret name {self.secret!r} is not a Kubernetes object name (lower-case "
                f"letters, digits, '-' and '.', at most 253 characters), e.g. {DEFAULT_SECRET!r}."
            )
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise KubeflowCompileError(
                    f"The object-store endpoint must be an http(s) URL such as http://minio-service.kubeflow:9000. "
                    f"Got {self.endpoint!r} instead."
                )
            if parts.username is not None or parts.password is not None:
                raise KubeflowCompileError(
                    "The object-store endpoint carries credentials, which would be written into the pipeline "
                    "IR; give the URL without them and the credentials through the Secret (--object-store-secret)."
                )
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise KubeflowCompileError(
                    f"The object-store endpoint is scheme://host[:port] only. Got {self.endpoint!r}; drop the "
                    "path, query or fragment."
                )

    def __bool__(self) -> bool:
        return bool(self.secret or self.endpoint)


def apply_object_store(kfp_task: Any, object_store: ObjectStoreEnv | None) -> None:
    """Gives one task the object store's Secret env and endpoint."""
    if not object_store:
        return
    if object_store.secret:
        from kfp import kubernetes

        kubernetes.use_secret_as_env(
            kfp_task, secret_name=object_store.secret, secret_key_to_env={key: key for key in SECRET_KEYS}
        )
    if object_store.endpoint:
        kfp_task.set_env_variable(ENDPOINT_ENV, object_store.endpoint.rstrip("/"))


def wants_run_id(comp: Component) -> bool:
    """Whether the component's task gets KFP's run id (it writes the registry: a ``PushedModel`` output)."""
    return any(spec.type is PushedModel for spec in comp.outputs.values())


def run_id_argument() -> dict[str, str]:
    """The extra argument of such a task: KFP's run-id placeholder, resolved by the backend (2.4+)."""
    from kfp import dsl

    from flywheel.kubeflow.entrypoint import RUN_ID_PARAMETER

    return {RUN_ID_PARAMETER: dsl.PIPELINE_JOB_ID_PLACEHOLDER}

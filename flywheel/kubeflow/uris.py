"""Artifact URIs <-> local paths, exactly as Kubeflow Pipelines maps them.

The KFP launcher downloads input artifacts and uploads output artifacts at
fixed local mount points: ``gs://b/k`` is ``/gcs/b/k``, ``minio://b/k`` is
``/minio/b/k`` and ``s3://b/k`` is ``/s3/b/k`` (``kfp/dsl/types/artifact_types.py``).
Any other URI is already a local path (KFP's local runner, tests). No kfp
import: the executor in the component image stays light.

``FLYWHEEL_ARTIFACT_MOUNT_ROOT`` moves the mount points under another root
(default ``/``), the way kfp's own executor tests patch its mount prefixes.
"""

from __future__ import annotations

import os

MOUNT_ROOT_ENV = "FLYWHEEL_ARTIFACT_MOUNT_ROOT"

# (remote scheme, local mount directory), in KFP's order.
REMOTE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gs://", "gcs"),
    ("minio://", "minio"),
    ("s3://", "s3"),
)


def _mount_root(root: str | None) -> str:
    return root if root is not None else os.environ.get(MOUNT_ROOT_ENV, "/")


def local_path(uri: str, *, root: str | None = None) -> str:
    """The local path where the KFP launcher puts the artifact at ``uri``."""
    base = _mount_root(root)
    for scheme, mount in REMOTE_PREFIXES:
        if uri.startswith(scheme):
            return os.path.join(base, mount, uri[len(scheme):])
    return uri


def remote_uri(path: str, *, root: str | None = None) -> str:
    """The artifact URI of a local mount path (the inverse of ``local_path``)."""
    base = _mount_root(root)
    for scheme, mount in REMOTE_PREFIXES:
        prefix = os.path.join(base, mount, "")
        if path.startswith(prefix):
            return scheme + path[len(prefix):]
    return path

"""The oldest Kubeflow Pipelines backend a compiled flywheel pipeline runs on.

The KFP SDK compiles features that a backend only executes from some release on. This
module reads them off the IR (no kfp import) so the documented minimum (k8s/README.md)
is checked against what the compiler really emits:

* ``dsl.Collected`` (tune's fan-in of ParallelFor trials): an input with
  ``isArtifactList: true`` fed by a task inside a loop; executed from backend 2.14.0.
* ``dsl.ParallelFor`` (``parameterIterator``/``artifactIterator``): 2.0.0.
* kfp-kubernetes ``mount_pvc`` (``--registry-pvc``): the Kubernetes platform spec, 2.1.0.
* ``dsl.PIPELINE_JOB_ID_PLACEHOLDER`` as an argument (push's run id, ``task_env``): the driver
  resolves job placeholders from 2.4.0 (kubeflow/pipelines#11599); older backends pass it verbatim.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

# (feature, minimum backend release, how the IR shows it); the newest one bounds every pipeline.
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("dsl.ParallelFor", "2.0.0", "a DAG task with parameterIterator or artifactIterator"),
    ("kfp-kubernetes mount_pvc", "2.1.0", "platforms.kubernetes ... pvcMount"),
    ("dsl.PIPELINE_JOB_ID_PLACEHOLDER", "2.4.0", "a runtime constant '{{$.pipeline_job_uuid}}'"),
    ("dsl.Collected", "2.14.0", "an input artifact list (isArtifactList) fed from a loop"),
)
MINIMUM_BACKEND = max((version for _, version, _ in FEATURES), key=lambda v: tuple(map(int, v.split("."))))


def _walk(node: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def features_used(documents: Iterable[Mapping[str, Any]]) -> list[str]:
    """The FEATURES names the IR documents (pipeline spec, then platform spec) use."""
    pairs = [(key, value) for document in documents for key, value in _walk(document)]
    keys = {key for key, _ in pairs}
    found = set()
    if keys & {"parameterIterator", "artifactIterator"}:
        found.add("dsl.ParallelFor")
    if "pvcMount" in keys:
        found.add("kfp-kubernetes mount_pvc")
    if any(key == "constant" and value == "{{$.pipeline_job_uuid}}" for key, value in pairs):
        found.add("dsl.PIPELINE_JOB_ID_PLACEHOLDER")
    if any(key == "isArtifactList" and value is True for key, value in pairs):
        found.add("dsl.Collected")
    return [name for name, _, _ in FEATURES if name in found]


def minimum_backend(documents: Iterable[Mapping[str, Any]]) -> str:
    """The oldest backend release that runs an IR whose YAML documents are ``documents``."""
    used = set(features_used(list(documents)))
    versions = [version for name, version, _ in FEATURES if name in used] or ["2.0.0"]
    return max(versions, key=lambda v: tuple(map(int, v.split("."))))

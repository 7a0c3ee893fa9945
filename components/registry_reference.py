"""registry_reference: the serving version's kept schema and statistics, read from the model registry.

Schema continuity on Kubeflow. Locally, ``validate`` gets the schema and statistics of earlier
runs through ``latest()`` inputs, resolved by the runner from its metadata store; a cluster run
has no such store. Every version ``push`` writes carries them (``<version>/reference/schema/``
and ``<version>/reference/statistics/FeatureStats.pb``), so the compiler feeds each ``latest()``
Schema / ExampleStatistics input from this component instead (``flywheel.kubeflow.registry_wiring``).
It reads the registry through ``flywheel.storage`` (a directory, a mounted PVC, or ``s3://`` /
``minio://`` / ``gs://``) when the task runs, so it always sees the version that serves then.

The model is named as ``push`` names it: ``model_name``, else (``""``) the name ``evaluate`` judged,
which is the ``dataset_name`` ingest recorded on the examples.

When no version serves yet (the first run), or the version predates the reference bundle, the
outputs are written empty and marked absent (``flywheel.component_call.ABSENT_PROPERTY``): the
consuming input then receives None, so validate infers a schema exactly as on a first local run.
"""

from __future__ import annotations

import os

from flywheel.dsl.artifacts import Examples, ExampleStatistics, Schema
from flywheel.dsl.component import Input, Output, component
from flywheel.component_call import ABSENT_PROPERTY, ABSENT_REASON_PROPERTY

# Where push keeps the parts (flywheel.monitoring.reference.write_bundle) and where validate reads them.
SCHEMA_PART = "schema"
STATISTICS_PART = "statistics"
STATISTICS_FILE = "FeatureStats.pb"
STATISTICS_SPLIT = "train"  # push keeps validate's train-split statistics


@component(resources={"cpu": "250m", "memory": "512Mi", "memory_limit": "1Gi"}, cache=False)
def registry_reference(
    schema: Output[Schema],
    statistics: Output[ExampleStatistics],
    registry: str = "",
    model_name: str = "",
    examples: Input[Examples] = None,
) -> None:
    """Writes the serving version's kept schema and train statistics, or marks them absent.

    Args:
        schema: Output; ``schema.pbtxt`` as validate writes it (property ``source`` "registry").
        statistics: Output; ``Split-train/FeatureStats.pb`` (property ``split_names`` ["train"]),
            the layout validate's ``previous_statistics`` reads.
        registry: Registry directory or object-store URI; "" means the flywheel home's registry
            (``FLYWHEEL_REGISTRY`` where the compiler mounts the registry volume).
        model_name: The model; "" means the examples' ``dataset_name`` (what push resolves "" to).
        examples: ingest's output, for the model name when ``model_name`` is "".

    Both outputs carry ``model_name``, ``registry_uri`` and, when found, ``version`` and ``source_uri``.

    Raises:
        ParameterError: no model name is given and no examples name one.
        FlywheelError: the registry cannot be read (credentials, endpoint) or its alias is damaged.
    """
    from flywheel.errors import ParameterError
    from flywheel.home import Home
    from flywheel.registry import ModelRegistry

    name = model_name or str((examples.properties.get("dataset_name") if examples is not None else "") or "")
    if not name:
        raise ParameterError(
            "registry_reference needs a model name: pass model_name, or the examples of an ingest "
            "(their dataset_name is the name push gives the model when model_name is \"\")."
        )
    store = ModelRegistry(registry or Home.resolve().registry)
    common = {"model_name": name, "registry_uri": store.root}
    version = store.serving_version(name)
    if version is None:
        reason = f"no version of model '{name}' serves in {store.root} yet (a first run: validate infers a schema)"
        _absent(schema, common, reason)
        _absent(statistics, common, reason)
        print(f"registry_reference: {reason}")
        return
    common["version"] = version
    _copy_part(store, name, version, SCHEMA_PART, schema.uri, common, schema)
    if ABSENT_PROPERTY not in schema.properties:
        schema.properties["source"] = "registry"
    statistics_dir = os.path.join(statistics.uri, f"Split-{STATISTICS_SPLIT}")
    os.makedirs(statistics_dir, exist_ok=True)
    _copy_part(store, name, version, STATISTICS_PART, statistics_dir, common, statistics,
               required_file=STATISTICS_FILE)
    if ABSENT_PROPERTY not in statistics.properties:
        statistics.properties["split_names"] = [STATISTICS_SPLIT]
    print(f"registry_reference: model '{name}' version {version} from {store.root}: "
          f"schema {'absent' if schema.properties.get(ABSENT_PROPERTY) else 'kept'}, "
          f"statistics {'absent' if statistics.properties.get(ABSENT_PROPERTY) else 'kept'}")


def _copy_part(store, name: str, version: int, part: str, target: str, common: dict, artifact,
               required_file: str = "") -> None:
    """Copies ``reference/<part>/`` of the version into ``target``; marks ``artifact`` absent when it is missing."""
    from flywheel import storage
    from flywheel.errors import FlywheelError

    try:
        uri = store.reference_uri(name, part, version)
    except FlywheelError as exc:  # a version pushed before versions carried their reference
        _absent(artifact, common, str(exc))
        return
    copied = storage.get_tree(uri, target)
    wanted = required_file or "schema.pbtxt"
    if wanted not in copied:
        _absent(artifact, common, f"{uri} holds no {wanted} (found: {', '.join(copied) or 'nothing'})")
        return
    artifact.properties.update({**common, "source_uri": uri})


def _absent(artifact, common: dict, reason: str) -> None:
    artifact.properties.update({**common, ABSENT_PROPERTY: True, ABSENT_REASON_PROPERTY: reason})

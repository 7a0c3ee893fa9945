"""push: publish a blessed model to the registry and make it the serving version.

An unblessed model is not pushed, and that is not a failure: the node
succeeds with ``pushed=False`` and a ``reason``, so the run shows why nothing
was deployed. When an ``infra_blessing`` (``infra_validate``) is wired in, a
model needs both blessings; without one (a pipeline with no infra validation)
the model blessing alone decides, as TFX's Pusher treats its optional
``infra_blessing``. Pushing the same model again (same content fingerprint) returns the
existing version; the alias moves to it only if it never served (an earlier
push crashed before the alias update, so re-running push or ``flywheel run
--resume`` finishes the deployment). A version that served and was rolled
back stays rolled back (``ModelRegistry.publish``).

Each pushed version describes itself (so the loop needs no metadata store):
``reference/`` holds the training reference of drift checks
(``monitoring.reference.write_bundle``: from the ``statistics``, ``schema`` and
``examples`` inputs when wired, else found through the local run's lineage),
and ``version.json`` holds the data it was trained on, the evaluation, the
blessing, the run id and where that run's lineage lives.
"""

from __future__ import annotations

import json
import os
import tempfile

from flywheel.dsl.artifacts import Examples, ExampleStatistics, InfraBlessing, Model, ModelBlessing, PushedModel, Schema
from flywheel.dsl.component import Input, Output, component
from flywheel.errors import FlywheelError

from flywheel.models import features


@component(resources={"cpu": "250m", "memory": "512Mi", "memory_limit": "1Gi"})
def push(
    model: Input[Model],
    blessing: Input[ModelBlessing],
    pushed_model: Output[PushedModel],
    registry: str = "",
    model_name: str = "",
    examples: Input[Examples] = None,
    statistics: Input[ExampleStatistics] = None,
    schema: Input[Schema] = None,
    infra_blessing: Input[InfraBlessing] = None,
) -> None:
    """Pushes ``model`` to ``<registry>/<model_name>/<version>/`` if ``blessing`` says so.

    Args:
        model: Output of ``train``.
        blessing: Output of ``evaluate``.
        pushed_model: Receives ``pushed.json``; properties ``pushed``,
            ``version``, ``registry_uri``, ``model_name`` (and ``reason``
            when not pushed, ``created`` when pushed).
        registry: Registry directory or object-store URI; "" means the flywheel home's registry.
        model_name: Name of the model in the registry; "" means the one the
            blessing was made for (evaluate's ``model_name``).
        examples: The ingest output the model was trained on (its train split
            is the numeric drift reference); optional.
        statistics: validate's statistics of that data; optional.
        schema: validate's schema; optional (kept for schema continuity).
        infra_blessing: Output of ``infra_validate``; when given, the model is
            pushed only if it is blessed too.
    """
    from flywheel.home import Home
    from flywheel.registry import ModelRegistry, fingerprint_dir

    store = ModelRegistry(registry or Home.resolve().registry)
    model_name = model_name or str(blessing.properties.get("model_name") or "")  # "": the name evaluate judged
    blessed, reasons = _read_blessing(blessing)
    record: dict = {
        "pushed": False,
        "version": None,
        "registry_uri": store.root,
        "model_name": model_name,
        "model_uri": model.uri,
    }
    infra_blessed, infra_reasons = (True, []) if infra_blessing is None else _read_blessing(infra_blessing)
    if not blessed:
        detail = "; ".join(reasons) if reasons else "the blessing records no reason"
        record["reason"] = f"model not blessed: {detail}"
    elif not infra_blessed:
        detail = "; ".join(infra_reasons) if infra_reasons else "the infra blessing records no reason"
        record["reason"] = f"model not infra-blessed (serving could not answer with it): {detail}"
    elif not model_name:
        raise FlywheelError(
            f"push has no model name: the blessing at {blessing.uri} records none (its Examples had no dataset "
            "name) and none was given; pass model_name=... naming the model in the registry."
        )
    else:
        fingerprint = fingerprint_dir(model.uri)
        metadata = {
            "metrics": blessing.properties.get("metrics", {}),
            "blessing_reasons": reasons,
            **({} if infra_blessing is None else {"infra_blessing_reasons": infra_reasons}),
            "model_properties": {
                k: v for k, v in model.properties.items() if isinstance(v, (int, float, str, bool)) or v is None
            },
            **_self_description(model, blessed, reasons),
        }
        with tempfile.TemporaryDirectory(prefix="flywheel-reference-") as scratch:
            trees = _reference_trees(model, examples, statistics, schema, scratch)
            if not trees:
                metadata["reference"] = "none: no statistics or train split reached push (drift is not checked)"
            result = store.publish(
                model_name,
                model.uri,
                fingerprint=fingerprint,
                metadata=metadata,
                reason=f"pushed from {model.uri}",
                extra_trees=trees,
            )
        record.update(
            {
                "pushed": True,
                "version": result.version,
                "created": result.created,
                "serving_set": result.serving_set,
                "fingerprint": fingerprint,
                "version_uri": store.version_dir(model_name, result.version),
                "serving_version": result.serving_version,
            }
        )
        if not result.created:
            record["reason"] = f"same model already in the registry as version {result.version}; nothing pushed" + (
                "; it had never served, so it serves now (an earlier push stopped before moving the alias)"
                if result.serving_set
                else ""
            )
    features.write_json(pushed_model.path("pushed.json"), record)
    pushed_model.properties.update(record)


def _self_description(model: Model, blessed: bool, reasons: list) -> dict:
    """Data, blessing, run id and lineage home of a pushed version (what ``version.json`` carries)."""
    from flywheel.home import Home

    props = model.properties
    run_id = os.environ.get("FLYWHEEL_RUN_ID") or os.environ.get("KFP_RUN_ID") or ""
    if os.environ.get("KFP_RUN_ID"):
        lineage = {"kind": "kfp", "run_id": os.environ["KFP_RUN_ID"], "host": os.environ.get("KFP_HOST", "")}
    elif os.environ.get("FLYWHEEL_RUN_ID"):
        lineage = {"kind": "mlmd", "home": Home.resolve().root}
    else:
        lineage = {"kind": "none"}
    return {
        "data": {
            "uri": props.get("data_uri"),
            "span": props.get("data_span"),
            "version": props.get("data_version"),
            "sha256": props.get("data_sha256"),
        },
        "blessing": {"blessed": blessed, "reasons": list(reasons)},
        "run_id": run_id,
        "lineage": lineage,
    }


def _reference_trees(model: Model, examples, statistics, schema, scratch: str) -> dict:
    """``{"reference": dir}`` holding the drift reference bundle, or {} when no source reaches push."""
    from flywheel.monitoring import reference

    sources = {
        "statistics": statistics.uri if statistics is not None else None,
        "examples": examples.uri if examples is not None else None,
        "schema": schema.uri if schema is not None else None,
    }
    if not sources["statistics"] or not sources["examples"]:
        sources = {**_lineage_sources(model.uri), **{k: v for k, v in sources.items() if v}}
    contract_path = os.path.join(model.uri, features.MODEL_JSON)
    if not os.path.isfile(contract_path):
        return {}
    out_dir = os.path.join(scratch, "reference")
    try:
        reference.write_bundle(
            out_dir,
            features.read_json(contract_path),
            statistics_dir=sources.get("statistics"),
            examples_dir=sources.get("examples"),
            schema_dir=sources.get("schema"),
        )
    except reference.ReferenceNotFoundError:
        return {}
    return {"reference": out_dir}


def _lineage_sources(model_uri: str) -> dict:
    """statistics / examples / schema upstream of the model in the local run's ML Metadata ({} when none)."""
    from flywheel.home import Home
    from flywheel.monitoring.reference import lineage_outputs

    if not os.environ.get("FLYWHEEL_RUN_ID"):
        return {}
    try:
        return lineage_outputs(Home.resolve(), model_uri)
    except FlywheelError:
        return {}


def _read_blessing(blessing: ModelBlessing | InfraBlessing) -> tuple[bool, list[str]]:
    """(blessed, reasons) from the artifact's properties, else from ``blessing.json`` / ``infra_blessing.json``."""
    if "blessed" in blessing.properties:
        return bool(blessing.properties["blessed"]), list(blessing.properties.get("reasons") or [])
    name = "infra_blessing.json" if isinstance(blessing, InfraBlessing) else "blessing.json"
    path = blessing.path(name)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return bool(data.get("blessed")), list(data.get("reasons") or [])
    return False, [f"no blessing found (no 'blessed' property and no {path})"]

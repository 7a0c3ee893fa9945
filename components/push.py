"""push: publish a blessed model to the registry and make it the serving version.

An unblessed model is not pushed, and that is not a failure: the node
succeeds with ``pushed=False`` and a ``reason``, so the run shows why nothing
was deployed. Pushing the same model again (same content fingerprint) returns the
existing version; the alias moves to it only if it never served (an earlier
push crashed before the alias update, so re-running push or ``flywheel run
--resume`` finishes the deployment). A version that served and was rolled
back stays rolled back (``ModelRegistry.publish``).
"""

from __future__ import annotations

import json
import os

from flywheel.dsl.artifacts import Model, ModelBlessing, PushedModel
from flywheel.dsl.component import Input, Output, component

from flywheel.components import _model_features as features


@component(resources={"cpu": "250m", "memory": "512Mi", "memory_limit": "1Gi"})
def push(
    model: Input[Model],
    blessing: Input[ModelBlessing],
    pushed_model: Output[PushedModel],
    registry: str = "",
    model_name: str = "penguins",
) -> None:
    """Pushes ``model`` to ``<registry>/<model_name>/<version>/`` if ``blessing`` says so.

    Args:
        model: Output of ``train``.
        blessing: Output of ``evaluate``.
        pushed_model: Receives ``pushed.json``; properties ``pushed``,
            ``version``, ``registry_uri``, ``model_name`` (and ``reason``
            when not pushed, ``created`` when pushed).
        registry: Registry directory; "" means the flywheel home's registry.
        model_name: Name of the model in the registry; "" means the one the
            blessing was made for (evaluate's ``model_name``).
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
    if not blessed:
        detail = "; ".join(reasons) if reasons else "the blessing records no reason"
        record["reason"] = f"model not blessed: {detail}"
    else:
        fingerprint = fingerprint_dir(model.uri)
        metadata = {
            "metrics": blessing.properties.get("metrics", {}),
            "blessing_reasons": reasons,
            "model_properties": {
                k: v for k, v in model.properties.items() if isinstance(v, (int, float, str, bool)) or v is None
            },
        }
        result = store.publish(
            model_name, model.uri, fingerprint=fingerprint, metadata=metadata, reason=f"pushed from {model.uri}"
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


def _read_blessing(blessing: ModelBlessing) -> tuple[bool, list[str]]:
    """(blessed, reasons) from the artifact's properties, else from ``blessing.json``."""
    if "blessed" in blessing.properties:
        return bool(blessing.properties["blessed"]), list(blessing.properties.get("reasons") or [])
    path = blessing.path("blessing.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return bool(data.get("blessed")), list(data.get("reasons") or [])
    return False, [f"no blessing found (no 'blessed' property and no {path})"]

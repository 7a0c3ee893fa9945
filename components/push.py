"""push: publish a blessed model to the registry and make it the serving version.

An unblessed model is not pushed, and that is not a failure: the node
succeeds with ``pushed=False`` and a ``reason``, so the run shows why nothing
was deployed. Pushing the same model again (same content fingerprint) is a
no-op that returns the existing version and leaves the serving alias alone
(it may have been rolled back on purpose).
"""

from __future__ import annotations

import json
import os

from flywheel.dsl.artifacts import Model, ModelBlessing, PushedModel
from flywheel.dsl.component import Input, Output, component

from flywheel.components import _model_features as features


@component
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
        model_name: Name of the model in the registry.
    """
    from flywheel.home import Home
    from flywheel.registry import ModelRegistry, fingerprint_dir

    store = ModelRegistry(registry or Home.resolve().registry)
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
        result = store.push(model_name, model.uri, fingerprint=fingerprint, metadata=metadata)
        if result.created or store.serving_version(model_name) is None:
            store.set_serving(model_name, result.version, reason=f"pushed from {model.uri}")
        record.update(
            {
                "pushed": True,
                "version": result.version,
                "created": result.created,
                "fingerprint": fingerprint,
                "version_uri": store.version_dir(model_name, result.version),
                "serving_version": store.serving_version(model_name),
            }
        )
        if not result.created:
            record["reason"] = f"same model already in the registry as version {result.version}; nothing pushed"
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

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
"""

from __future__ import annotations

import json
import os

from flywheel.dsl.artifacts import InfraBlessing, Model, ModelBlessing, PushedModel
from flywheel.dsl.component import Input, Output, component

from flywheel.components import _model_features as features


@component
def push(
    model: Input[Model],
    blessing: Input[ModelBlessing],
    pushed_model: Output[PushedModel],
    registry: str = "",
    model_name: str = "penguins",
    infra_blessing: Input[InfraBlessing] = None,
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
    else:
        fingerprint = fingerprint_dir(model.uri)
        metadata = {
            "metrics": blessing.properties.get("metrics", {}),
            "blessing_reasons": reasons,
            **({} if infra_blessing is None else {"infra_blessing_reasons": infra_reasons}),
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

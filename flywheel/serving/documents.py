"""The JSON documents of the serving API that need no running server.

* feedback lines (the feedback log's format, ``flywheel.serving.logs``) from a
  ``:feedback`` body, with its checks;
* TF Serving's ``GetModelMetadataResponse`` for a version's ``model.json``.
"""

from __future__ import annotations

import re
from typing import Any

from flywheel.models.features import MODEL_JSON
from flywheel.serving.errors import RequestError
from flywheel.serving.inputs import SIGNATURE

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def feedback_records(payload: Any, class_names: tuple[str, ...], ts: float) -> list[dict[str, Any]]:
    """Feedback-log lines from a feedback body (see ``ModelServer.feedback``).

    Raises:
        RequestError: the body breaks a rule; the message names the field (400).
    """
    if not isinstance(payload, dict):
        raise RequestError('The feedback body must be a JSON object {"request_id": ..., "labels": [...]}.')
    unknown = sorted(set(payload) - {"request_id", "labels", "label", "index"})
    if unknown:
        raise RequestError(f"Unknown feedback key(s) {unknown}; allowed: request_id, labels, or label with index.")
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        raise RequestError(
            f"'request_id' must be the request_id of a predict response (1-128 letters, digits, '._:-'); "
            f"got {request_id!r}."
        )
    if ("labels" in payload) == ("label" in payload):
        raise RequestError("Send exactly one of 'labels' (one per instance) or 'label' (with 'index', default 0).")
    if "labels" in payload:
        labels = payload["labels"]
        if "index" in payload:
            raise RequestError("'index' goes with 'label'; 'labels' covers the instances in order from 0.")
        if not isinstance(labels, list) or not labels:
            raise RequestError(f"'labels' must be a non-empty list of class names; got {labels!r}.")
        pairs = list(enumerate(labels))
    else:
        index = payload.get("index", 0)
        if type(index) is not int or index < 0:
            raise RequestError(f"'index' must be an instance index >= 0; got {index!r}.")
        pairs = [(index, payload["label"])]
    allowed = set(class_names)
    for index, label in pairs:
        if not isinstance(label, str) or label not in allowed:
            where = f"labels[{index}]" if "labels" in payload else "label"
            raise RequestError(
                f"{where} is {label!r}, which is not a class of the model; allowed: {list(class_names)}."
            )
    return [{"request_id": request_id, "index": index, "ts": ts, "label": label} for index, label in pairs]


def read_spec(registry: Any, name: str, version: int) -> dict[str, Any]:
    """A version's ``model.json``, read through the registry (a directory or an object store).

    Raises:
        RequestError: the version is not in the registry (404), its ``model.json``
            is damaged, or the store cannot be reached now (503).
    """
    from flywheel.errors import FlywheelError
    from flywheel.registry import is_unreachable

    try:
        versions = registry.versions(name)
        if version not in versions:
            raise RequestError(
                f"Model '{name}' has no version {version}; versions in the registry: {versions or 'none'}.", status=404
            )
        spec = registry.read_version_json(name, version, MODEL_JSON)
    except RequestError:
        raise
    except FlywheelError as exc:
        if is_unreachable(exc):
            raise RequestError(f"The registry cannot be reached now; retry later ({exc}).", status=503) from exc
        raise RequestError(f"Version {version} of model '{name}' cannot serve metadata: {exc}", status=503) from exc
    if not isinstance(spec, dict):
        raise RequestError(f"Version {version} of model '{name}' has a damaged model.json (not an object).", status=503)
    return spec


def metadata_document(
    name: str, version: int, spec: dict[str, Any], *, xla: dict[str, Any] | None = None
) -> dict[str, Any]:
    """TF Serving's GetModelMetadataResponse for the ``serving_default`` signature, plus the feature contract
    and ``xla``: whether the loaded version runs XLA-compiled, and why (``models.compile_fastest``)."""

    def tensor(tensor_name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
        return {
            "dtype": dtype,
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False},
            "name": tensor_name,
        }

    if spec.get("modality") == "image":
        image = spec["image_input"]
        inputs = {image: tensor(f"{SIGNATURE}_{image}:0", "DT_FLOAT", [-1, *spec["image_shape"]])}
    else:
        inputs = {
            feature: tensor(
                f"{SIGNATURE}_{feature}:0", "DT_STRING" if info["dtype"] == "string" else "DT_FLOAT", [-1]
            )
            for feature, info in spec["features"].items()
        }
    output = spec.get("output", "probabilities")
    outputs = {output: tensor("StatefulPartitionedCall:0", "DT_FLOAT", [-1, len(spec["label_vocabulary"])])}
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE: {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}
                }
            }
        },
        "flywheel": {
            "label": spec.get("label"),
            "class_names": spec["label_vocabulary"],
            "features": spec["features"],
            "missing": spec.get("missing"),
            "xla": xla or {},
            **(
                {"image": {"input": spec["image_input"], "shape": spec["image_shape"], "pixel_max": spec.get("pixel_max")}}
                if spec.get("modality") == "image"
                else {}
            ),
        },
    }

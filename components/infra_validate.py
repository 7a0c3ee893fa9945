"""infra_validate: serve the candidate model for real before it may be pushed (TFX's InfraValidator).

The candidate is copied into a scratch registry (the TF Serving layout push
writes) and served by ``flywheel.serving``'s own ``ModelServer`` on
127.0.0.1 with a free port: the same loader (``serving.models.load_version``,
Keras ``safe_mode``), input checks and batcher as ``flywheel serve``. Rows of
the eval split are sent as TF Serving REST predict requests over HTTP; the
answers must equal the model's own predictions (Keras ``predict`` on the same
rows, as evaluate scores them) within ``tolerance`` (absolute, per
probability), and every request must answer within ``max_latency_ms``.

The node succeeds either way (as TFX's InfraValidator does): a model that
cannot be served gets ``blessed=False`` with the reason, and ``push`` refuses
it. Nothing is left behind: the scratch registry is deleted.

On Kubeflow the task runs in the serving image (``@component(image="serving")``),
so the model is loaded with the libraries that will serve it. That image has no
pandas: the rows are read with pyarrow (``examples_io.head_table``) and fed to
the model as plain records; ``tests/docker`` checks that everything this task
imports (with the executor) is installed there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Annotated, Any, Iterator

from flywheel.dsl.artifacts import Examples, InfraBlessing, Model
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval
from flywheel.errors import FlywheelError

from flywheel.components import examples_io
from flywheel.models import features

SCRATCH_MODEL_NAME = "candidate"
HTTP_TIMEOUT_S = 60.0


@component(image="serving")
def infra_validate(
    model: Input[Model],
    examples: Input[Examples],
    infra_blessing: Output[InfraBlessing],
    split: str = "eval",
    requests: Annotated[int, Interval(int, 1, None)] = 3,
    rows_per_request: Annotated[int, Interval(int, 1, None)] = 4,
    tolerance: Annotated[float, Interval(float, 0, 1, closed="left")] = 1e-4,
    max_latency_ms: Annotated[float, Interval(float, 0, None, closed="neither")] = 2000.0,
    load_timeout_s: Annotated[float, Interval(float, 0, None, closed="neither")] = 300.0,
) -> None:
    """Serves ``model`` with flywheel's serving code and checks its answers on rows of ``split``.

    Args:
        model: Output of ``train`` (``model.keras``, ``model.json``, SavedModel).
        examples: Examples holding ``split``; its first ``requests * rows_per_request``
            rows (label dropped) become the requests.
        infra_blessing: Receives ``infra_blessing.json``; properties ``blessed``,
            ``reasons``, ``max_abs_difference``, ``latency_ms``.
        split: Split the requests are built from.
        requests: Predict requests to send (at least 1).
        rows_per_request: Instances per request (at least 1).
        tolerance: Largest absolute difference allowed between a served
            probability and the model's own (float32 graph vs Keras predict).
        max_latency_ms: Longest a request may take, client side, HTTP included.
        load_timeout_s: Longest the server may take to load the model.

    Raises:
        ParameterError: a count, tolerance or bound is out of range.
        FlywheelError: the split is missing or lacks a feature the model takes.
    """
    spec = features.read_json(model.path(features.MODEL_JSON))
    records, images = _request_rows(examples, split, spec, requests * rows_per_request)
    report: dict[str, Any] = {
        "model_uri": model.uri,
        "split": split,
        "rows": len(records),
        "tolerance": tolerance,
        "max_latency_ms": max_latency_ms,
        "latency_ms": [],
        "max_abs_difference": None,
    }
    reasons: list[str] = []
    scratch = tempfile.mkdtemp(prefix="flywheel-infra-")
    try:
        served = _serve_and_ask(model.uri, scratch, records, images, rows_per_request, load_timeout_s, report)
        if served is None:
            reasons.append(report["error"])
        else:
            reasons.extend(_judge(served, model, records, images, spec, report))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    blessed = not reasons
    if blessed:
        reasons = [
            f"served {len(report['latency_ms'])} requests ({report['rows']} rows) through flywheel's REST server; "
            f"answers within {tolerance:g} of the model's own (largest difference {report['max_abs_difference']:.2e}); "
            f"slowest request {max(report['latency_ms']):.1f} ms <= {max_latency_ms:g} ms"
        ]
    report.update({"blessed": blessed, "reasons": reasons})
    features.write_json(infra_blessing.path("infra_blessing.json"), report)
    infra_blessing.properties.update(
        {
            "blessed": blessed,
            "reasons": reasons,
            "model_uri": model.uri,
            "max_abs_difference": report["max_abs_difference"],
            "latency_ms": report["latency_ms"],
        }
    )


def _request_rows(
    examples: Examples, split: str, spec: dict[str, Any], count: int
) -> tuple[list[dict[str, Any]], Any]:
    """The first ``count`` rows of ``split`` as TF Serving REST ``instances`` (and their images for an image model).

    A table row holds only the model's features, a missing value as None (JSON null).

    Raises:
        FlywheelError: the split is empty or lacks a feature the model takes.
    """
    if spec.get("modality") == "image":
        import numpy as np

        images = np.array(np.load(examples_io.images_path(examples, split), mmap_mode="r", allow_pickle=False)[:count])
        records: list[dict[str, Any]] = [{} for _ in range(len(images))]
    else:
        names = features.feature_names(spec)
        missing = [name for name in names if name not in examples_io.split_columns(examples, split)]
        if missing:
            raise FlywheelError(
                f"The '{split}' split of {examples.uri} lacks the feature(s) {missing} the model takes; "
                "infra-validate a model with Examples of the data it was trained on."
            )
        records = [
            {name: None if isinstance(value, float) and math.isnan(value) else value for name, value in row.items()}
            for row in examples_io.head_table(examples, split, count, columns=names).to_pylist()
        ]
        images = None
    if not records:
        raise FlywheelError(
            f"The '{split}' split of {examples.uri} has no rows to build requests from; pick a split with rows."
        )
    return records, images


def _instances(records: list[dict[str, Any]], images: Any) -> list[Any]:
    """The request ``instances``: the rows, or an image model's raw pixels."""
    if images is not None:
        return [image.tolist() for image in images]
    return records


def _serve_and_ask(
    model_uri: str,
    scratch: str,
    records: list[dict[str, Any]],
    images: Any,
    rows_per_request: int,
    load_timeout_s: float,
    report: dict[str, Any],
) -> list[list[float]] | None:
    """Serves the model from a scratch registry and sends the requests.

    Returns:
        The served probabilities, one row per instance; None when the model
        could not be published, loaded or asked (``report["error"]`` says why).
    """
    from flywheel.registry import ModelRegistry
    from flywheel.serving.config import ServeConfig

    registry = ModelRegistry(f"{scratch}/registry")
    try:
        registry.push(SCRATCH_MODEL_NAME, model_uri)
    except FlywheelError as exc:
        report["error"] = f"the model is not in the layout serving reads: {exc}"
        return None
    # tf_threads=0: TensorFlow's thread pools are the process's, and later components in this worker need them.
    config = ServeConfig(
        registry=registry.root, home=f"{scratch}/home", model=SCRATCH_MODEL_NAME, port=0, log_sample_rate=0.0,
        tf_threads=0,
    )
    instances = _instances(records, images)
    answers: list[list[float]] = []
    try:
        with _serving(config, load_timeout_s) as url:
            for start in range(0, len(instances), rows_per_request):
                body = json.dumps({"instances": instances[start:start + rows_per_request]}).encode()
                began = time.perf_counter()
                answer = _post(f"{url}/v1/models/{SCRATCH_MODEL_NAME}:predict", body)
                report["latency_ms"].append(round((time.perf_counter() - began) * 1000.0, 3))
                answers.extend(answer["predictions"])
    except _NotServed as exc:
        report["error"] = str(exc)
        return None
    return answers


class _NotServed(FlywheelError):
    """The server did not load the model or refused a request."""


@contextlib.contextmanager
def _serving(config: Any, load_timeout_s: float) -> Iterator[str]:
    """A ``ModelServer`` on its own event loop thread; yields its URL once the model serves.

    Raises:
        _NotServed: the model failed to load (the loader's message) or did not load in time.
    """
    from flywheel.serving.server import ModelServer

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="flywheel-infra-validate", daemon=True)
    thread.start()
    server = ModelServer(config)
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result()
        _wait_loaded(server, load_timeout_s)
        yield f"http://{config.host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        gc.unfreeze()  # the server freezes the heap after a model swap; this process goes on to other work


def _wait_loaded(server: Any, timeout_s: float) -> None:
    """Returns once a version serves; raises ``_NotServed`` as soon as its load failed."""
    deadline = time.monotonic() + timeout_s
    while not server.ready():
        failed = [entry for entry in server.store.status() if entry["state"] == "END"]
        if failed:
            raise _NotServed(f"serving could not load the model: {failed[0]['status']['error_message']}")
        if time.monotonic() > deadline:
            raise _NotServed(f"serving did not load the model within load_timeout_s={timeout_s:g} s")
        time.sleep(0.05)


def _post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310 - loopback only
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise _NotServed(f"serving refused a request built from the eval split: HTTP {exc.code} {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _NotServed(f"serving did not answer a predict request: {exc}") from exc


def _judge(
    served: list[list[float]],
    model: Model,
    records: list[dict[str, Any]],
    images: Any,
    spec: dict[str, Any],
    report: dict[str, Any],
) -> list[str]:
    """Compares served answers with the model's own predictions and latency with its bound; returns failures."""
    import numpy as np

    own = _own_predictions(model, records, images, spec)
    answers = np.asarray(served, dtype=np.float64)
    failures: list[str] = []
    if answers.shape != own.shape:
        return [f"serving answered with shape {answers.shape}; the model's own predictions have shape {own.shape}"]
    difference = float(np.max(np.abs(answers - own))) if own.size else 0.0
    report["max_abs_difference"] = difference
    if not difference <= report["tolerance"]:
        failures.append(
            f"served probabilities differ from the model's own by up to {difference:.2e}, "
            f"more than the tolerance {report['tolerance']:g}"
        )
    slowest = max(report["latency_ms"])
    if slowest > report["max_latency_ms"]:
        failures.append(f"the slowest request took {slowest:.1f} ms, more than max_latency_ms={report['max_latency_ms']:g}")
    return failures


def _own_predictions(model: Model, records: list[dict[str, Any]], images: Any, spec: dict[str, Any]) -> Any:
    """The model's own class probabilities (Keras ``predict`` on ``model.keras``), as evaluate computes them.

    Raises:
        FlywheelError: the model and the data disagree on their kind or image shape.
    """
    import numpy as np

    from flywheel.models import images as image_models
    from flywheel.models import layers as model_layers

    if image_models.is_image_spec(spec) != (images is not None):
        raise FlywheelError(
            f"The model takes {'images' if image_models.is_image_spec(spec) else 'table rows'} but the Examples hold "
            f"{'images' if images is not None else 'table rows'}; infra-validate a model with the kind of data it was trained on."
        )
    keras_model = model_layers.load_model(model.path(features.MODEL_FILE))
    if images is not None:
        if list(images.shape[1:]) != list(spec["image_shape"]):
            raise FlywheelError(
                f"The model takes images of shape {spec['image_shape']}; the Examples' are {list(images.shape[1:])}."
            )
        inputs = image_models.pixels(images)
    else:
        inputs = features.raw_inputs_from_records(records, spec)
    return np.asarray(keras_model.predict(inputs, batch_size=1024, verbose=0))

"""TF Serving's gRPC API next to the REST server, with the protos of ``tensorflow-serving-api``.

Services (a stock TF Serving gRPC client works unchanged)::

    tensorflow.serving.PredictionService/Predict           one model call (batched with REST requests)
    tensorflow.serving.PredictionService/GetModelMetadata  metadata_field ["signature_def"]
    tensorflow.serving.ModelService/GetModelStatus         the versions and their states

Classify, Regress, MultiInference and HandleReloadConfigRequest answer
UNIMPLEMENTED (the model has one ``serving_default`` predict signature).

Each call goes through the REST server's own path (``ModelServer.run_predict``,
``status_document``, ``metadata_for``): the same model store and hot reload,
the same batcher (gRPC and REST requests share batches), the same input checks
(a ``PredictRequest``'s input tensors become the REST columnar body
``{"inputs": {name: [values]}}``, so an error names the same field, e.g.
``inputs['sex'][1]``), the same request log and metrics (endpoint labels
``grpc_predict``, ``grpc_metadata``, ``grpc_status``; the ``code`` label holds
the HTTP status the REST API would answer). Refusals map to gRPC codes:
400/422 INVALID_ARGUMENT, 404 NOT_FOUND, 408 DEADLINE_EXCEEDED,
413 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, a bug INTERNAL. A client may send
``x-request-id`` metadata; the id used comes back as ``x-request-id`` in the
trailing metadata (feedback for it goes to the REST ``:feedback`` endpoint).

gRPC has no browser callers (no Host/Origin guard); the port binds the same
interface as REST (loopback unless ``--host`` says otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from flywheel.serving.errors import RequestError, ServingError
from flywheel.serving.inputs import SIGNATURE

LOG = logging.getLogger("flywheel.serving.grpc")
REQUEST_ID_KEY = "x-request-id"
_SIGNATURE_DEF = "signature_def"
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
_DT_FLOAT = 1  # tensorflow.DataType.DT_FLOAT
_DT_STRING = 7  # tensorflow.DataType.DT_STRING


def import_apis() -> None:
    """Imports the generated TF Serving modules (and so TensorFlow) once, before any other thread may."""
    from tensorflow_serving.apis import (  # noqa: F401 - imported for the side effect
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )
    import tensorflow  # noqa: F401 - make_ndarray in _values


def grpc_code(http_status: int) -> Any:
    """The gRPC status code of a refusal the REST API answers with ``http_status``."""
    import grpc

    codes = {
        400: grpc.StatusCode.INVALID_ARGUMENT,
        404: grpc.StatusCode.NOT_FOUND,
        408: grpc.StatusCode.DEADLINE_EXCEEDED,
        413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        422: grpc.StatusCode.INVALID_ARGUMENT,
        503: grpc.StatusCode.UNAVAILABLE,
    }
    return codes.get(http_status, grpc.StatusCode.INTERNAL if http_status >= 500 else grpc.StatusCode.INVALID_ARGUMENT)


async def start_grpc(server: Any, host: str, port: int) -> tuple[Any, int]:
    """Starts the gRPC server for ``server`` (a ``ModelServer``) on the running event loop.

    Returns:
        (the ``grpc.aio`` server, the bound port).

    Raises:
        ServingError: the port cannot be bound.
    """
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    limit = server.config.max_body_bytes
    aio = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),  # a port another process holds is an error, not shared
            ("grpc.max_receive_message_length", limit),
        ]
    )
    api = TFServingAPI(server)
    prediction, model = _servicers(api)
    aio.add_generic_rpc_handlers((_predict_handler(api),))  # ahead of the generated handlers: it answers Predict
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, aio)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, aio)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = aio.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises when the port is taken or the host is not an interface here
        bound, reason = 0, str(exc)
    else:
        reason = "address in use or not an interface of this machine"
    if not bound:
        raise ServingError(
            f"Cannot listen for gRPC on {address} ({reason}); pick another --grpc-port, stop the process "
            "that holds it, or turn gRPC off with --no-grpc."
        )
    await aio.start()
    return aio, bound


class TFServingAPI:
    """The three gRPC methods over a ``ModelServer``; each returns the response proto or raises RequestError."""

    def __init__(self, server: Any) -> None:
        self.server = server

    async def call(self, endpoint: str, context: Any, answer: Callable[[], Awaitable[Any]]) -> Any:
        """Runs one call with the REST middleware's bookkeeping; a refusal aborts with its gRPC code."""
        server = self.server
        started = time.perf_counter()
        gauge = server.metrics.in_flight_now
        gauge.inc()
        server._in_flight += 1  # noqa: SLF001 - shutdown drains REST and gRPC calls alike
        status, message = 200, ""
        try:
            return await answer()
        except RequestError as exc:
            status, message = exc.status, str(exc)
        except Exception as exc:  # noqa: BLE001 - one boundary: a bug answers INTERNAL and is logged, never a crash
            LOG.exception("internal error on gRPC %s", endpoint)
            status, message = 500, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            gauge.dec()
            server._in_flight -= 1  # noqa: SLF001
            server.metrics.observe_request(endpoint, status, time.perf_counter() - started)
        await context.abort(grpc_code(status), message)

    def _version(self, model_spec: Any) -> int | None:
        self.server.check_model_name(model_spec.name)
        if model_spec.version_label:
            raise RequestError(
                f"model_spec.version_label {model_spec.version_label!r} is not supported: flywheel has no version "
                "labels. Set model_spec.version, or neither for the serving version.",
            )
        if model_spec.signature_name not in ("", SIGNATURE):
            raise RequestError(
                f"model_spec.signature_name must be '{SIGNATURE}' (the only signature) or empty; "
                f"got {model_spec.signature_name!r}."
            )
        return model_spec.version.value if model_spec.HasField("version") else None

    async def predict(self, context: Any) -> Any:
        """Predict on a call whose request is still on its way: the call counts as arriving (the batcher
        waits for it as for a REST body being read) before its bytes are read and parsed."""
        from tensorflow_serving.apis import predict_pb2

        with self.server.predictor.arriving() as mark:
            request = _parse_request(await context.read())
            version = self._version(request.model_spec)
            metadata = dict(context.invocation_metadata() or ())

            async def read_payload(model: Any) -> Any:
                _check_output_filter(request.output_filter, _output_of(model))
                return {"inputs": {name: _values(name, tensor) for name, tensor in request.inputs.items()}}

            done = await self.server.run_predict(version, read_payload, str(metadata.get(REQUEST_ID_KEY, "")), mark)
        output = _output_of(done.model)
        response = predict_pb2.PredictResponse()
        _model_spec(response.model_spec, self.server.config.model, done.model.version)
        _float_tensor(response.outputs[output], done.probabilities)
        context.set_trailing_metadata(((REQUEST_ID_KEY, done.request_id),))
        return response

    async def metadata(self, request: Any, context: Any) -> Any:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        version = self._version(request.model_spec)
        fields = list(request.metadata_field)
        if fields != [_SIGNATURE_DEF]:
            raise RequestError(f"metadata_field must be ['{_SIGNATURE_DEF}'] (the only metadata); got {fields}.")
        loop = asyncio.get_running_loop()  # a version not in memory is read from the registry: off the loop
        document = await loop.run_in_executor(None, self.server.metadata_for, version)
        signatures = json_format.ParseDict(
            document["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
        )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _model_spec(response.model_spec, self.server.config.model, int(document["model_spec"]["version"]))
        response.metadata[_SIGNATURE_DEF].Pack(signatures)
        return response

    async def status(self, request: Any, context: Any) -> Any:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        loop = asyncio.get_running_loop()
        document = await loop.run_in_executor(None, self.server.status_document, self._version(request.model_spec))
        return json_format.ParseDict(
            document, get_model_status_pb2.GetModelStatusResponse(), ignore_unknown_fields=True
        )


def _parse_request(raw: Any) -> Any:
    """The ``PredictRequest`` of a call's request bytes.

    Raises:
        RequestError: the call sent no message, or bytes that are not a PredictRequest.
    """
    import grpc
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import predict_pb2

    if raw is grpc.aio.EOF:
        raise RequestError("The Predict call sent no PredictRequest; send exactly one.")
    try:
        return predict_pb2.PredictRequest.FromString(raw)
    except DecodeError as exc:
        raise RequestError(
            f"The request is not a serialized tensorflow.serving.PredictRequest ({exc}); call Predict with the "
            "tensorflow-serving-api stubs or send PredictRequest.SerializeToString()."
        ) from exc


def _values(name: str, tensor: Any) -> Any:
    """A TensorProto's values as a column the REST checks take: a float32 array read straight from the
    proto's bytes for float tensors, a list of str for string tensors; any other tensor through TensorFlow."""
    column = _column_of(name, tensor)
    return column if column is not None else _values_through_tf(name, tensor)


def _column_of(name: str, tensor: Any) -> Any:
    """The column of a float or string tensor of shape [N] or [N, 1] without TensorFlow; None for others."""
    import numpy as np

    dims = [dim.size for dim in tensor.tensor_shape.dim]
    if not (len(dims) == 1 or (len(dims) == 2 and dims[1] == 1)) or dims[0] < 1:
        return None
    size = dims[0]
    if tensor.dtype == _DT_FLOAT:
        if tensor.tensor_content:
            if len(tensor.tensor_content) != 4 * size:
                return None  # TensorFlow's own reading names the mismatch
            return np.frombuffer(tensor.tensor_content, dtype="<f4")
        values = np.array(tensor.float_val, dtype=np.float32)
    elif tensor.dtype == _DT_STRING:
        where = f"inputs['{name}']"
        try:
            values = [v.decode("utf-8") for v in tensor.string_val]
        except UnicodeDecodeError as exc:
            raise RequestError(f"{where} holds a string that is not UTF-8 ({exc.reason}); send UTF-8 text.") from exc
    else:
        return None
    if len(values) == size:
        return values
    if len(values) == 1:  # TensorFlow's compact form: one value fills the tensor
        return np.full(size, values[0], dtype=np.float32) if tensor.dtype == _DT_FLOAT else values * size
    return None


def _values_through_tf(name: str, tensor: Any) -> list[Any]:
    """A TensorProto's values as the JSON-like list the REST checks take (strings decoded, floats as floats)."""
    import numpy as np
    import tensorflow as tf

    where = f"inputs['{name}']"
    try:
        array = tf.make_ndarray(tensor)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"{where} is not a valid TensorProto ({exc}); build it with tf.make_tensor_proto.") from exc
    if array.ndim == 0:
        raise RequestError(f"{where} is a scalar; send a tensor with one value per instance (shape [N]).")
    if array.dtype == object:
        try:
            array = np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v, otypes=[object])(array)
        except UnicodeDecodeError as exc:
            raise RequestError(f"{where} holds a string that is not UTF-8 ({exc.reason}); send UTF-8 text.") from exc
    if array.ndim == 1:
        return array.tolist()
    if array.ndim == 2 and array.shape[1] == 1:  # [N, 1], as many TF Serving clients send
        return array[:, 0].tolist()
    return list(array)  # an image batch: one array per instance, checked against the model's image shape


def _output_of(model: Any) -> str:
    return model.spec.get("output", "probabilities")


def _check_output_filter(names: Any, output: str) -> None:
    unknown = sorted(set(names) - {output})
    if unknown:
        raise RequestError(
            f"output_filter names {unknown}, not outputs of '{SIGNATURE}'; its only output is "
            f"{output!r} (or leave output_filter empty)."
        )


def _model_spec(spec: Any, name: str, version: int) -> None:
    spec.name = name
    spec.version.value = version
    spec.signature_name = SIGNATURE


def _float_tensor(tensor: Any, array: Any) -> None:
    """Fills a TensorProto with a float32 array (raw little-endian content, as TensorFlow writes it)."""
    import numpy as np

    values = np.ascontiguousarray(array, dtype="<f4")
    tensor.dtype = _DT_FLOAT
    for size in values.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = values.tobytes()


async def _unimplemented(self: Any, request: Any, context: Any) -> Any:
    import grpc

    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        f"flywheel serves Predict, GetModelMetadata and GetModelStatus of the '{SIGNATURE}' signature; "
        "call Predict and read the class probabilities from its 'probabilities' output.",
    )


def _predict_handler(api: TFServingAPI) -> Any:
    """The handler of ``PredictionService/Predict``: a stream-unary method taking the request's bytes.

    A unary call is the same on the wire, so a stock client's ``Predict`` reaches it unchanged. grpc.aio
    reads and parses a unary method's request before its handler runs, so the batcher never saw a gRPC
    request coming; a stream-unary handler starts when the call's headers are in, and ``predict`` counts
    the call as arriving from then until it is queued: a batch waits for gRPC requests on their way as
    it does for REST bodies being read, and concurrent calls share model calls.
    """
    import grpc
    from tensorflow_serving.apis import predict_pb2

    async def predict(requests: Any, context: Any) -> Any:
        return await api.call("grpc_predict", context, lambda: api.predict(context))

    handler = grpc.stream_unary_rpc_method_handler(
        predict, request_deserializer=None, response_serializer=predict_pb2.PredictResponse.SerializeToString
    )

    class PredictHandler(grpc.GenericRpcHandler):
        def service(self, handler_call_details: Any) -> Any:
            return handler if handler_call_details.method == PREDICT_METHOD else None

    return PredictHandler()


def _servicers(api: TFServingAPI) -> tuple[Any, Any]:
    """The PredictionService and ModelService servicers (the generated bases answer UNIMPLEMENTED otherwise)."""
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        # Predict is answered by _predict_handler, registered ahead of this servicer
        async def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
            return await api.call("grpc_metadata", context, lambda: api.metadata(request, context))

        Classify = Regress = MultiInference = _unimplemented  # noqa: N815 - the proto's method names

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        async def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
            return await api.call("grpc_status", context, lambda: api.status(request, context))

        HandleReloadConfigRequest = _unimplemented  # noqa: N815

    return PredictionService(), ModelService()

"""A TF-Serving-compatible REST server for a model of the flywheel registry.

Endpoints (``<name>`` is the served model; any other name is a 404)::

    POST /v1/models/<name>:predict                  {"instances": [...]} or {"inputs": {...}}
    POST /v1/models/<name>/versions/<v>:predict     the same, on one version (loaded on demand)
    POST /v1/models/<name>:feedback                 late labels for a request id
    GET  /v1/models/<name>[/versions/<v>]           {"model_version_status": [...]}
    GET  /v1/models/<name>[/versions/<v>]/metadata  signature and feature contract
    GET  /v1/models/<name>/logs/<requests|feedback>?since=<epoch s>
                                                    the logs as JSON lines (for ``flywheel monitor --endpoint``)
    GET  /healthz  /readyz  /metrics

With ``grpc_port`` set (``flywheel serve`` sets 8500 unless ``--no-grpc``),
TF Serving's gRPC API serves next to it (``flywheel.serving.grpc_api``),
sharing this server's model store, batcher, input checks, metrics and log.

Responses keep TF Serving's shapes for this model's ``serving_default``
signature (one output, ``probabilities``): a row request gets
``{"predictions": [[p, ...], ...]}``, a columnar one ``{"outputs": [[...]]}``,
so an existing TF Serving client works unchanged. flywheel adds top-level
fields such a client ignores: ``classes`` (the predicted class name per
instance), ``class_names`` (the order of the probabilities),
``model_version`` and ``request_id`` (also in the ``X-Request-Id`` header;
a client may send its own id in that header). Errors are
``{"error": "..."}`` with a 4xx status for anything a client can cause.

aiohttp (not the stdlib ``http.server``): one event loop handles many
concurrent keep-alive connections without a thread each, which micro-batching
needs (requests must wait together), its HTTP parser is in C, and its runner
drains in-flight requests on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import math
import signal
import threading
import time
import uuid
from typing import Any, Awaitable, Callable

from flywheel.errors import FlywheelError
from flywheel.serving.config import ServeConfig
from flywheel.serving.documents import REQUEST_ID, feedback_records, metadata_document, read_spec
from flywheel.serving.errors import RequestError, ServingError
from flywheel.serving.guard import check_caller, require_json_content_type
from flywheel.serving.inputs import decode_json, parse_predict

LOG = logging.getLogger("flywheel.serving")
RECLAIM_DELAY_S = 2.0
RELOAD_WARNING_EVERY_S = 30.0
LOG_CHUNK_RECORDS = 2000
MAX_VERSION_DIGITS = 18
# The collector's thresholds in a serving process. With Python's (700, 10, 10) the objects of requests
# in flight at a young collection get promoted: under 500 req/s of open-loop load the unfrozen old
# generation grew by ~6,000 objects a second, generation-1 collections took 1-7 ms and generation-2 ones
# 18 ms and growing, on the event loop (measured in flywheel serve): each such pause is a p99 outlier. A young
# collection every 50,000 net allocations lets nearly every request's objects die young, so almost
# nothing is promoted; reference cycles made per request are rare, so memory stays bounded.
GC_THRESHOLD = (50_000, 20, 100)
_UNGUARDED_ROUTES = ("healthz", "readyz", "metrics")  # probes address the pod IP or any name; they reveal no data
_MAX_SHOWN_ROWS = 5
_NAME = r"{name:[^/:]+}"
_VERSION = r"{version:[0-9]+}"


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The outcome of one predict request: the model that answered, the checked request,
    its probabilities (float32, one row per instance) and the request id."""

    model: Any
    parsed: Any
    probabilities: Any
    request_id: str


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    import orjson
    from aiohttp import web

    return web.Response(
        body=orjson.dumps(data),  # never invalid JSON: a NaN would be written as null (predict refuses it first)
        status=status,
        content_type="application/json",
        headers=headers,
    )


class ModelServer:
    """The server: model store, predictor, request log, metrics and the aiohttp app.

    Use ``await start()`` / ``await stop()`` inside an event loop, ``serve()``
    for a blocking process that exits on SIGTERM, or
    ``flywheel.serving.background.BackgroundServer`` in tests.
    """

    def __init__(self, config: ServeConfig) -> None:
        from flywheel.registry import ModelRegistry
        from flywheel.serving.batching import Batcher, DirectPredictor
        from flywheel.serving.metrics import ServingMetrics
        from flywheel.serving.models import ModelStore, load_version
        from flywheel.serving.requestlog import PredictionLog

        self.config = config.check()
        self.metrics = ServingMetrics(config.model)
        registry = ModelRegistry(config.registry)
        self._private_cache: str | None = None
        if registry.remote:  # copies of the versions it serves, in a directory of its own (pruned as it swaps)
            from flywheel.registry_cache import process_cache_dir

            self._private_cache = process_cache_dir(registry.cache_dir)
            registry = ModelRegistry(config.registry, cache_dir=self._private_cache)
        self.store = ModelStore(
            registry,
            config.model,
            max_loaded=config.max_loaded_versions,
            loader=functools.partial(load_version, xla=config.xla, max_batch=config.max_batch_size),
            on_change=self._serving_changed,
        )
        if config.batching:
            self.predictor: Any = Batcher(
                max_batch_size=config.max_batch_size,
                max_wait_s=config.max_wait_ms / 1000.0,
                on_batch=self.metrics.observe_batch,
            )
        else:
            self.predictor = DirectPredictor(threads=config.predict_threads, on_batch=self.metrics.observe_batch)
        self.log = PredictionLog(
            config.home,
            config.model,
            sample_rate=config.log_sample_rate,
            max_bytes=config.log_max_bytes,
            retention_bytes=config.log_retention_bytes,
            retention_s=config.log_retention_s,
            max_queued_requests=config.log_queue_requests,
            on_written=lambda kind, n: self.metrics.logged.labels(config.model, kind).inc(n),
            on_dropped=lambda n: self.metrics.log_dropped.labels(config.model).inc(n),
        )
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="flywheel-model-watch", daemon=True)
        self._runner: Any = None
        self._stopping = False
        self._in_flight = 0
        self._evictions_reclaimed = 0
        self._swapped_at = 0.0
        self._failing_since: float | None = None  # monotonic start of a run of failed reload checks
        self._warned_at = 0.0
        self._grpc: Any = None
        self.port: int | None = None
        self.grpc_port: int | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> int:
        """Starts loading the serving version in the background and listens; returns the port."""
        from aiohttp import web

        if self.config.grpc_port is not None:
            from flywheel.serving.grpc_api import import_apis

            # TensorFlow's protos load TensorFlow: import them before the watch thread imports it too,
            # as two threads importing TensorFlow at once deadlock on its module locks.
            await asyncio.get_running_loop().run_in_executor(None, import_apis)
        self.predictor.start()
        self._watcher.start()
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._middleware])
        name, version = _NAME, _VERSION
        app.router.add_post(f"/v1/models/{name}:predict", self.predict, name="predict")
        app.router.add_post(f"/v1/models/{name}/versions/{version}:predict", self.predict, name="predict_version")
        app.router.add_post(f"/v1/models/{name}:feedback", self.feedback, name="feedback")
        app.router.add_get(f"/v1/models/{name}", self.model_status, name="status")
        app.router.add_get(f"/v1/models/{name}/versions/{version}", self.model_status, name="status_version")
        app.router.add_get(f"/v1/models/{name}/metadata", self.metadata, name="metadata")
        app.router.add_get(f"/v1/models/{name}/versions/{version}/metadata", self.metadata, name="metadata_version")
        app.router.add_get(f"/v1/models/{name}/logs/{{kind:requests|feedback}}", self.logs, name="logs")
        app.router.add_get("/healthz", self.healthz, name="healthz")
        app.router.add_get("/readyz", self.readyz, name="readyz")
        app.router.add_get("/metrics", self.prometheus, name="metrics")
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=self.config.shutdown_timeout_s,
            keepalive_timeout=self.config.idle_timeout_s,  # aiohttp also times the first request's head with it
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            self._stopping = True
            await self._runner.cleanup()
            self._runner = None
            self._shutdown_workers()
            raise ServingError(
                f"Cannot listen on {self.config.host}:{self.config.port} ({exc.strerror or exc}); "
                "pick another --port or stop the process that holds it."
            ) from exc
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the bound port when port=0
        if self.config.grpc_port is not None:
            from flywheel.serving.grpc_api import start_grpc

            try:
                self._grpc, self.grpc_port = await start_grpc(self, self.config.host, self.config.grpc_port)
            except ServingError:
                await self.stop()
                raise
        return self.port

    async def stop(self) -> None:
        """Stops accepting connections, finishes in-flight requests, flushes the logs."""
        if self._stopping:
            return
        self._stopping = True
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()  # no new connections from here on
        if self._grpc is not None:
            await self._grpc.stop(grace=self.config.shutdown_timeout_s)  # refuses new calls, finishes in-flight ones
        if self._runner is not None:
            # Drain before aiohttp's own shutdown: it stops reading sockets, so a request still
            # uploading its body would never finish; here every open connection still works.
            deadline = time.monotonic() + self.config.shutdown_timeout_s
            while self._in_flight > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await self._runner.cleanup()  # closes idle keep-alive connections
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown_workers)

    def _shutdown_workers(self) -> None:
        self._stop_watch.set()
        self.predictor.stop(timeout=self.config.shutdown_timeout_s)
        self.log.close()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        if self._private_cache is not None and not self._watcher.is_alive():
            import shutil

            shutil.rmtree(self._private_cache, ignore_errors=True)

    def _watch(self) -> None:
        if self.config.tf_threads:
            from flywheel.serving.models import set_tf_threads

            set_tf_threads(self.config.tf_threads)
        self._refresh()  # the first load, off the event loop
        if self.store.serving() is None:
            LOG.warning(
                "no version of model '%s' in %s yet; waiting for a push", self.config.model, self.config.registry
            )
        while not self._stop_watch.wait(self.config.poll_seconds):
            self._refresh()

    def _refresh(self) -> None:
        """One poll of the serving alias, then the collector's housekeeping.

        A full collection walks TensorFlow's ~400k long-lived objects and stalls
        every request for ~300 ms (measured), at random times. So after each
        swap everything alive is frozen (never scanned again); the memory of
        evicted versions (Keras graphs hold reference cycles) is reclaimed by
        one collection, ``RECLAIM_DELAY_S`` after the swap, when requests still
        running on the old version have finished.
        """
        try:
            if self.store.refresh():
                self._swapped_at = time.monotonic()
                gc.freeze()
        except (OSError, ValueError, FlywheelError) as exc:  # a half-written alias, a vanished dir, a store away
            self._reload_failed(exc)
        except Exception as exc:  # noqa: BLE001 - the watch thread is the only reloader: it must outlive any odd file
            self._reload_failed(exc, unexpected=True)
        else:
            if self._failing_since is not None:
                LOG.info("reload check works again after %.0f s of failures", time.monotonic() - self._failing_since)
                self._failing_since = None
        evictions = self.store.evictions
        if evictions != self._evictions_reclaimed and time.monotonic() - self._swapped_at >= RECLAIM_DELAY_S:
            self._evictions_reclaimed = evictions
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            LOG.info("reclaimed evicted model versions in %.0f ms", (time.perf_counter() - started) * 1000)

    def _reload_failed(self, exc: BaseException, *, unexpected: bool = False) -> None:
        """Counts a failed reload check; logs the first of a run of failures, then one line per
        ``RELOAD_WARNING_EVERY_S`` (an unreachable registry fails every poll until it is back)."""
        self.metrics.reload_errors.labels(self.config.model).inc()
        now = time.monotonic()
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if not (first or unexpected or now - self._warned_at >= RELOAD_WARNING_EVERY_S):
            return
        self._warned_at = now
        failing = "" if first else f" (failing for {now - self._failing_since:.0f} s)"
        if unexpected:
            LOG.error("reload check failed unexpectedly%s, retrying at the next poll", failing, exc_info=exc)
        else:
            LOG.warning("reload check failed%s, retrying at the next poll: %s", failing, exc)

    def _serving_changed(self, model: Any) -> None:
        self.metrics.serving_version(model.version)
        self.metrics.reloads.labels(self.config.model).inc()

    def ready(self) -> bool:
        return not self._stopping and self.store.serving() is not None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits until a version serves.

        Raises:
            ServingError: none loaded within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise ServingError(
                    f"No version of model '{self.config.model}' loaded within {timeout:.0f}s from "
                    f"{self.config.registry}: {self.store.status() or 'none in the registry'}."
                )
            await asyncio.sleep(0.05)

    # -- middleware --------------------------------------------------------------

    async def _middleware_impl(self, request: Any, handler: Callable) -> Any:
        from aiohttp import web

        started = time.perf_counter()
        route = request.match_info.route.name or "other"
        gauge = self.metrics.in_flight_now
        gauge.inc()
        self._in_flight += 1
        try:
            if route not in _UNGUARDED_ROUTES:
                check_caller(request, self.config)
            response = await handler(request)
        except RequestError as exc:
            response = _json({"error": str(exc)}, status=exc.status)
        except web.HTTPException as exc:  # unknown path (404), wrong method (405), body too large (413)
            response = _json({"error": f"{exc.reason}: {request.method} {request.path}"}, status=exc.status)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # noqa: BLE001 - one boundary: a bug answers 500 JSON and is logged, never a crash
            LOG.exception("internal error on %s %s", request.method, request.path)
            response = _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, status=500)
        finally:
            gauge.dec()
            self._in_flight -= 1
        if self._stopping:
            response.force_close()  # keep-alive clients reconnect elsewhere instead of reusing this connection
        self.metrics.observe_request(route.replace("_version", ""), response.status, time.perf_counter() - started)
        return response

    @property
    def _middleware(self) -> Callable:
        from aiohttp import web

        async def middleware(request: Any, handler: Callable) -> Any:
            return await self._middleware_impl(request, handler)

        return web.middleware(middleware)

    # -- handlers ----------------------------------------------------------------

    def _check_name(self, request: Any) -> None:
        self.check_model_name(request.match_info["name"])

    def check_model_name(self, name: str) -> None:
        """Raises RequestError (404) unless ``name`` is the served model."""
        if name != self.config.model:
            raise RequestError(
                f"Servable not found for request: Latest({name}); this server serves '{self.config.model}'.",
                status=404,
            )

    async def model_at(self, version: int | None) -> Any:
        """The loaded model of ``version`` (loaded on demand), or the serving one for None.

        Raises:
            RequestError: nothing serves yet (503), no such version (404), it cannot load (503).
        """
        if version is None:
            model = self.store.serving()
            if model is None:
                raise RequestError(
                    f"No version of model '{self.config.model}' is loaded yet; retry when /readyz says ready.",
                    status=503,
                )
            return model
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.store.get, version)

    async def _body(self, request: Any) -> bytes:
        from aiohttp import web

        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise RequestError(
                f"The request body has {request.content_length} bytes, over the limit of {limit}; "
                "send fewer instances per request (or raise --max-body-bytes).",
                status=413,
            )
        try:
            return await asyncio.wait_for(request.read(), timeout=self.config.body_timeout_s)
        except asyncio.TimeoutError as exc:
            raise RequestError(
                f"The request body did not arrive within {self.config.body_timeout_s:g} s; send it whole "
                "(or raise --body-timeout for slow clients).",
                status=408,
            ) from exc
        except web.HTTPRequestEntityTooLarge as exc:
            raise RequestError(
                f"The request body is over the limit of {limit} bytes; send fewer instances per request "
                "(or raise --max-body-bytes).",
                status=413,
            ) from exc

    async def run_predict(
        self,
        version: int | None,
        read_payload: Callable[[Any], Awaitable[Any]],
        request_id: str,
        mark: dict[str, bool] | None = None,
    ) -> Prediction:
        """One predict request of either API: checks, batched model call, request log, metrics.

        Args:
            version: The version asked for (None: the serving one).
            read_payload: Given the model that will answer, returns the request as a REST
                predict body (``{"inputs": ...}`` or ``{"instances": ...}``), checked by ``parse_predict``.
            request_id: The client's id (a new one when it is not a valid id).
            mark: The value of a ``predictor.arriving()`` block the caller opened before it read the
                request (gRPC); None opens one here, around the checks.

        Raises:
            RequestError: the request breaks a rule of ``flywheel.serving.inputs``, or no model answers.
        """
        received = time.time()
        arriving = self.predictor.arriving() if mark is None else contextlib.nullcontext(mark)
        with arriving as mark:  # lets the batcher wait for this request while it is checked
            model = await self.model_at(version)
            parsed = parse_predict(
                await read_payload(model), model.schema, ignore_unknown=self.config.ignore_unknown_features
            )
            probabilities = await self.predictor.predict(model, parsed.columns, parsed.size, mark)
        if not REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        _check_finite(probabilities, parsed)
        if self.log.sampled():
            self.log.predictions(request_id, received, model.version, parsed, probabilities, model.class_names)
        self.metrics.count_instances(model.version, parsed.size)
        return Prediction(model, parsed, probabilities, request_id)

    async def predict(self, request: Any) -> Any:
        """``POST /v1/models/<name>[/versions/<v>]:predict``."""
        self._check_name(request)

        async def read_payload(model: Any) -> Any:
            return decode_json(await self._body(request))

        done = await self.run_predict(_version_of(request), read_payload, request.headers.get("X-Request-Id", ""))
        model, parsed, probabilities, request_id = done.model, done.parsed, done.probabilities, done.request_id
        names = model.class_names
        classes = [names[i] for i in probabilities.argmax(axis=1).tolist()]
        body = {
            "outputs" if parsed.columnar else "predictions": probabilities.tolist(),
            "classes": classes,
            "class_names": list(names),
            "model_version": model.version,
            "request_id": request_id,
        }
        return _json(body, headers={"X-Request-Id": request_id})

    async def feedback(self, request: Any) -> Any:
        """``POST /v1/models/<name>:feedback`` with ``{"request_id", "labels": [...]}`` or
        ``{"request_id", "index", "label"}``; appends to the feedback log."""
        self._check_name(request)
        require_json_content_type(request)
        payload = decode_json(await self._body(request))
        model = self.store.serving()
        if model is None:
            raise RequestError("No version is loaded yet, so label names cannot be checked; retry later.", 503)
        records = feedback_records(payload, model.class_names, time.time())
        self.log.feedback(records)
        return _json({"request_id": records[0]["request_id"], "recorded": len(records)})

    async def model_status(self, request: Any) -> Any:
        """``GET /v1/models/<name>[/versions/<v>]``: TF Serving's GetModelStatusResponse."""
        self._check_name(request)
        version = _version_of(request)
        if version is None:
            return _json(self.status_document(None))
        loop = asyncio.get_running_loop()  # a version not in memory is looked up in the registry: off the loop
        return _json(await loop.run_in_executor(None, self.status_document, version))

    def status_document(self, version: int | None) -> dict[str, Any]:
        """TF Serving's GetModelStatusResponse (as JSON) of one version, or of every known one for None.

        Raises:
            RequestError: no version loaded yet, or no such version (404).
        """
        if version is None:
            entries = self.store.status()
            if not entries:
                raise RequestError(f"Model '{self.config.model}' has no loaded version yet.", status=404)
        else:
            entries = [self.store.version_status(version)]
        serving = self.store.serving()
        return {
            "model_version_status": [{k: v for k, v in e.items() if k != "serving"} for e in entries],
            "serving_version": None if serving is None else serving.version,
        }

    async def metadata(self, request: Any) -> Any:
        """``GET /v1/models/<name>[/versions/<v>]/metadata``: signature and feature contract."""
        self._check_name(request)
        version = _version_of(request)
        if version is None:
            return _json(self.metadata_for(None))
        loop = asyncio.get_running_loop()  # a version not in memory is read from the registry: off the loop
        return _json(await loop.run_in_executor(None, self.metadata_for, version))

    def metadata_for(self, version: int | None) -> dict[str, Any]:
        """TF Serving's GetModelMetadataResponse (as JSON) of a version (None: the serving one).

        Raises:
            RequestError: no version loaded yet, or no such version (404).
        """
        if version is None:
            serving = self.store.serving()
            if serving is None:
                raise RequestError(f"Model '{self.config.model}' has no loaded version yet.", status=404)
            spec, number, compilation = serving.spec, serving.version, serving.compilation
        else:
            number = version
            loaded = self.store.loaded(number)
            if loaded is not None:
                spec, compilation = loaded.spec, loaded.compilation
            else:
                spec = read_spec(self.store.registry, self.config.model, number)
                compilation = {"reason": "not loaded: chosen at load"}
        return metadata_document(self.config.model, number, spec, xla=compilation)

    async def logs(self, request: Any) -> Any:
        """``GET /v1/models/<name>/logs/<requests|feedback>?since=<epoch s>``: log records as JSON lines.

        What the monitor reads when it runs elsewhere (a CronJob): records with
        ``ts >= since`` (all without ``since``), oldest first, after everything
        queued so far is written. Files are read off the event loop.
        """
        from aiohttp import web

        from flywheel.serving.logs import log_dir, log_root, read_records

        self._check_name(request)
        if not self.config.logs_endpoint:
            raise RequestError(
                "The logs endpoint is off: it hands out every logged feature row. Start the server with "
                "--enable-logs-endpoint where a monitor reads the logs over HTTP (flywheel monitor --endpoint).",
                status=404,
            )
        since = _since(request.query.get("since"))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.log.flush)
        records = read_records(log_dir(log_root(self.config.home), self.config.model, request.match_info["kind"]), since=since)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        while True:
            chunk = await loop.run_in_executor(None, _json_lines, records, LOG_CHUNK_RECORDS)
            if not chunk:
                break
            await response.write(chunk)
        await response.write_eof()
        return response

    async def healthz(self, request: Any) -> Any:
        return _json({"status": "alive"})

    async def readyz(self, request: Any) -> Any:
        serving = self.store.serving()
        if self._stopping:
            return _json({"error": "shutting down"}, status=503)
        if serving is None:
            return _json({"error": f"no version of model '{self.config.model}' is loaded yet"}, status=503)
        return _json({"status": "ready", "model": self.config.model, "version": serving.version})

    async def prometheus(self, request: Any) -> Any:
        from aiohttp import web

        from flywheel.serving.metrics import CONTENT_TYPE

        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response


def _version_of(request: Any) -> int | None:
    """The ``<v>`` of a versioned path (digits by the route), or None on an unversioned one."""
    digits = request.match_info.get("version")
    if digits is None:
        return None
    if len(digits) > MAX_VERSION_DIGITS:
        raise RequestError(
            f"A model version is a whole number of at most {MAX_VERSION_DIGITS} digits; got one of "
            f"{len(digits)} digits. Ask GET /v1/models/<name> for the versions there are.",
            status=404,
        )
    return int(digits)


def _check_finite(probabilities: Any, parsed: Any) -> None:
    """Refuses outputs JSON cannot carry: NaN or infinite probabilities (extreme inputs overflow the model)."""
    import numpy as np

    if np.isfinite(probabilities).all():
        return
    finite = np.isfinite(probabilities).all(axis=1)
    bad = np.flatnonzero(~finite).tolist()
    shown = bad[:_MAX_SHOWN_ROWS]
    rows = parsed.rows()
    extremes = []
    for i in shown:
        numbers = [(k, v) for k, v in rows[i].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers:
            key, value = max(numbers, key=lambda kv: abs(kv[1]))
            extremes.append(f"instance {i}: {key}={value!r}")
    detail = f" (largest inputs: {'; '.join(extremes)})" if extremes else ""
    raise RequestError(
        f"The model's output for instance(s) {shown}{' ...' if len(bad) > len(shown) else ''} is not a finite "
        f"number: the input is too far outside the range the model was trained on{detail}. "
        "Send values in the range of the training data.",
        status=422,
    )


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        since = float(value)
    except ValueError:
        since = math.nan
    if not math.isfinite(since):
        raise RequestError(f"'since' must be a Unix time in seconds (e.g. since=1764300000.5); got {value!r}.")
    return since


def _json_lines(records: Any, limit: int) -> bytes:
    lines = []
    for record in records:
        lines.append(json.dumps(record, separators=(",", ":"), default=str))
        if len(lines) >= limit:
            break
    return "".join(line + "\n" for line in lines).encode()


def serve(config: ServeConfig, *, announce: Callable[[str], None] = print) -> int:
    """Runs the server until SIGTERM or SIGINT; in-flight requests finish first. Returns 0.

    Raises:
        ServingError: the port cannot be bound or an option is out of range.
    """

    gc.set_threshold(*GC_THRESHOLD)  # this process serves and nothing else (see GC_THRESHOLD)

    async def main() -> int:
        server = ModelServer(config)
        port = await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        mode = (
            f"batching up to {config.max_batch_size} instances, {config.max_wait_ms:g} ms wait"
            if config.batching
            else "no batching"
        )
        announce(f"Serving model '{config.model}' from {config.registry} on http://{config.host}:{port} ({mode})")
        if server.grpc_port is not None:
            announce(f"TF Serving gRPC API on {config.host}:{server.grpc_port} (PredictionService, ModelService)")
        if config.host not in ("127.0.0.1", "localhost", "::1"):
            announce(f"warning: listening on {config.host}, reachable from other machines; the API has no auth")
        ready_task = asyncio.ensure_future(_announce_ready(server, announce))
        await stop.wait()
        ready_task.cancel()
        announce("Shutting down: finishing in-flight requests")
        await server.stop()
        announce("Stopped")
        return 0

    return asyncio.run(main())


async def _announce_ready(server: ModelServer, announce: Callable[[str], None]) -> None:
    seen = None
    while True:
        model = server.store.serving()
        if model is not None and model is not seen:
            seen = model
            announce(f"Ready: version {model.version} serves (POST /v1/models/{model.name}:predict)")
        await asyncio.sleep(0.5)

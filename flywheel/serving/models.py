"""Model versions in memory: loading from the registry, and hot reload.

Models are loaded only from a ``flywheel.registry.ModelRegistry`` through
``flywheel.models.layers.load_model`` (Keras ``safe_mode=True``); nothing is unpickled.
A loaded version is called through one ``tf.function`` with a fixed input
signature (one 1-D tensor per raw feature): on this model that costs ~0.5 ms
per call at any batch size, where calling the Keras model eagerly costs
~6-9 ms and ``model.predict`` ~80-120 ms (measured on the penguin model).
That function is XLA-compiled when that measures faster at load
(``compile_fastest``; the penguin model's string inputs do not compile, so it
runs the plain function).

Which version serves follows the registry: the version named by the serving
alias (``serving.json``), or the newest version when there is no alias. The
server's watcher thread calls ``refresh`` to poll that; a new target version
is loaded and warmed up there, off the request path, then swapped in with one
reference assignment. Requests hold the
``LoadedModel`` they started with, so in-flight requests finish on the old
version.

The registry may be a directory or an object store: every read goes through
``ModelRegistry`` (``read_version_json``, ``local_version_dir``), and the
store keeps the registry's local copies down to the versions in memory or
loading (``ModelRegistry.prune_cache``). A load that failed because the store
did not answer (``registry.is_unreachable``) is retried at the next poll; one
that failed on the version's files waits ``retry_failed_s``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Any, Callable

from flywheel.errors import FlywheelError
from flywheel.models.features import MODEL_JSON
from flywheel.registry import is_unreachable
from flywheel.serving.errors import RequestError, ServingError
from flywheel.serving.inputs import FeatureSchema
from flywheel.storage import StorageError

LOG = logging.getLogger("flywheel.serving")
XLA_MODES = ("auto", "on", "off")
XLA_PROBE_BATCH = 64  # a typical batch of a busy server (timed at load; every shape to --max-batch-size compiles)
XLA_PROBE_CALLS = 15
XLA_MIN_GAIN = 0.9  # XLA serves only when it takes under 90% of the plain function's time


@dataclasses.dataclass(eq=False)
class LoadedModel:
    """One model version ready to predict.

    Attributes:
        name: Model name.
        version: Registry version.
        spec: The version's ``model.json``.
        schema: Its features (``FeatureSchema``).
        loaded_at: Unix time the load finished.
        predict_fn: Columns (feature -> 1-D array) to a probability matrix.
    """

    name: str
    version: int
    spec: dict[str, Any]
    schema: FeatureSchema
    loaded_at: float
    predict_fn: Callable[[dict[str, Any]], Any]
    compilation: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.schema.label_vocabulary

    def predict(self, columns: dict[str, Any]) -> Any:
        """Probabilities, shape (instances, classes), as a float32 numpy array."""
        return self.predict_fn(columns)


def load_version(
    registry: Any, name: str, version: int, *, xla: str = "auto", max_batch: int = XLA_PROBE_BATCH
) -> LoadedModel:
    """Loads and warms up one version of a model from the registry (``xla``, ``max_batch``: see
    ``compile_fastest``).

    The registry may be a directory or an object store: ``model.json`` is read
    through the storage layer and the Keras model from the registry's local
    copy of the version (``ModelRegistry.local_version_dir``).

    Raises:
        ServingError: the version has no readable ``model.json`` or Keras model.
        StorageError: the store cannot be reached now (``registry.is_unreachable``;
            a passing outage, retried at the next poll).
    """
    from flywheel.registry import is_unreachable

    spec, schema = read_contract(registry, name, version)
    try:
        net = registry.load_keras(name, version)
    except FlywheelError as exc:
        if is_unreachable(exc):
            raise
        raise ServingError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - Keras raises many types on a corrupt file; all mean "not loadable"
        raise ServingError(f"Version {version} of model '{name}' could not be loaded: {exc!r}") from exc
    predict_fn, compilation = compile_fastest(net, spec, schema, xla=xla, max_batch=max_batch)
    return LoadedModel(name, int(version), spec, schema, time.time(), predict_fn, compilation)


def read_contract(registry: Any, name: str, version: int) -> tuple[dict[str, Any], FeatureSchema]:
    """The ``model.json`` of a version and the ``FeatureSchema`` built from it.

    Raises:
        ServingError: the file is missing, not JSON, or not the shape train writes.
        StorageError: the store cannot be reached now.
    """
    from flywheel.registry import is_unreachable

    where = registry.version_file(name, version, MODEL_JSON)
    try:
        spec = registry.read_version_json(name, version, MODEL_JSON)
        if not isinstance(spec, dict):
            raise ValueError(f"it holds a JSON {type(spec).__name__}, not an object")
        schema = FeatureSchema.from_spec(spec)
    except (FlywheelError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if is_unreachable(exc):
            raise
        raise ServingError(
            f"Version {version} of model '{name}' has no usable {MODEL_JSON} at {where} ({exc!r}); "
            "push the output of train, which writes it."
        ) from exc
    return spec, schema


def compile_predict(net: Any, spec: dict[str, Any], *, jit_compile: bool = False) -> Callable[[dict[str, Any]], Any]:
    """A function from numpy columns to probabilities, traced once with a fixed signature.

    The traced concrete function is called directly with its flat list of
    tensors (``_flat_call``): that skips ``tf.function``'s argument matching and
    the concrete function's signature binding (on the penguin model a batch-1 call
    went from ~1.0 to ~0.6 ms, a batch-64 one from ~0.7 to ~0.35 ms, on a loaded machine).

    With ``jit_compile`` the function is compiled by XLA, which compiles once per
    input shape: batches are padded (repeating their last instance) to the next
    power of two, so at most ``log2(batch) + 1`` shapes are ever compiled, and the
    padding's rows are cut from the output. The first call of a model whose ops
    XLA cannot compile raises ``tf.errors.OpError``.
    """
    import tensorflow as tf

    if spec.get("modality") == "image":
        dtypes = {spec["image_input"]: tf.float32}
        shapes = {spec["image_input"]: (None, *spec["image_shape"])}
    else:
        dtypes = {
            feature: tf.string if info["dtype"] == "string" else tf.float32
            for feature, info in spec["features"].items()
        }
        shapes = {feature: (None,) for feature in dtypes}
    signature = {
        feature: tf.TensorSpec(shape=shapes[feature], dtype=dtype, name=feature) for feature, dtype in dtypes.items()
    }

    @tf.function(input_signature=[signature], jit_compile=jit_compile)
    def serve(inputs: dict[str, Any]) -> Any:
        return net(inputs, training=False)

    concrete = serve.get_concrete_function()
    predict = _flat_call(concrete, dtypes) or _structured_call(concrete, dtypes)

    def predict_padded(columns: dict[str, Any]) -> Any:
        size = len(next(iter(columns.values())))
        padded = 1 << max(0, size - 1).bit_length()
        if padded != size:
            columns = {name: _pad(column, padded) for name, column in columns.items()}
        return predict(columns)[:size]

    chosen = predict_padded if jit_compile else predict
    chosen.net = net  # keep the model alive as long as the function
    return chosen


def _structured_call(concrete: Any, dtypes: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    """Calls the concrete function with a dict of tensors (TensorFlow matches it to the signature)."""
    import tensorflow as tf

    constant = tf.constant

    def predict(columns: dict[str, Any]) -> Any:
        return concrete({name: constant(columns[name], dtype) for name, dtype in dtypes.items()}).numpy()

    return predict


def _flat_call(concrete: Any, dtypes: dict[str, Any]) -> Callable[[dict[str, Any]], Any] | None:
    """Calls the concrete function with its flat list of input tensors, skipping the structured
    signature's binding and casting (0.2-0.4 ms a call on the penguin model, see ``compile_predict``).

    ``ConcreteFunction._call_flat`` is TensorFlow's own next step after that binding; the order of
    the flat inputs is the flattened input signature's. None where this TensorFlow has no such
    method or the signature is not the plain dict of named tensors (the structured call serves then).
    """
    import tensorflow as tf

    call_flat = getattr(concrete, "_call_flat", None)
    try:
        specs = tf.nest.flatten(concrete.structured_input_signature)
        order = [spec.name for spec in specs]
        deferred = any(callable(x) for x in concrete._captured_inputs)  # noqa: SLF001 - resolved at each call
        captured = concrete.captured_inputs
    except (AttributeError, TypeError, ValueError):
        return None
    if call_flat is None or deferred or sorted(order) != sorted(dtypes):
        return None
    steps = [(name, dtypes[name]) for name in order]
    constant = tf.constant

    def predict(columns: dict[str, Any]) -> Any:
        return call_flat([constant(columns[name], dtype) for name, dtype in steps], captured).numpy()

    return predict


def _pad(column: Any, size: int) -> Any:
    """``column`` grown to ``size`` instances along its first axis by repeating its last instance."""
    import numpy as np

    return np.pad(column, [(0, size - len(column))] + [(0, 0)] * (column.ndim - 1), mode="edge")


def compile_fastest(
    net: Any, spec: dict[str, Any], schema: FeatureSchema, *, xla: str = "auto", max_batch: int = XLA_PROBE_BATCH
) -> tuple[Callable[[dict[str, Any]], Any], dict[str, Any]]:
    """The serving function, compiled by XLA where that pays, warmed up; and a record of the choice.

    ``xla``: ``"auto"`` times both compilations on typical inputs (batches of 1
    and ``XLA_PROBE_BATCH``, ``XLA_PROBE_CALLS`` calls each, interleaved) and
    serves XLA only when its calls take under ``XLA_MIN_GAIN`` of the plain
    ones' time; ``"on"`` serves XLA whenever it compiles; ``"off"`` never tries.
    Every padded batch shape up to ``max_batch`` (the server's ``--max-batch-size``)
    is compiled here, at load, so that no request waits for a compile.
    A model XLA cannot compile serves the plain function: one with string
    inputs is not tried (XLA has no string tensors), one whose ops fail to
    compile (``tf.errors.OpError`` on the first call) falls back. The record
    (shown in ``/v1/models/<name>/metadata``) holds ``jit_compile``, the
    ``reason`` and the timings.

    Raises:
        ServingError: ``xla`` is not one of auto, on, off.
    """
    import tensorflow as tf

    if xla not in XLA_MODES:
        raise ServingError(f"The 'xla' serving option must be one of {list(XLA_MODES)}. Got {xla!r} instead.")
    plain = compile_predict(net, spec)
    warm_up(plain, schema)
    if xla == "off":
        return plain, {"jit_compile": False, "reason": "XLA is off (xla='off')"}
    if schema.categorical:  # XLA has no string tensors: not worth a failed compile and TensorFlow's error log
        return plain, {
            "jit_compile": False,
            "reason": f"XLA cannot compile this model's ops: string inputs {list(schema.categorical)} (XLA has no "
            "string tensors)",
        }
    try:
        compiled = compile_predict(net, spec, jit_compile=True)
        for size in _buckets(max(max_batch, XLA_PROBE_BATCH)):  # every padded shape a batch can take, compiled now
            compiled(typical_columns(schema, size))
    except tf.errors.OpError as exc:
        first_line = str(exc).strip().splitlines()[0][:300]
        return plain, {"jit_compile": False, "reason": f"XLA cannot compile this model's ops: {first_line}"}
    if xla == "on":
        return compiled, {"jit_compile": True, "reason": "XLA is on (xla='on') and compiles this model"}
    plain_ms, xla_ms = _time_both(plain, compiled, schema)
    timings = {"plain_ms": round(plain_ms, 4), "xla_ms": round(xla_ms, 4)}
    if xla_ms < XLA_MIN_GAIN * plain_ms:
        return compiled, {"jit_compile": True, "reason": "XLA measured faster at load", **timings}
    return plain, {"jit_compile": False, "reason": "XLA measured no faster at load", **timings}


def _buckets(largest: int) -> list[int]:
    return [1 << k for k in range((largest - 1).bit_length() + 1)]


def _time_both(plain: Callable, compiled: Callable, schema: FeatureSchema) -> tuple[float, float]:
    """Median ms of a batch-1 plus a batch-``XLA_PROBE_BATCH`` call of each function, calls interleaved
    so both see the same machine load."""
    import statistics

    inputs = [typical_columns(schema, 1), typical_columns(schema, XLA_PROBE_BATCH)]
    spent: dict[Callable, list[float]] = {plain: [], compiled: []}
    for _ in range(XLA_PROBE_CALLS):
        for function in (plain, compiled):
            started = time.perf_counter()
            for columns in inputs:
                function(columns)
            spent[function].append((time.perf_counter() - started) * 1000)
    return statistics.median(spent[plain]), statistics.median(spent[compiled])


def set_tf_threads(threads: int) -> bool:
    """Sets TensorFlow's intra- and inter-op thread pools; False if TensorFlow already started.

    One thread each suits small models on a small host: the HTTP loop needs a
    core too, and a tiny graph gains nothing from a thread pool
    (on the penguin model a 64-row call drops from ~0.32 to ~0.22 ms).
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow has run ops in this process already; its pools are fixed
        return False
    return True


def warm_up(predict_fn: Callable[[dict[str, Any]], Any], schema: FeatureSchema) -> None:
    """Calls the model once on typical rows, so tracing happens before it serves."""
    predict_fn(typical_columns(schema, 2))


def typical_columns(schema: FeatureSchema, size: int) -> dict[str, Any]:
    """Model-ready columns of ``size`` instances: zeros, each category's first value and a missing one."""
    import numpy as np

    if schema.is_image:
        return {schema.image_input: np.zeros((size, *schema.image_shape), dtype=np.float32)}
    columns: dict[str, Any] = {name: np.zeros(size, dtype=np.float32) for name in schema.numeric}
    for name in schema.categorical:
        first = schema.vocabularies[name][0] if schema.vocabularies[name] else ""
        columns[name] = np.resize(np.array([first, ""], dtype=object), size)
    return columns


class ModelStore:
    """The versions of one model this server holds, and which one serves.

    Args:
        registry: A ``ModelRegistry``.
        name: The model to serve.
        max_loaded: Most versions kept in memory (the serving one always is);
            the least recently used other version is dropped first.
        loader: ``(registry, name, version) -> LoadedModel``; tests swap it.
        on_change: Called with the new serving ``LoadedModel`` after each swap.
        retry_failed_s: Seconds before a version that failed to load is tried again.
    """

    def __init__(
        self,
        registry: Any,
        name: str,
        *,
        max_loaded: int = 2,
        loader: Callable[[Any, str, int], LoadedModel] = load_version,
        on_change: Callable[[LoadedModel], None] | None = None,
        retry_failed_s: float = 30.0,
    ) -> None:
        registry.model_dir(name)  # a bad name fails now, with the registry's message
        self.registry = registry
        self.name = name
        self.max_loaded = max(1, int(max_loaded))
        self._loader = loader
        self._on_change = on_change
        self._serving: LoadedModel | None = None
        self._loaded: collections.OrderedDict[int, LoadedModel] = collections.OrderedDict()
        self._loading: set[int] = set()
        self.evictions = 0  # versions dropped from memory so far
        self._failed: dict[int, str] = {}
        self._failed_at: dict[int, float] = {}  # monotonic time of the last failed load, per version
        self.retry_failed_s = float(retry_failed_s)
        self._lock = threading.Lock()
        self._load_locks: dict[int, threading.Lock] = {}

    # -- reading -------------------------------------------------------------

    def serving(self) -> LoadedModel | None:
        """The version that answers requests without a version, or None before the first load."""
        return self._serving

    def target_version(self) -> int | None:
        """The version that should serve now: the alias, else the newest version, else None.

        Raises:
            FlywheelError: the alias (``serving.json``) is damaged.
        """
        version = self.registry.serving_version(self.name)
        if version is not None:
            return version
        versions = self.registry.versions(self.name)
        return versions[-1] if versions else None

    def get(self, version: int) -> LoadedModel:
        """A version, loaded now if needed (blocking; call it off the event loop).

        Raises:
            RequestError: the version is not in the registry (404) or cannot be loaded (503).
        """
        current = self._serving
        if current is not None and current.version == version:
            return current
        with self._lock:
            model = self._loaded.get(version)
            if model is not None:
                self._loaded.move_to_end(version)
                return model
        try:
            versions = self.registry.versions(self.name)
            if version not in versions:
                raise RequestError(
                    f"Model '{self.name}' has no version {version}; versions in the registry: {versions or 'none'}.",
                    status=404,
                )
            return self._load(version)
        except RequestError:
            raise
        except (ServingError, StorageError) as exc:
            raise RequestError(str(exc), status=503) from exc

    def loaded(self, version: int) -> LoadedModel | None:
        """The version if it is in memory (never loads it)."""
        current = self._serving
        if current is not None and current.version == version:
            return current
        with self._lock:
            return self._loaded.get(version)

    def status(self) -> list[dict[str, Any]]:
        """One entry per version this server knows about, serving version first."""
        with self._lock:
            loaded = dict(self._loaded)
            loading = set(self._loading)
            failed = dict(self._failed)
        serving = self._serving
        entries = []
        for version in sorted(set(loaded) | loading | set(failed), reverse=True):
            if version in loaded:
                state, code, message = "AVAILABLE", "OK", ""
            elif version in loading:
                state, code, message = "LOADING", "OK", ""
            else:
                state, code, message = "END", "UNKNOWN", failed[version]
            entries.append(
                {
                    "version": str(version),
                    "state": state,
                    "status": {"error_code": code, "error_message": message},
                    "serving": serving is not None and serving.version == version,
                }
            )
        entries.sort(key=lambda e: not e["serving"])  # stable: the serving version first, the rest descending
        return entries

    def version_status(self, version: int) -> dict[str, Any]:
        """The status entry of one version.

        Raises:
            RequestError: the version is neither loaded nor in the registry (404).
        """
        for entry in self.status():
            if entry["version"] == str(version):
                return entry
        try:
            versions = self.registry.versions(self.name)
        except StorageError as exc:
            raise RequestError(f"The registry cannot be reached now; retry later ({exc}).", status=503) from exc
        if version in versions:
            return {
                "version": str(version),
                "state": "END",
                "status": {
                    "error_code": "OK",
                    "error_message": "in the registry but not loaded; a predict request to this version loads it",
                },
                "serving": False,
            }
        raise RequestError(
            f"Model '{self.name}' has no version {version}; versions in the registry: {versions or 'none'}.",
            status=404,
        )

    # -- changing ------------------------------------------------------------

    def refresh(self) -> bool:
        """Loads and swaps in the target version if it changed; True when a swap happened.

        A version that failed to load is retried after ``retry_failed_s``
        seconds (a file may have been fixed by hand); until then, and if it
        fails again, the old version keeps serving.

        Raises:
            ServingError: the target version failed to load now (the old version keeps serving).
            FlywheelError: the alias is damaged (the old version keeps serving).
        """
        target = self.target_version()
        current = self._serving
        if target is None or (current is not None and current.version == target):
            return False
        with self._lock:
            failed_at = self._failed_at.get(target)
        if failed_at is not None and time.monotonic() - failed_at < self.retry_failed_s:
            return False
        try:
            model = self._load(target, evict=False)  # evicting now could drop the version about to serve
        except ServingError as exc:
            raise ServingError(f"keeping version {None if current is None else current.version}: {exc}") from exc
        self._serving = model  # one assignment: requests see the old or the new version, never a mix
        self._evict()
        LOG.info("serving model '%s' version %s", self.name, model.version)
        if self._on_change is not None:
            self._on_change(model)
        return True

    def _load(self, version: int, *, evict: bool = True) -> LoadedModel:
        with self._lock:
            lock = self._load_locks.setdefault(version, threading.Lock())
        with lock:  # one load per version at a time; later callers reuse the result
            with self._lock:
                if version in self._loaded:
                    return self._loaded[version]
                self._loading.add(version)
            failed = False
            try:
                model = self._loader(self.registry, self.name, version)
            except Exception as exc:  # noqa: BLE001 - a loader bug or an odd file must not escape as a crash
                failed = True
                passing = is_unreachable(exc)  # the store did not answer: retried at the next poll, not in 30 s
                error = exc if passing or isinstance(exc, ServingError) else ServingError(
                    f"Version {version} of model '{self.name}' could not be loaded: {type(exc).__name__}: {exc}"
                )
                with self._lock:
                    self._failed[version] = str(error)
                    if not passing:
                        self._failed_at[version] = time.monotonic()
                if error is exc:
                    raise
                raise error from exc
            finally:
                with self._lock:
                    self._loading.discard(version)
                if failed:
                    self._prune_cache()  # a version that failed to load keeps no local copy
            with self._lock:
                self._failed.pop(version, None)
                self._failed_at.pop(version, None)
                self._loaded[version] = model
            if evict:
                self._evict()
            return model

    def _evict(self) -> None:
        with self._lock:
            serving = None if self._serving is None else self._serving.version
            while len(self._loaded) > self.max_loaded:
                oldest = next((v for v in self._loaded if v != serving), None)
                if oldest is None:
                    break
                del self._loaded[oldest]
                self.evictions += 1
        self._prune_cache()

    def _prune_cache(self) -> None:
        """Drops local copies (object-store registries) of every version neither in memory nor loading."""
        with self._lock:
            keep = set(self._loaded) | set(self._loading)
        if self._serving is not None:
            keep.add(self._serving.version)
        try:
            dropped = self.registry.prune_cache(self.name, keep)
        except OSError as exc:  # a cache directory that cannot be listed must not stop a reload
            LOG.warning("could not prune the local copies of model '%s': %s", self.name, exc)
            return
        if dropped:
            LOG.info("dropped local copies of model '%s' versions %s", self.name, dropped)

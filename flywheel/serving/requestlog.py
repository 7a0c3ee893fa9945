"""Writing the request and feedback logs off the request path.

Handlers never block on the log and never touch the disk. A predict request's
line (``request_line``: the format of ``flywheel.serving.logs``, the contract
the monitor reads, one line per request with its instances as columns) is
encoded on the event loop right after the handler has answered (a callback
queued behind it: the loop has nothing to do then but wait for the next
requests) and put on a queue; called off an event loop, the writer thread
encodes it. Encoding in the writer thread took the GIL from the event loop
in the middle of its rounds, a batch of lines at a time (four gRPC clients
served ~5% more with the encoding on the loop). One writer thread drains the
queue and appends the lines with ``JsonlWriter`` in batches (after a first
item it gathers for ``GATHER_S``, so a busy server wakes the writer ~20 times
a second, not once per request).
``close`` writes what is queued, then stops: nothing queued is lost on a clean shutdown.

The queue is bounded at ``max_queued_requests`` predict requests (a disk slower
than the traffic must not grow the server's memory without end). When it is
full, a request's log lines are dropped (the request is answered as usual),
counted through ``on_dropped`` (``flywheel_serving_log_dropped_requests``) and
reported in a warning at most every ``DROP_WARNING_S`` seconds. Feedback is
never dropped: it is rare and carries labels no one can send again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from typing import Any, Callable

from flywheel.serving.logs import FEEDBACK, REQUESTS, line, log_dir, log_root, open_writer
from flywheel.storage import StorageError

LOG = logging.getLogger("flywheel.serving")
_STOP = object()
_FLUSH = "flush"  # write and ship what came before, then answer
_BARRIER = "barrier"  # write what came before, then answer
_ENCODED = "encoded"  # (a request's line encoded on the event loop, its records)
_DRAIN_MAX = 4096
DROP_WARNING_S = 10.0
GATHER_S = 0.05  # the writer waits this long after a first request so that lines are written in batches


class PredictionLog:
    """Sampled prediction lines and feedback lines for one model.

    Args:
        home_root: The flywheel home; logs go to ``<home>/serving/<model>/...``, or under
            ``$FLYWHEEL_SERVING_LOG_URI`` when set (``logs.log_root``).
        model: Model name.
        sample_rate: Share of predict requests whose instances are logged (0..1);
            a request is logged whole or not at all. Feedback is always logged.
        max_bytes: Rotation size of each log file.
        retention_bytes: Most bytes kept per log directory (0: no limit); oldest files go first.
        retention_s: Files last written longer ago than this are deleted (0: kept forever).
        on_written: Called with (log kind, lines) after each write.
        seed: Seeds the sampling (tests); None draws from the OS.
        max_queued_requests: Most predict requests queued for the writer; more are dropped.
        on_dropped: Called with 1 for each predict request whose lines were dropped.
    """

    def __init__(
        self,
        home_root: str,
        model: str,
        *,
        sample_rate: float = 1.0,
        max_bytes: int = 16 * 1024 * 1024,
        retention_bytes: int = 0,
        retention_s: float = 0.0,
        on_written: Callable[[str, int], None] | None = None,
        seed: int | None = None,
        max_queued_requests: int = 10000,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.sample_rate = float(sample_rate)
        self.requests_dir = log_dir(log_root(home_root), model, REQUESTS)
        self.feedback_dir = log_dir(log_root(home_root), model, FEEDBACK)
        self._max_bytes = max_bytes
        self._retention = {"retention_bytes": retention_bytes, "retention_s": retention_s}
        self._writers: dict[str, Any] = {}
        self._on_written = on_written
        self._random = random.Random(seed)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.max_queued_requests = int(max_queued_requests)
        self._on_dropped = on_dropped
        self.dropped = 0  # predict requests whose log lines were dropped so far
        self._warned_at = -DROP_WARNING_S
        self._hurry = threading.Event()  # set by flush and close: write now, without gathering
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop that last encoded a line
        self._thread = threading.Thread(target=self._run, name="flywheel-request-log", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether the next predict request is logged."""
        return self.sample_rate >= 1.0 or (self.sample_rate > 0.0 and self._random.random() < self.sample_rate)

    def predictions(
        self,
        request_id: str,
        ts: float,
        version: int,
        parsed: Any,
        probabilities: Any,
        class_names: tuple[str, ...],
    ) -> None:
        """Logs one request's instances (``parsed`` is an ``inputs.ParsedRequest``): encoded on the
        running event loop after the current callbacks, or by the writer off a loop; dropped when
        ``max_queued_requests`` items wait already (see the module docstring)."""
        if self._queue.qsize() >= self.max_queued_requests:
            self._drop()
            return
        record = (request_id, ts, version, parsed, probabilities, class_names)
        loop = _running_loop()
        if loop is None:  # no event loop in this thread: the writer encodes it
            self._queue.put((REQUESTS, record))
        else:
            self._loop = loop
            loop.call_soon(self._encode, record)

    def _encode(self, record: tuple[Any, ...]) -> None:
        encoded = self._line(record)
        if encoded is not None:
            self._queue.put((_ENCODED, encoded))

    def _line(self, record: tuple[Any, ...]) -> tuple[bytes, int] | None:
        """(a request's line, its records: one per instance); None, counted as dropped, when it cannot be
        encoded (on the event loop or in the writer: neither may die of one request)."""
        try:
            return request_line(self.model, *record), record[3].size
        except Exception:  # noqa: BLE001 - see above
            LOG.exception("could not encode the request log line of request %s", record[0])
            self._count_dropped()
            return None

    def _count_dropped(self) -> None:
        self.dropped += 1
        if self._on_dropped is not None:
            self._on_dropped(1)

    def _drop(self) -> None:
        self._count_dropped()
        now = time.monotonic()
        if now - self._warned_at >= DROP_WARNING_S:
            self._warned_at = now
            LOG.warning(
                "the request log's writer is %d requests behind; dropping log lines (%d requests so far). "
                "Give the log a faster disk, or lower --log-sample-rate.",
                self.max_queued_requests,
                self.dropped,
            )

    def feedback(self, records: list[dict[str, Any]]) -> None:
        """Queues feedback lines, already in the contract's format."""
        self._queue.put((FEEDBACK, records))

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until everything logged so far is written (and shipped, to an object store); False on
        timeout. Lines the event loop has yet to encode (a request just answered) are included."""
        return self._wait_for_writer(_FLUSH, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Writes what was logged (as ``flush`` does, lines yet to encode included), ships and closes the
        files and stops the writer thread."""
        if not self._thread.is_alive():
            return
        self._wait_for_writer(_BARRIER, timeout)
        self._hurry.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _wait_for_writer(self, kind: str, timeout: float) -> bool:
        """Queues a marker the writer answers once it has written what came before it; from another thread
        than the event loop that encodes the lines, the marker goes through that loop, behind the lines
        it has yet to encode. True when the writer answered within ``timeout``."""
        done = threading.Event()
        marker = (kind, done)
        self._hurry.set()
        loop = self._loop
        if loop is not None and loop.is_running() and _running_loop() is not loop:
            try:
                loop.call_soon_threadsafe(self._queue.put, marker)
            except RuntimeError:  # the loop closed meanwhile: it has nothing left to encode
                self._queue.put(marker)
        else:  # no loop, or this thread's own (it cannot wait for itself)
            self._queue.put(marker)
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            if items[0] is not _STOP and items[0][0] not in (_FLUSH, _BARRIER):
                self._hurry.wait(GATHER_S)  # let more requests queue: one write, one wake-up for many
            self._hurry.clear()
            while len(items) < _DRAIN_MAX:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            chunks: dict[str, list[bytes]] = {REQUESTS: [], FEEDBACK: []}
            counts = {REQUESTS: 0, FEEDBACK: 0}
            flushed, passed = [], []
            for item in items:
                if item is _STOP:
                    stop = True
                elif item[0] == _FLUSH:
                    flushed.append(item[1])
                elif item[0] == _BARRIER:
                    passed.append(item[1])
                elif item[0] in (_ENCODED, REQUESTS):
                    encoded = item[1] if item[0] == _ENCODED else self._line(item[1])
                    if encoded is not None:
                        chunks[REQUESTS].append(encoded[0])
                        counts[REQUESTS] += encoded[1]
                else:
                    chunks[FEEDBACK].extend(line(record) for record in item[1])
                    counts[FEEDBACK] += len(item[1])
            for kind, parts in chunks.items():
                if parts:
                    self._write(kind, b"".join(parts), counts[kind])
            if flushed:  # a writer to an object store ships its file now
                for writer in self._writers.values():
                    try:
                        getattr(writer, "ship", lambda: None)()
                    except StorageError as exc:  # kept in the spool; the next shipment retries
                        LOG.error("could not ship the log to %s: %s", writer.directory, exc)
            for event in flushed + passed:
                event.set()
            if stop:
                for writer in self._writers.values():
                    try:
                        writer.close()
                    except StorageError as exc:  # the spool file stays on local disk
                        LOG.error("could not ship the log to %s: %s", writer.directory, exc)
                return

    def _write(self, kind: str, data: bytes, count: int) -> None:
        try:
            writer = self._writers.get(kind)
            if writer is None:
                directory = self.requests_dir if kind == REQUESTS else self.feedback_dir
                writer = self._writers[kind] = open_writer(directory, max_bytes=self._max_bytes, **self._retention)
            writer.write_lines(data)
        except (OSError, StorageError) as exc:  # a full disk or an unreachable store must not stop serving
            LOG.error("could not write %d %s log line(s): %s", count, kind, exc)
            return
        if self._on_written is not None:
            self._on_written(kind, count)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def request_line(
    model: str,
    request_id: str,
    ts: float,
    version: int,
    parsed: Any,
    probabilities: Any,
    class_names: tuple[str, ...],
) -> bytes:
    """One request's line of the request log (``flywheel.serving.logs``: a request line holds the
    request's instances as columns), encoded.

    One ``orjson.dumps`` of the request: numpy columns (a gRPC tensor's, the probabilities) are
    written by orjson itself, with no Python work per instance. Encoding holds the GIL, which the
    event loop needs too: a line per instance cost ~120 µs of it per 64-row request, this ~45 µs
    (benchmarks/RESULTS.md, "Serving"). What orjson cannot encode
    (an integer beyond 64 bits among the features) goes through ``logs.line``'s stdlib fallback.
    """
    import orjson

    predictions = list(map(class_names.__getitem__, probabilities.argmax(axis=1).tolist()))
    record = {
        "request_id": request_id,
        "ts": ts,
        "model": model,
        "version": version,
        "instances": parsed.size,
        "features": _sent_columns(parsed),
        "predictions": predictions,
        "probabilities": probabilities,
    }
    try:
        return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return line(_plain(record))


def _sent_columns(parsed: Any) -> dict[str, Any]:
    """The request's features as sent, a column per feature: lists, or a gRPC tensor's array (orjson
    writes numeric arrays itself, at any depth; anything else it cannot write takes the fallback)."""
    if parsed.sent_columns is not None:
        return parsed.sent_columns
    rows = parsed.sent_rows or []
    return {name: [row[name] for row in rows] for name in (rows[0] if rows else ())}


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays (at any depth of dicts and lists) as lists, for the stdlib encoder."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value

"""Writing the request and feedback logs off the request path.

Handlers only put a tuple on a queue (never blocks, never touches the disk);
one writer thread drains the queue, encodes the lines in the format of
``flywheel.serving.logs`` (the contract the monitor reads; ``request_lines``
writes a request's lines without a record dict per instance) and appends them
with ``JsonlWriter`` in batches (after a first item it gathers for ``GATHER_S``,
so a busy server wakes the writer ~20 times a second, not once per request).
``close`` writes what is queued, then stops: nothing queued is lost on a clean shutdown.

The queue is bounded at ``max_queued_requests`` predict requests (a disk slower
than the traffic must not grow the server's memory without end). When it is
full, a request's log lines are dropped (the request is answered as usual),
counted through ``on_dropped`` (``flywheel_serving_log_dropped_requests``) and
reported in a warning at most every ``DROP_WARNING_S`` seconds. Feedback is
never dropped: it is rare and carries labels no one can send again.
"""

from __future__ import annotations

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
        """Queues one request's instances (``parsed`` is an ``inputs.ParsedRequest``); drops them when
        ``max_queued_requests`` items wait already (see the module docstring)."""
        if self._queue.qsize() >= self.max_queued_requests:
            self._drop()
            return
        self._queue.put((REQUESTS, (request_id, ts, version, parsed, probabilities, class_names)))

    def _drop(self) -> None:
        self.dropped += 1
        if self._on_dropped is not None:
            self._on_dropped(1)
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
        """Waits until everything queued so far is written; False on timeout."""
        done = threading.Event()
        self._hurry.set()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued, closes the files and stops the writer thread."""
        self._hurry.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            if items[0] is not _STOP and items[0][0] != "flush":
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
            flushed = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif item[0] == "flush":
                    flushed.append(item[1])
                elif item[0] == REQUESTS:
                    data, count = request_lines(self.model, *item[1])
                    chunks[REQUESTS].append(data)
                    counts[REQUESTS] += count
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
            for event in flushed:
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


def request_lines(
    model: str,
    request_id: str,
    ts: float,
    version: int,
    parsed: Any,
    probabilities: Any,
    class_names: tuple[str, ...],
) -> tuple[bytes, int]:
    """One request's log lines, encoded, and how many: the bytes ``line`` writes for each of
    ``_request_records``, built without Python work per instance where the request allows it.

    A tabular request (numbers and strings, the same features in the same order in every instance)
    is encoded a column at a time (``_column_lines``: each column's values encoded in one call, the
    request's lines formatted in one ``bytes %`` operation); anything else (an image, instances whose
    features come in different orders) goes through ``_row_lines``. Whatever orjson cannot encode (an
    integer beyond 64 bits among the features) goes through ``line`` record by record. The writer
    thread holds the GIL while it encodes, so at high request rates this cost is taken from the
    event loop (64-row gRPC requests: ~140 µs per request record by record, see benchmarks/RESULTS.md).
    """
    import orjson

    try:
        data = _column_lines(model, request_id, ts, version, parsed, probabilities, class_names)
        if data is None:
            data = _row_lines(model, request_id, ts, version, parsed, probabilities, class_names)
    except orjson.JSONEncodeError:
        records = _request_records(model, request_id, ts, version, parsed, probabilities, class_names)
        return b"".join([line(record) for record in records]), len(records)
    return data, parsed.size


def _shared_parts(model: str, request_id: str, ts: float, version: int, class_names: tuple[str, ...]) -> tuple:
    """The encoded pieces every line of a request shares: (before the index, index to features, one
    ``"prediction"`` to ``"probabilities":[`` piece per class)."""
    import orjson

    dumps = orjson.dumps
    head = b'{"request_id":' + dumps(request_id) + b',"index":'
    middle = b"".join(
        (b',"ts":', dumps(ts), b',"model":', dumps(model), b',"version":', dumps(version), b',"features":')
    )
    winners = [b',"prediction":' + dumps(name) + b',"probabilities":[' for name in class_names]
    return head, middle, winners


def _probability_rows(probabilities: Any) -> list[bytes]:
    """Each instance's probabilities, encoded (all at once: numbers only, so the rows split at ``],[``)."""
    import orjson

    return orjson.dumps(probabilities.tolist())[2:-2].split(b"],[")


def _row_lines(
    model: str, request_id: str, ts: float, version: int, parsed: Any, probabilities: Any, class_names: tuple
) -> bytes:
    """The lines instance by instance: one ``orjson.dumps`` of each instance's features."""
    import orjson

    dumps = orjson.dumps
    head, middle, winners = _shared_parts(model, request_id, ts, version, class_names)
    values = _probability_rows(probabilities)
    parts = []
    for i, (row, winner) in enumerate(zip(parsed.rows(), probabilities.argmax(axis=1).tolist())):
        parts += (head, b"%d" % i, middle, dumps(row, default=str), winners[winner], values[i], b"]}\n")
    return b"".join(parts)


def _column_lines(
    model: str, request_id: str, ts: float, version: int, parsed: Any, probabilities: Any, class_names: tuple
) -> bytes | None:
    """The lines of a tabular request a column at a time; None when the request is not one.

    A number column's values are encoded in one ``orjson.dumps`` of the list and split at the commas
    (a number, or null for a missing one, has none); a string column's distinct values are encoded once
    each. One ``bytes`` template of a line (its shared parts, with ``%`` escaped) is repeated for the
    request's instances and filled in one ``%`` operation: no Python code runs per instance.
    """
    import itertools

    import orjson

    dumps = orjson.dumps
    columns = parsed.columns
    names = _feature_order(parsed)
    if names is None or any(getattr(columns.get(name), "ndim", 0) != 1 for name in names):
        return None
    size = parsed.size
    cells = []
    for name in names:
        sent = _sent_column(parsed, name)
        if columns[name].dtype.kind == "f":  # checked numbers or null: no commas inside a value
            tokens = dumps(sent)[1:-1].split(b",")
        else:  # checked strings or null
            encoded = {value: dumps(value) for value in set(sent)}
            tokens = list(map(encoded.__getitem__, sent))
        if len(tokens) != size:
            return None
        cells.append(tokens)
    head, middle, winners = _shared_parts(model, request_id, ts, version, class_names)
    def literal(text: bytes) -> bytes:  # a fixed part of the template: its % signs are not placeholders
        return text.replace(b"%", b"%%")

    features = b",".join(literal(dumps(name)) + b":%s" for name in names)
    template = literal(head) + b"%d" + literal(middle) + b"{" + features + b"}%s%s]}\n"
    chosen = map(winners.__getitem__, probabilities.argmax(axis=1).tolist())
    values = itertools.chain.from_iterable(zip(range(size), *cells, chosen, _probability_rows(probabilities)))
    return (template * size) % tuple(values)


def _feature_order(parsed: Any) -> list[str] | None:
    """The features in the order the instances were sent; None when instances differ in their order."""
    if parsed.sent_columns is not None:
        return list(parsed.sent_columns)
    rows = parsed.sent_rows or []
    order = tuple(rows[0]) if rows else ()
    return list(order) if all(map(order.__eq__, map(tuple, rows))) else None


def _sent_column(parsed: Any, name: str) -> list[Any]:
    """One feature's values as sent (a gRPC tensor's array as Python numbers)."""
    if parsed.sent_columns is not None:
        values = parsed.sent_columns[name]
        return values.tolist() if hasattr(values, "tolist") else list(values)
    return [row[name] for row in parsed.sent_rows]


def _request_records(
    model: str,
    request_id: str,
    ts: float,
    version: int,
    parsed: Any,
    probabilities: Any,
    class_names: tuple[str, ...],
) -> list[dict[str, Any]]:
    rows = parsed.rows()
    winners = probabilities.argmax(axis=1).tolist()
    values = probabilities.tolist()
    return [
        {
            "request_id": request_id,
            "index": i,
            "ts": ts,
            "model": model,
            "version": version,
            "features": rows[i],
            "prediction": class_names[winners[i]],
            "probabilities": values[i],
        }
        for i in range(len(rows))
    ]

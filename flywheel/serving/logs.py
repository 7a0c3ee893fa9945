"""The request and feedback logs: what serving writes and the monitor reads.

Layout under the project home::

    <home>/serving/<model>/requests/<UTC yyyymmdd-HHMMSS>-<replica>-<pid>-<seq>.jsonl   sampled predictions, rotated
    <home>/serving/<model>/feedback/<UTC yyyymmdd-HHMMSS>-<replica>-<pid>-<seq>.jsonl   late ground-truth labels

One JSON object per line, append-only; a file is never rewritten. A request
line holds one predict request, its instances as columns (one line per request,
as TF Serving logs a ``PredictionLog`` per request)::

    {"request_id": "...", "ts": 1764300000.1, "model": "penguins", "version": 2,
     "instances": 2, "features": {"island": ["Biscoe", "Dream"], ...},
     "predictions": ["Gentoo", "Adelie"], "probabilities": [[0.01, 0.02, 0.97], [0.9, 0.05, 0.05]]}

Readers (``read_records``, ``parse_lines``) hand out one record per instance,
the request's fields with that instance's ``index``, ``features``,
``prediction`` and ``probabilities``::

    {"request_id": "...", "index": 0, "ts": 1764300000.1, "model": "penguins",
     "version": 2, "features": {"island": "Biscoe", ...},
     "prediction": "Gentoo", "probabilities": [0.01, 0.02, 0.97]}

which is also how request lines were written before (a line per instance;
such lines are read as they are).

A feedback line::

    {"request_id": "...", "index": 0, "ts": 1764300100.0, "label": "Gentoo"}

Shared storage (several replicas, a monitor elsewhere): with
``FLYWHEEL_SERVING_LOG_URI`` set (``s3://bucket/logs``, or a ReadWriteMany
mount) the logs go to ``<uri>/serving/<model>/<kind>/`` instead of the home,
one file per replica and UTC hour::

    <uri>/serving/<model>/requests/<yyyymmdd-HH>-<replica>.jsonl

The replica id is ``POD_NAME``, else ``HOSTNAME``, else the host name. On an
object store (no append) a replica appends to a local spool file and ships
the whole file (one atomic PUT) every ``ship_interval_s``, on ``flush`` and
when the hour or the process ends; a restarted replica first copies its
shipped file back, so nothing already shipped is lost. Readers
(``read_records``) list every replica's files of a directory or prefix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import tempfile
import threading
import time
from typing import Any, Iterable, Iterator

from flywheel import storage
from flywheel.names import check_name

REQUESTS = "requests"
FEEDBACK = "feedback"
LOG_URI_ENV = "FLYWHEEL_SERVING_LOG_URI"
SHIP_INTERVAL_S = 30.0


def log_root(home_root: str) -> str:
    """Where the logs live: ``$FLYWHEEL_SERVING_LOG_URI`` when set (shared storage), else the home."""
    return os.environ.get(LOG_URI_ENV) or home_root


def log_dir(home_root: str, model: str, kind: str) -> str:
    """``<root>/serving/<model>/<kind>`` (``root``: a home, a mount or an object-store URI)."""
    return storage.join(home_root, "serving", check_name("model", model), kind)


def replica_id() -> str:
    """This replica's name in log file names: the pod name, else the host name (file-name safe)."""
    raw = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.") or "replica"


def open_writer(directory: str, **options: Any) -> Any:
    """A log writer for ``directory``: ``JsonlWriter`` locally, ``ReplicaLogWriter`` on an object store."""
    if storage.is_object_uri(directory):
        return ReplicaLogWriter(directory)
    return JsonlWriter(directory, **options)


class JsonlWriter:
    """Appends JSON lines to size-rotated files; safe to call from several threads.

    Retention: each time a new file is started, the oldest closed files of the
    directory are deleted while the directory holds more than
    ``retention_bytes``, and any closed file last written more than
    ``retention_s`` seconds ago is deleted (0 keeps files forever).

    Args:
        directory: Where the files go (created).
        max_bytes: Start a new file once the current one is this big.
        retention_bytes: Most bytes of closed files kept in the directory (0: no limit).
        retention_s: Oldest age of a closed file, by its last write (0: no limit).
    """

    def __init__(
        self,
        directory: str,
        *,
        max_bytes: int = 16 * 1024 * 1024,
        retention_bytes: int = 0,
        retention_s: float = 0.0,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.retention_bytes = int(retention_bytes)
        self.retention_s = float(retention_s)
        self.deleted_files = 0
        self._lock = threading.Lock()
        self._handle: Any = None
        os.makedirs(directory, exist_ok=True)

    def _prune(self, keep: str | None) -> None:
        """Deletes closed log files past the age limit, then the oldest while over the size limit."""
        if not self.retention_bytes and not self.retention_s:
            return
        files = []
        for name in sorted(os.listdir(self.directory)):  # names sort oldest first
            path = os.path.join(self.directory, name)
            if not name.endswith(".jsonl") or path == keep or not os.path.isfile(path) or os.path.islink(path):
                continue
            stat = os.stat(path)
            files.append((path, stat.st_size, stat.st_mtime))
        now = time.time()
        total = sum(size for _, size, _ in files)
        for path, size, mtime in files:
            too_old = self.retention_s and now - mtime > self.retention_s
            if not too_old and (not self.retention_bytes or total <= self.retention_bytes):
                continue
            try:
                os.remove(path)
            except FileNotFoundError:  # another writer of the same directory pruned it first
                pass
            total -= size
            self.deleted_files += 1

    def _open(self) -> Any:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        n = 0
        while True:  # names sort in write order: stamp, replica, pid, then a zero-padded sequence
            # the replica id keeps pods sharing a ReadWriteMany mount (all pid 1) out of each other's files
            path = os.path.join(self.directory, f"{stamp}-{replica_id()}-{os.getpid():07d}-{n:04d}.jsonl")
            if not os.path.exists(path):
                return open(path, "ab")  # noqa: SIM115 - kept open across writes; lines are UTF-8 bytes already
            n += 1  # noqa: SIM115 - kept open across writes, closed in close()

    def write(self, records: list[dict[str, Any]]) -> None:
        """Appends records, each as one line, and flushes them."""
        if records:
            self.write_lines(b"".join([_line(r) for r in records]))

    def write_lines(self, data: bytes) -> None:
        """Appends JSON lines already encoded (UTF-8, each ending in a newline) and flushes them."""
        if not data:
            return
        with self._lock:
            if self._handle is None or self._handle.tell() >= self.max_bytes:
                if self._handle is not None:
                    self._handle.close()
                self._handle = self._open()
                self._prune(keep=self._handle.name)
            self._handle.write(data)
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def line(record: dict[str, Any]) -> bytes:
    """One record as a JSON line (bytes, newline-terminated), as the writers write it."""
    return _line(record)


def _line(record: dict[str, Any]) -> bytes:
    """One record as a JSON line: orjson (a NaN, sent as a NaN literal, becomes null: missing either way),
    the stdlib for what orjson cannot write (an integer beyond 64 bits)."""
    import orjson

    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()


class ReplicaLogWriter:
    """One file per replica and UTC hour on an object store, shipped whole (see the module docstring).

    Args:
        directory: The log prefix (``s3://bucket/logs/serving/<model>/requests``).
        replica: This replica's id (default ``replica_id()``).
        spool_dir: Local directory of the files being appended (default: a temp directory).
        ship_interval_s: Most seconds between shipments while writing.
        clock: Current epoch time (tests).
    """

    def __init__(
        self,
        directory: str,
        *,
        replica: str | None = None,
        spool_dir: str | None = None,
        ship_interval_s: float = SHIP_INTERVAL_S,
        clock: Any = time.time,
    ) -> None:
        self.directory = directory
        self.replica = replica or replica_id()
        self._own_spool = spool_dir is None
        self.spool_dir = spool_dir or tempfile.mkdtemp(prefix="flywheel-log-spool-")
        os.makedirs(self.spool_dir, exist_ok=True)
        self.ship_interval_s = ship_interval_s
        self.clock = clock
        self.deleted_files = 0
        self._lock = threading.Lock()
        self._name: str | None = None
        self._handle: Any = None
        self._shipped_at = 0.0

    def _open(self, name: str) -> None:
        local = os.path.join(self.spool_dir, name)
        remote = storage.join(self.directory, name)
        if not os.path.exists(local) and storage.info(remote) is not None:
            with open(local, "wb") as handle:  # a restarted replica continues its shipped file
                handle.write(storage.read_bytes(remote))
        self._handle = open(local, "ab")  # noqa: SIM115 - kept open across writes
        self._name = name

    def _ship_locked(self) -> None:
        if self._handle is None or self._name is None:
            return
        self._handle.flush()
        storage.upload_file(self._handle.name, storage.join(self.directory, self._name))
        self._shipped_at = self.clock()

    def write(self, records: list[dict[str, Any]]) -> None:
        """Appends records to this hour's spool file; ships it when the interval has passed."""
        if records:
            self.write_lines(b"".join([_line(r) for r in records]))

    def write_lines(self, data: bytes) -> None:
        """Appends JSON lines already encoded (UTF-8, each ending in a newline); ships as ``write``."""
        if not data:
            return
        with self._lock:
            name = f"{time.strftime('%Y%m%d-%H', time.gmtime(self.clock()))}-{self.replica}.jsonl"
            if name != self._name:
                if self._handle is not None:  # the hour turned: ship the closed file, start the next
                    self._ship_locked()
                    self._handle.close()
                    os.remove(self._handle.name)
                self._open(name)
            self._handle.write(data)
            if self.clock() - self._shipped_at >= self.ship_interval_s:
                self._ship_locked()

    def ship(self) -> None:
        """Uploads the current file now (``PredictionLog.flush`` calls it)."""
        with self._lock:
            self._ship_locked()

    def close(self) -> None:
        """Ships the current file and closes it."""
        with self._lock:
            if self._handle is not None:
                self._ship_locked()
                self._handle.close()
                os.remove(self._handle.name)  # shipped: the spool copy is no longer needed
                self._handle = None
                self._name = None
            if self._own_spool and not os.listdir(self.spool_dir):
                os.rmdir(self.spool_dir)


def read_records(directory: str, *, since: float | None = None) -> Iterator[dict[str, Any]]:
    """Every record in a log directory or prefix (oldest file first), optionally with ts >= since.

    A torn last line (a writer killed mid-line) is skipped, never fatal.
    """
    if storage.is_object_uri(directory):
        for entry in storage.list_files(directory):
            if entry.uri.endswith(".jsonl") and (since is None or entry.mtime >= since):
                try:
                    lines = list(storage.iter_lines(entry.uri))
                except storage.StorageError:  # removed by retention meanwhile: the other files still count
                    continue
                yield from parse_lines(lines, since=since)
        return
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".jsonl"):
            continue
        path = os.path.join(directory, name)
        try:
            if not os.path.isfile(path) or (since is not None and os.path.getmtime(path) < since):
                continue  # a dangling link or a directory named *.jsonl; or nothing new in it
            handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - a damaged byte spoils one line
        except OSError:  # removed by retention meanwhile, or unreadable: the other files still count
            continue
        with handle:
            yield from parse_lines(handle, since=since)


def parse_lines(lines: Iterable[str], *, since: float | None = None) -> Iterator[dict[str, Any]]:
    """The records of JSON lines (a file or an HTTP answer), optionally with ts >= since; a request
    line (``"instances"``) gives one record per instance (see the module docstring).

    A line that is torn, not a JSON object, has a ``ts`` that is no number,
    ``features`` that are not an object, or columns that do not hold one value
    per instance is skipped, never fatal.
    """
    for line in lines:
        try:
            record = json.loads(line)
            ts = float(record.get("ts", 0))
        except (ValueError, TypeError, AttributeError):
            continue
        if not isinstance(record.get("features", {}), dict):
            continue
        if since is not None and ts < since:
            continue
        if "instances" in record:
            yield from _instance_records(record)
        else:
            yield record


def _instance_records(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A request line's records, one per instance; none when its columns do not fit its count."""
    size = record.pop("instances")
    columns = record.pop("features")
    predictions = record.pop("predictions", None)
    probabilities = record.pop("probabilities", None)
    fits = (
        type(size) is int
        and all(isinstance(values, list) and len(values) == size for values in columns.values())
        and isinstance(predictions, list) and len(predictions) == size
        and isinstance(probabilities, list) and len(probabilities) == size
    )  # fmt: skip
    if not fits:
        return []
    names = list(columns)
    return [
        {
            **record,
            "index": i,
            "features": {name: columns[name][i] for name in names},
            "prediction": predictions[i],
            "probabilities": probabilities[i],
        }
        for i in range(size)
    ]


@dataclasses.dataclass
class LabeledPrediction:
    """A logged prediction joined with its late label."""

    request_id: str
    index: int
    version: int
    prediction: str
    label: str
    ts: float


def join_feedback(home_root: str, model: str, *, since: float | None = None) -> list[LabeledPrediction]:
    """Logged predictions that received feedback, joined on (request_id, index)."""
    return join_records(
        read_records(log_dir(home_root, model, FEEDBACK), since=since),
        read_records(log_dir(home_root, model, REQUESTS), since=since),
    )


def join_records(feedback: Iterable[dict[str, Any]], requests: Iterable[dict[str, Any]]) -> list[LabeledPrediction]:
    """Request records that have a feedback record, joined on (request_id, index); odd records are skipped."""
    labels = {}
    for r in feedback:
        if "request_id" in r and "label" in r:
            key = _join_key(r)
            if key is not None:
                labels[key] = str(r["label"])
    joined = []
    for record in requests:
        key = _join_key(record)
        if key in labels:
            try:
                version = int(record.get("version", 0))
            except (ValueError, TypeError):  # a hand-edited line: it cannot be attributed to a version
                continue
            joined.append(
                LabeledPrediction(
                    request_id=key[0],
                    index=key[1],
                    version=version,
                    prediction=str(record.get("prediction")),
                    label=labels[key],
                    ts=float(record.get("ts", 0)),
                )
            )
    return joined


def _join_key(record: dict[str, Any]) -> tuple[str, int] | None:
    request_id, index = record.get("request_id"), record.get("index", 0)
    if not isinstance(request_id, str) or isinstance(index, bool) or not isinstance(index, int):
        return None
    return request_id, index

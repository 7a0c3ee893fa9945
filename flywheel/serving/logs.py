"""The request and feedback logs: what serving writes and the monitor reads.

Layout under the project home::

    <home>/serving/<model>/requests/<UTC yyyymmdd-HHMMSS>-<pid>-<seq>.jsonl   sampled predictions, rotated
    <home>/serving/<model>/feedback/<UTC yyyymmdd-HHMMSS>-<pid>-<seq>.jsonl   late ground-truth labels

One JSON object per line, append-only; a file is never rewritten. A request
line holds one instance::

    {"request_id": "...", "index": 0, "ts": 1764300000.1, "model": "penguins",
     "version": 2, "features": {"island": "Biscoe", ...},
     "prediction": "Gentoo", "probabilities": [0.01, 0.02, 0.97]}

A feedback line::

    {"request_id": "...", "index": 0, "ts": 1764300100.0, "label": "Gentoo"}
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from typing import Any, Iterable, Iterator

from flywheel.names import check_name

REQUESTS = "requests"
FEEDBACK = "feedback"


def log_dir(home_root: str, model: str, kind: str) -> str:
    return os.path.join(home_root, "serving", check_name("model", model), kind)


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
        while True:  # names sort in write order: stamp, pid, then a zero-padded sequence
            path = os.path.join(self.directory, f"{stamp}-{os.getpid():07d}-{n:04d}.jsonl")
            if not os.path.exists(path):
                return open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across writes
            n += 1  # noqa: SIM115 - kept open across writes, closed in close()

    def write(self, records: list[dict[str, Any]]) -> None:
        """Appends records, each as one line, and flushes them."""
        if not records:
            return
        data = b"".join(_line(r) for r in records).decode()
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


def _line(record: dict[str, Any]) -> bytes:
    """One record as a JSON line: orjson (a NaN, sent as a NaN literal, becomes null: missing either way),
    the stdlib for what orjson cannot write (an integer beyond 64 bits)."""
    import orjson

    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()


def read_records(directory: str, *, since: float | None = None) -> Iterator[dict[str, Any]]:
    """Every record in a log directory (oldest file first), optionally with ts >= since.

    A torn last line (a writer killed mid-line) is skipped, never fatal.
    """
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
    """The records of JSON lines (a file or an HTTP answer), optionally with ts >= since.

    A line that is torn, not a JSON object, has a ``ts`` that is no number or
    ``features`` that are not an object is skipped, never fatal.
    """
    for line in lines:
        try:
            record = json.loads(line)
            ts = float(record.get("ts", 0))
        except (ValueError, TypeError, AttributeError):
            continue
        if not isinstance(record.get("features", {}), dict):
            continue
        if since is None or ts >= since:
            yield record


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

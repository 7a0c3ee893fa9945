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
from typing import Any, Iterator

from flywheel.names import check_name

REQUESTS = "requests"
FEEDBACK = "feedback"


def log_dir(home_root: str, model: str, kind: str) -> str:
    return os.path.join(home_root, "serving", check_name("model", model), kind)


class JsonlWriter:
    """Appends JSON lines to size-rotated files; safe to call from several threads.

    Args:
        directory: Where the files go (created).
        max_bytes: Start a new file once the current one is this big.
    """

    def __init__(self, directory: str, *, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._handle: Any = None
        os.makedirs(directory, exist_ok=True)

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
        data = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records)
        with self._lock:
            if self._handle is None or self._handle.tell() >= self.max_bytes:
                if self._handle is not None:
                    self._handle.close()
                self._handle = self._open()
            self._handle.write(data)
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


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
        if since is not None and os.path.getmtime(path) < since:
            continue
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if since is None or float(record.get("ts", 0)) >= since:
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
    labels = {
        (r["request_id"], int(r.get("index", 0))): str(r["label"])
        for r in read_records(log_dir(home_root, model, FEEDBACK), since=since)
        if "request_id" in r and "label" in r
    }
    joined = []
    for record in read_records(log_dir(home_root, model, REQUESTS), since=since):
        key = (record.get("request_id"), int(record.get("index", 0)))
        if key in labels:
            joined.append(
                LabeledPrediction(
                    request_id=key[0],
                    index=key[1],
                    version=int(record.get("version", 0)),
                    prediction=str(record.get("prediction")),
                    label=labels[key],
                    ts=float(record.get("ts", 0)),
                )
            )
    return joined

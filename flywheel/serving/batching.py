"""Dynamic micro-batching: concurrent requests share one model call.

A ``Batcher`` owns one worker thread. Requests enqueue their checked columns
and await an asyncio future. The worker takes the first waiting request and
every request already queued behind it (those that piled up while the model
was busy), then waits for more only while other predict requests are known
to be on their way (``arriving``: received by the server, still being parsed
and checked), up to ``max_wait_s`` after the first and ``max_batch_size``
instances; it concatenates the columns, calls the model once and hands each
request its slice. So a lone client never pays the wait, and a burst of
concurrent clients shares one model call.

Requests for different model versions never share a batch: a request that
cannot join (another version, or too many instances) starts the next batch.
A request larger than ``max_batch_size`` runs alone, unsplit.

``DirectPredictor`` is the ``--no-batching`` path: one model call per request
on a small thread pool, for comparison.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator

LOG = logging.getLogger("flywheel.serving")


@dataclasses.dataclass(eq=False)
class _Item:
    model: Any
    columns: dict[str, Any]
    size: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()


def _resolve(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away and the handler was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _resolve_all(outcomes: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        _resolve(future, result, error)


def _deliver(outcomes: list[tuple[_Item, Any, BaseException | None]]) -> None:
    """Hands a batch's results to their requests' event loops: one wake-up of each loop for the whole
    batch (not one per request); a loop that has closed meanwhile has nobody left to tell."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for item, result, error in outcomes:
        by_loop.setdefault(item.loop, []).append((item.future, result, error))
    for loop, resolved in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_all, resolved)
        except RuntimeError:  # "Event loop is closed": the callers are gone; the worker must live on
            LOG.debug("dropped results for %d request(s) whose event loop has closed", len(resolved))


class Batcher:
    """Batches concurrent predict calls into single model calls (see the module docstring).

    Args:
        max_batch_size: Most instances per model call.
        max_wait_s: Longest a batch waits for more requests after its first.
        on_batch: Called from the worker with (instances, seconds) after each model call.
    """

    def __init__(
        self,
        *,
        max_batch_size: int = 64,
        max_wait_s: float = 0.001,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="flywheel-batcher", daemon=True)
        self._started = False
        self._arriving = 0  # changed on the event loop only; the worker just reads it

    @contextlib.contextmanager
    def arriving(self) -> Iterator[dict[str, bool]]:
        """Marks a predict request as on its way to ``predict`` (wrap parsing and checking in it).

        A request that fails its checks leaves the block without predicting,
        which takes the mark back; ``predict`` takes it back when it queues.
        """
        self._arriving += 1
        mark = {"open": True}
        try:
            yield mark
        finally:
            if mark["open"]:
                self._arriving -= 1

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finishes the queued requests, then stops the worker."""
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    async def predict(
        self, model: Any, columns: dict[str, Any], size: int, mark: dict[str, bool] | None = None
    ) -> Any:
        """Probabilities for ``size`` instances, computed in some batch with other requests.

        ``mark`` is the value of the ``arriving()`` block this request is in, if any.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Item(model, columns, size, future, loop))
        if mark is not None and mark["open"]:
            mark["open"] = False
            self._arriving -= 1
        return await future

    def _run(self) -> None:
        pending: collections.deque = collections.deque()
        stopping = False
        while True:
            if pending:
                first = pending.popleft()
            elif stopping:
                return
            else:
                first = self._queue.get()
            if first is _STOP:
                stopping = True
                continue
            batch = [first]
            size = first.size
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch_size and not pending and not stopping:
                try:
                    remaining = deadline - time.monotonic()
                    if remaining > 0 and self._arriving > 0:
                        item = self._queue.get(timeout=remaining)
                    else:
                        item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                elif item.model is not first.model or size + item.size > self.max_batch_size:
                    pending.append(item)  # it starts the next batch
                else:
                    batch.append(item)
                    size += item.size
            self._call(batch, size)
            first = item = batch = None  # hold no model while idle: an old version must be freeable

    def _call(self, batch: list[_Item], size: int) -> None:
        import numpy as np

        started = time.perf_counter()
        try:
            if len(batch) == 1:
                columns = batch[0].columns
            else:
                columns = {name: np.concatenate([item.columns[name] for item in batch]) for name in batch[0].columns}
            probabilities = batch[0].model.predict(columns)
        except Exception as exc:  # noqa: BLE001 - a model failure must reach every waiting request, not kill the worker
            LOG.exception("model call failed for a batch of %d instances", size)
            _deliver([(item, None, exc) for item in batch])
            return
        if self._on_batch is not None:
            try:
                self._on_batch(size, time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - a metrics hook must not kill the worker every request waits on
                LOG.exception("the on_batch hook failed")
        outcomes, offset = [], 0
        for item in batch:
            outcomes.append((item, probabilities[offset : offset + item.size], None))
            offset += item.size
        _deliver(outcomes)


class DirectPredictor:
    """One model call per request on a thread pool (``--no-batching``).

    Args:
        threads: Model calls that may run at once.
        on_batch: Called with (instances, seconds) after each model call.
    """

    def __init__(self, *, threads: int = 2, on_batch: Callable[[int, float], None] | None = None) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="flywheel-predict"
        )
        self._on_batch = on_batch

    def start(self) -> None:
        """Nothing to start; present so both predictors are used the same way."""

    def stop(self, timeout: float | None = None) -> None:
        self._pool.shutdown(wait=True)

    @contextlib.contextmanager
    def arriving(self) -> Iterator[dict[str, bool]]:
        """Nothing to track without batching; present so both predictors are used the same way."""
        yield {"open": False}

    async def predict(
        self, model: Any, columns: dict[str, Any], size: int, mark: dict[str, bool] | None = None
    ) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, model, columns, size)

    def _call(self, model: Any, columns: dict[str, Any], size: int) -> Any:
        started = time.perf_counter()
        result = model.predict(columns)
        if self._on_batch is not None:
            self._on_batch(size, time.perf_counter() - started)
        return result

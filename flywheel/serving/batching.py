"""Dynamic micro-batching: concurrent requests share one model call.

Batches form on the event loop that serves the requests. A request checks
its columns, enqueues them and awaits a future. A batch is cut from the head
of the queue (requests of one model version, at most ``max_batch_size``
instances; a larger request runs alone, unsplit) and called when

* it is full (``max_batch_size`` instances, or the next request cannot join), or
* no other predict request is known to be on its way (``arriving``: received
  by the server, still being read, parsed and checked) and it holds as many
  requests as the *expected round*: the most any of the last ``ROUND_WINDOW``
  batches held (so a lone client never waits: its batches hold one), or
* ``max_wait_s`` has passed since its first request.

The expected round is what lets a batch wait for the requests that concurrent
clients are about to send: with four clients in closed loop the server sees
their next requests one after another, and calling the model with the first
(then the other three) costs two model calls a round instead of one. Two
batches in a row that the deadline cut short of the expectation reset it to
what came (a lone client after a burst waits twice); a *probe* batch expects
one request more than the last ones held (do more clients send now?), two
batches after the expectation changed and then at doubling intervals, up to
every ``ROUND_WINDOW`` batches, while probes find nobody: rounds that split
into steady halves (2 + 2 of four clients) would otherwise never merge.

A model whose calls take at most ``inline_call_s`` (measured on its own calls,
a moving average) is called on the event loop itself when no other request
is on its way (the loop would have nothing to do meanwhile): a thread handoff
each way, and the model thread's waits for the GIL, cost more than such a call
(the penguin model's 64-row call takes ~0.35 ms alone, ~0.7 ms from a worker
thread beside a busy loop). Longer calls, a model's first, a request larger
than a batch, and any call while requests are still arriving run on the worker
thread, and the loop goes on reading requests meanwhile; the requests that
pile up form the next batch.

``DirectPredictor`` is the ``--no-batching`` path: one model call per request
on a small thread pool, for comparison.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import queue
import threading
import time
import weakref
from typing import Any, Callable, Iterator

LOG = logging.getLogger("flywheel.serving")
ROUND_WINDOW = 16  # batches the expected round is the most of; the longest interval between probes
INLINE_CALL_S = 0.002  # a model whose calls take at most this long is called on the event loop
_SMOOTHING = 0.2  # weight of the latest call in a model's moving average


@dataclasses.dataclass(eq=False)
class _Item:
    model: Any
    columns: dict[str, Any]
    size: int
    future: asyncio.Future
    queued_at: float


class _Lane:
    """The batcher's state on one event loop (a server has one; tests run several one after another).
    It holds no reference to its loop, so a closed loop and its lane can be freed."""

    def __init__(self) -> None:
        self.waiting: collections.deque[_Item] = collections.deque()
        self.arriving = 0
        self.busy = False  # a batch of this lane is on the worker thread
        self.scheduled = False  # a call of _flush is in the loop's ready queue
        self.timer: asyncio.TimerHandle | None = None
        self.rounds: collections.deque[int] = collections.deque(maxlen=ROUND_WINDOW)
        self.expect = 1
        self.misses = 0  # batches in a row the deadline cut short of the expectation
        self.batches = 0
        self.probing = False  # this batch expects one request more than the last ones held
        self.probe_every = 2
        self.next_probe = 2


_STOP = object()


class Batcher:
    """Batches concurrent predict calls into single model calls (see the module docstring).

    Args:
        max_batch_size: Most instances per model call.
        max_wait_s: Longest a batch waits for more requests after its first.
        on_batch: Called with (instances, seconds) after each model call.
        inline_call_s: A model whose calls take at most this long (moving average) is called on
            the event loop; 0 calls every model on the worker thread.
    """

    def __init__(
        self,
        *,
        max_batch_size: int = 64,
        max_wait_s: float = 0.001,
        on_batch: Callable[[int, float], None] | None = None,
        inline_call_s: float = INLINE_CALL_S,
    ) -> None:
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.inline_call_s = max(0.0, float(inline_call_s))
        self._on_batch = on_batch
        self._lanes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> _Lane
        self._call_s: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> moving average
        self._recent: tuple[Callable[[], Any], _Lane | None] = (lambda: None, None)
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="flywheel-batcher", daemon=True)
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    # -- callers (on their event loop) -------------------------------------------

    @contextlib.contextmanager
    def arriving(self) -> Iterator[dict[str, bool]]:
        """Marks a predict request as on its way to ``predict`` (wrap reading, parsing and checking in it).

        A request that fails its checks leaves the block without predicting,
        which takes the mark back; ``predict`` takes it back when it queues.
        """
        lane = self._lane()
        lane.arriving += 1
        mark = {"open": True}
        try:
            yield mark
        finally:
            if mark["open"]:
                mark["open"] = False
                lane.arriving -= 1
                self._consider(lane)  # the batch need not wait for this one any more

    def arriving_now(self) -> int:
        """Requests marked as on their way, over every event loop."""
        return sum(lane.arriving for lane in list(self._lanes.values()))

    async def predict(
        self, model: Any, columns: dict[str, Any], size: int, mark: dict[str, bool] | None = None
    ) -> Any:
        """Probabilities for ``size`` instances, computed in some batch with other requests.

        ``mark`` is the value of the ``arriving()`` block this request is in, if any.
        """
        lane = self._lane()
        future = asyncio.get_running_loop().create_future()
        lane.waiting.append(_Item(model, columns, size, future, time.monotonic()))
        if mark is not None and mark["open"]:
            mark["open"] = False
            lane.arriving -= 1
        self._consider(lane)
        return await future

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stops the worker thread once the batches handed to it are done; batches cut later (requests
        still queued on a loop) are called on their loop."""
        with self._lock:
            self._stopped = True
        if self._started:
            self._work.put(_STOP)
            self._thread.join(timeout)

    # -- forming batches (on the lane's event loop) ------------------------------

    def _lane(self) -> _Lane:
        loop = asyncio.get_running_loop()
        if self._recent[0]() is loop:  # the server's one loop, without a weak-dictionary lookup each time
            return self._recent[1]
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        self._recent = (weakref.ref(loop), lane)
        return lane

    def _head(self, lane: _Lane) -> tuple[int, int, bool]:
        """(requests, instances) of the batch at the head of the queue, and whether it is full."""
        waiting = lane.waiting
        first = waiting[0]
        count, size = 1, first.size
        for item in itertools.islice(waiting, 1, None):
            if item.model is not first.model or size + item.size > self.max_batch_size:
                return count, size, True
            count += 1
            size += item.size
        return count, size, size >= self.max_batch_size

    def _consider(self, lane: _Lane) -> None:
        """Schedules the head batch's call if it is ready, else a timer for its deadline."""
        if lane.busy or lane.scheduled or not lane.waiting:
            return
        count, _, full = self._head(lane)
        if full or (lane.arriving <= 0 and count >= lane.expect):
            if lane.timer is not None:
                lane.timer.cancel()
                lane.timer = None
            lane.scheduled = True  # called after the callbacks ready now, which may queue more requests
            asyncio.get_running_loop().call_soon(self._flush, lane)
        elif lane.timer is None:
            delay = lane.waiting[0].queued_at + self.max_wait_s - time.monotonic()
            lane.timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._flush, lane)

    def _flush(self, lane: _Lane) -> None:
        """Cuts the head batch and calls the model on it, here or on the worker thread."""
        lane.scheduled = False
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        if lane.busy or not lane.waiting:
            return
        count, size, full = self._head(lane)
        batch = [lane.waiting.popleft() for _ in range(count)]
        self._learn(lane, count, cut_short=not full and count < lane.expect)
        model = batch[0].model
        with self._lock:
            to_worker = not self._stopped and self._started and (lane.arriving > 0 or not self._quick(model, size))
            if to_worker:
                lane.busy = True
                self._work.put((asyncio.get_running_loop(), lane, batch, size))
        if not to_worker:
            self._resolve(batch, *self._call(batch, size))
            self._consider(lane)

    def _learn(self, lane: _Lane, count: int, cut_short: bool) -> None:
        """Updates the expected round with a batch of ``count`` requests (``cut_short``: by its deadline,
        with fewer than expected).

        A short batch is a straggler; a second one in a row means fewer clients now, and the expectation
        becomes what came. A probe (one batch that expects a request more) comes two batches after the
        expectation changed, then at doubling intervals up to ``ROUND_WINDOW`` batches while probes fail.
        """
        if lane.probing:  # judged against the expectation before the probe's extra request
            lane.probing = False
            lane.probe_every = 2 if count >= lane.expect else min(2 * lane.probe_every, ROUND_WINDOW)
            lane.next_probe = lane.batches + 1 + lane.probe_every
            cut_short = count < lane.expect - 1
        lane.misses = lane.misses + 1 if cut_short else 0
        if lane.misses >= 2:
            lane.rounds.clear()
            lane.misses = 0
            lane.probe_every = 2
            lane.next_probe = lane.batches + 1 + lane.probe_every
        lane.rounds.append(count)
        lane.expect = max(lane.rounds)
        lane.batches += 1
        if lane.misses == 0 and lane.batches >= lane.next_probe and lane.expect >= 2:
            lane.expect += 1
            lane.probing = True

    def _resolve(self, batch: list[_Item], result: Any, error: BaseException | None) -> None:
        offset = 0
        for item in batch:
            if not item.future.done():  # done: the client went away and its handler was cancelled
                if error is not None:
                    item.future.set_exception(error)
                else:
                    item.future.set_result(result[offset : offset + item.size])
            offset += item.size

    def _done(self, lane: _Lane, batch: list[_Item], result: Any, error: BaseException | None) -> None:
        lane.busy = False
        self._resolve(batch, result, error)
        self._consider(lane)

    # -- calling the model ---------------------------------------------------------

    def _quick(self, model: Any, size: int) -> bool:
        """Whether a call of ``model`` on ``size`` instances runs on the event loop: its calls so far took
        at most ``inline_call_s`` and the batch is no larger than a batch may be (a larger request, which
        runs alone, goes to the worker)."""
        if size > self.max_batch_size or self.inline_call_s <= 0:
            return False
        try:
            typical = self._call_s.get(model)
        except TypeError:  # a model that cannot be weakly referenced: always on the worker
            return False
        return typical is not None and typical <= self.inline_call_s

    def _call(self, batch: list[_Item], size: int) -> tuple[Any, BaseException | None]:
        """(probabilities, None) or (None, the error) of one model call on the batch's columns."""
        import numpy as np

        model = batch[0].model
        started = time.perf_counter()
        try:
            if len(batch) == 1:
                columns = batch[0].columns
            else:
                columns = {name: np.concatenate([item.columns[name] for item in batch]) for name in batch[0].columns}
            probabilities = model.predict(columns)
        except Exception as exc:  # noqa: BLE001 - a model failure must reach every waiting request, not kill the worker
            LOG.exception("model call failed for a batch of %d instances", size)
            return None, exc
        seconds = time.perf_counter() - started
        with contextlib.suppress(TypeError):  # not weakly referable: never inline
            previous = self._call_s.get(model)
            self._call_s[model] = seconds if previous is None else previous + _SMOOTHING * (seconds - previous)
        if self._on_batch is not None:
            try:
                self._on_batch(size, seconds)
            except Exception:  # noqa: BLE001 - a metrics hook must not kill the worker every request waits on
                LOG.exception("the on_batch hook failed")
        return probabilities, None

    def _run(self) -> None:
        while True:
            work = self._work.get()
            if work is _STOP:
                return
            loop, lane, batch, size = work
            result, error = self._call(batch, size)
            try:
                loop.call_soon_threadsafe(self._done, lane, batch, result, error)
            except RuntimeError:  # "Event loop is closed": the callers are gone; the worker must live on
                LOG.debug("dropped results for %d request(s) whose event loop has closed", len(batch))
            work = loop = lane = batch = result = None  # hold no model while idle: an old version must be freeable


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

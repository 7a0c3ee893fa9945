"""Micro-batching with a stand-in model (no TensorFlow): batches form, never mix versions, errors reach callers."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from flywheel.serving.batching import Batcher, DirectPredictor


class RecordingModel:
    """Returns row i of the batch as [x_i, batch size]; records every batch size."""

    def __init__(self, delay: float = 0.002, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def predict(self, columns):
        x = columns["x"]
        with self.lock:
            self.batches.append(len(x))
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model exploded")
        return np.stack([x, np.full(len(x), len(x), dtype=np.float32)], axis=1)


def _columns(values):
    return {"x": np.asarray(values, dtype=np.float32)}


async def _many(predictor, model, n, size=1):
    calls = [predictor.predict(model, _columns([i] * size), size) for i in range(n)]
    return await asyncio.gather(*calls)


def test_concurrent_requests_share_batches_and_each_gets_its_own_rows():
    model = RecordingModel()
    seen = []
    batcher = Batcher(max_batch_size=16, max_wait_s=0.005, on_batch=lambda n, s: seen.append(n))
    batcher.start()
    try:
        results = asyncio.run(_many(batcher, model, 100))
    finally:
        batcher.stop()

    assert [r[0, 0] for r in results] == list(range(100))  # every caller got its own row back
    assert sum(model.batches) == 100 and max(model.batches) > 1
    assert max(model.batches) <= 16
    assert seen == model.batches


def test_versions_never_share_a_batch_and_big_requests_run_alone():
    old, new = RecordingModel(), RecordingModel()
    batcher = Batcher(max_batch_size=8, max_wait_s=0.005)
    batcher.start()

    async def mixed():
        calls = [batcher.predict(old if i % 2 else new, _columns([i]), 1) for i in range(40)]
        calls.append(batcher.predict(old, _columns(list(range(20))), 20))
        return await asyncio.gather(*calls)

    try:
        results = asyncio.run(mixed())
    finally:
        batcher.stop()

    assert sum(old.batches) == 20 + 20 and sum(new.batches) == 20
    assert 20 in old.batches  # larger than max_batch_size: one call of its own, unsplit
    assert results[-1].shape == (20, 2)


def test_a_model_error_reaches_every_request_of_the_batch_and_the_worker_survives():
    broken, fine = RecordingModel(fail=True), RecordingModel()
    batcher = Batcher(max_batch_size=8, max_wait_s=0.005)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="model exploded"):
            asyncio.run(_many(batcher, broken, 5))

        async def in_time():
            return await asyncio.wait_for(_many(batcher, fine, 3), timeout=10)

        assert len(asyncio.run(in_time())) == 3
    finally:
        batcher.stop(timeout=10)


def test_the_worker_survives_callers_whose_event_loop_closed_before_their_batch_finished():
    gate = threading.Event()

    class SlowModel(RecordingModel):
        def predict(self, columns):
            gate.wait(10)
            return super().predict(columns)

    slow, fine = SlowModel(), RecordingModel()
    batcher = Batcher(max_batch_size=8, max_wait_s=0.0)
    batcher.start()

    async def give_up():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_many(batcher, slow, 3), timeout=0.05)

    async def in_time():
        return await asyncio.wait_for(_many(batcher, fine, 3), timeout=10)

    try:
        asyncio.run(give_up())  # its loop is closed while the model is still running
        gate.set()
        assert len(asyncio.run(in_time())) == 3
    finally:
        gate.set()
        batcher.stop(timeout=10)
    assert batcher._thread.is_alive() is False


def test_stop_finishes_what_is_queued():
    model = RecordingModel(delay=0.02)
    batcher = Batcher(max_batch_size=2, max_wait_s=0.0)
    batcher.start()

    async def run():
        tasks = [asyncio.ensure_future(batcher.predict(model, _columns([i]), 1)) for i in range(6)]
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, batcher.stop)
        return await asyncio.gather(*tasks)

    assert len(asyncio.run(run())) == 6
    assert sum(model.batches) == 6


def test_without_batching_every_request_is_its_own_model_call():
    model = RecordingModel()
    predictor = DirectPredictor(threads=2)
    try:
        results = asyncio.run(_many(predictor, model, 20))
    finally:
        predictor.stop()
    assert model.batches == [1] * 20
    assert [r[0, 0] for r in results] == list(range(20))


def test_a_lone_request_never_pays_the_wait():
    model = RecordingModel(delay=0.0)
    batcher = Batcher(max_batch_size=8, max_wait_s=0.5)
    batcher.start()

    async def lone():
        with batcher.arriving() as mark:
            began = time.perf_counter()
            await batcher.predict(model, _columns([1]), 1, mark)
            return time.perf_counter() - began

    try:
        assert asyncio.run(lone()) < 0.25
    finally:
        batcher.stop()
    assert batcher.arriving_now() == 0


def test_the_batch_waits_for_requests_still_being_checked():
    model = RecordingModel(delay=0.0)
    batcher = Batcher(max_batch_size=8, max_wait_s=0.5)
    batcher.start()

    async def two():
        async def request(value, checking_s, fails=False):
            with batcher.arriving() as mark:
                await asyncio.sleep(checking_s)  # stands in for parsing and checking the body
                if fails:
                    return None
                return await batcher.predict(model, _columns([value]), 1, mark)

        return await asyncio.gather(request(1, 0.0), request(2, 0.05), request(3, 0.01, fails=True))

    try:
        results = asyncio.run(two())
    finally:
        batcher.stop()
    assert model.batches == [2]  # the first request waited for the second instead of running alone
    assert [r[0, 0] for r in results[:2]] == [1, 2] and results[2] is None
    assert batcher.arriving_now() == 0


class ThreadRecordingModel(RecordingModel):
    """A RecordingModel that also records the thread of each call."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay=delay)
        self.threads: list[int] = []

    def predict(self, columns):
        self.threads.append(threading.get_ident())
        return super().predict(columns)


def test_a_quick_model_is_called_on_the_event_loop_and_a_slow_one_on_the_worker():
    quick, slow = ThreadRecordingModel(delay=0.0), ThreadRecordingModel(delay=0.02)
    batcher = Batcher(max_batch_size=8, max_wait_s=0.0, inline_call_s=0.005)
    batcher.start()

    async def run():
        loop_thread = threading.get_ident()
        for _ in range(3):
            await batcher.predict(quick, _columns([1.0]), 1)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.002)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        for _ in range(3):
            await batcher.predict(slow, _columns([1.0]), 1)
        task.cancel()
        oversized = await batcher.predict(quick, _columns(list(range(20))), 20)

        async def still_arriving():
            with batcher.arriving():
                await asyncio.sleep(0.05)

        other = asyncio.ensure_future(still_arriving())
        await asyncio.sleep(0)
        await batcher.predict(quick, _columns([1.0]), 1)  # the deadline (0) cuts it while the other arrives
        await other
        return loop_thread, ticks, oversized

    try:
        loop_thread, ticks, oversized = asyncio.run(run())
    finally:
        batcher.stop()
    worker = batcher._thread.ident
    # a model's first call, whose time is not known yet, runs on the worker; the quick one's next calls on the loop
    assert quick.threads[:3] == [worker, loop_thread, loop_thread]
    assert slow.threads == [worker] * 3  # 20 ms a call: never on the loop
    assert ticks >= 10  # the loop went on meanwhile (60 ms of model calls, a tick each 2 ms)
    assert quick.threads[3] == worker and oversized.shape == (20, 2)  # larger than a batch: on the worker
    assert quick.threads[4] == worker  # a request on its way: the loop reads it meanwhile


async def _closed_loop_client(batcher, model, rounds, transit_s, latencies=None):
    """A client that sends its next request when the last one is answered; the server sees each request
    ``transit_s`` after it is sent (the time on the wire, before the call starts to arrive)."""
    for i in range(rounds):
        began = time.perf_counter()
        await asyncio.sleep(transit_s)
        with batcher.arriving() as mark:
            await batcher.predict(model, _columns([float(i)]), 1, mark)
        if latencies is not None:
            latencies.append(time.perf_counter() - began)


def test_concurrent_clients_in_closed_loop_share_one_call_a_round():
    model = RecordingModel(delay=0.0)
    batcher = Batcher(max_batch_size=64, max_wait_s=0.2)
    batcher.start()

    async def four_clients():
        # the server sees the four requests of a round one after another, 3 ms apart: each time
        # the batch could start with the ones in, no other is on its way yet
        await asyncio.gather(*[_closed_loop_client(batcher, model, 30, 0.003 * (k + 1)) for k in range(4)])

    try:
        asyncio.run(four_clients())
    finally:
        batcher.stop()
    assert sum(model.batches) == 120
    assert model.batches.count(4) >= 24  # one model call a round of 30, once the batcher knows the round
    assert len(model.batches) <= 36


def test_after_a_burst_a_lone_client_waits_at_most_twice():
    model = RecordingModel(delay=0.0)
    batcher = Batcher(max_batch_size=64, max_wait_s=0.2)
    batcher.start()
    latencies: list[float] = []

    async def burst_then_lone():
        await asyncio.gather(*[_closed_loop_client(batcher, model, 20, 0.003 * (k + 1)) for k in range(4)])
        await _closed_loop_client(batcher, model, 6, 0.0, latencies)

    try:
        asyncio.run(burst_then_lone())
    finally:
        batcher.stop()
    assert model.batches[-6:] == [1] * 6
    assert sum(latency >= 0.15 for latency in latencies) <= 2  # the expectation of four falls back to one
    assert all(latency < 0.1 for latency in latencies[2:])

"""Tiny components for runner tests (Kedro-style: trivial functions, real effects)."""

from __future__ import annotations

import os
import time

from flywheel import Dataset, Input, Metrics, Output, component


@component
def produce(out: Output[Dataset], text: str = "hello", sleep_s: float = 0.0) -> None:
    time.sleep(sleep_s)
    with open(out.path("data.txt"), "w", encoding="utf-8") as handle:
        handle.write(text)
    out.properties["length"] = len(text)


@component
def consume(data: Input[Dataset], out: Output[Metrics], sleep_s: float = 0.0, fail_if_exists: str = "") -> None:
    if fail_if_exists and os.path.exists(fail_if_exists):
        raise ValueError(f"flag file {fail_if_exists} exists")
    time.sleep(sleep_s)
    with open(data.path("data.txt"), encoding="utf-8") as handle:
        text = handle.read()
    with open(out.path("metrics.txt"), "w", encoding="utf-8") as handle:
        handle.write(text.upper())
    out.properties["upper"] = text.upper()


@component
def relay(data: Input[Dataset], out: Output[Dataset]) -> None:
    with open(data.path("data.txt"), encoding="utf-8") as source:
        text = source.read()
    with open(out.path("data.txt"), "w", encoding="utf-8") as handle:
        handle.write(text + "!")


_FAILURES = {"RuntimeError": RuntimeError, "ConnectionError": ConnectionError, "ValueError": ValueError}


@component(retries=2, retry_backoff_s=0.01)
def flaky(out: Output[Dataset], counter: str, succeed_on: int = 0, raises: str = "RuntimeError") -> None:
    with open(counter, "a", encoding="utf-8") as handle:
        handle.write("attempt\n")
    with open(counter, encoding="utf-8") as handle:
        attempts = len(handle.readlines())
    if attempts != succeed_on:
        if raises == "DataSanityError":
            from flywheel.errors import DataSanityError

            raise DataSanityError(f"failing on attempt {attempts}")
        raise _FAILURES[raises](f"failing on attempt {attempts}")
    with open(out.path("ok.txt"), "w", encoding="utf-8") as handle:
        handle.write(str(attempts))


@component
def half_writer(out: Output[Dataset], ready: str) -> None:
    """Writes part of a file, says so, then hangs until killed."""
    with open(out.path("big.bin"), "wb") as handle:
        handle.write(b"x" * 4096)
        handle.flush()
        with open(ready + ".tmp", "w", encoding="utf-8") as marker:
            marker.write(str(os.getpid()))
        os.replace(ready + ".tmp", ready)
        time.sleep(120)


@component
def note_pid(out: Output[Dataset], after: str = "") -> None:
    """Records the worker's pid (``after`` only orders it)."""
    out.properties["pid"] = os.getpid()


@component(isolated=True)
def note_pid_isolated(out: Output[Dataset]) -> None:
    """Records its worker's pid; the worker exits afterwards."""
    out.properties["pid"] = os.getpid()


@component(reads=("source",))
def read_lines(out: Output[Dataset], source: str) -> None:
    """Copies a file from outside the store (its content is part of the cache key)."""
    with open(source, encoding="utf-8") as handle:
        text = handle.read()
    with open(out.path("data.txt"), "w", encoding="utf-8") as handle:
        handle.write(text)
    out.properties["lines"] = text.count("\n")


@component
def decide(verdict: Output[bool], score: Output[float], answer: bool = True) -> None:
    """Sets output parameters: ``verdict`` = ``answer``, ``score`` 0.9 or 0.1."""
    verdict.set(answer)
    score.set(0.9 if answer else 0.1)

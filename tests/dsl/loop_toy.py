"""Tiny components for the ParallelFor / Collected / Elif / Else tests (real files, real values)."""

from __future__ import annotations

import os
import time
from typing import List

from flywheel import Dataset, FinalStatus, Input, Metrics, Output, component


@component
def make_data(out: Output[Dataset], text: str = "data") -> None:
    with open(out.path("data.txt"), "w", encoding="utf-8") as handle:
        handle.write(text)


@component
def fit(data: Input[Dataset], model: Output[Metrics], accuracy: Output[float], seed: int = 0, rate: float = 0.1,
        sleep_s: float = 0.0, fail_on_seed: int = -1, while_exists: str = "") -> None:
    """A 'model' per seed: its accuracy is a function of seed and rate; records when it ran.

    Fails for ``fail_on_seed`` (only while the file ``while_exists`` exists, if one is named).
    """
    started = time.time()
    if seed == fail_on_seed and (not while_exists or os.path.exists(while_exists)):
        raise ValueError(f"seed {seed} is the one told to fail")
    time.sleep(sleep_s)
    with open(data.path("data.txt"), encoding="utf-8") as handle:
        text = handle.read()
    with open(model.path("model.txt"), "w", encoding="utf-8") as handle:
        handle.write(f"{text}:{seed}")
    model.properties.update(seed=seed, started=started, ended=time.time())
    accuracy.set(round(0.5 + seed * rate, 6))


@component
def pick_best(models: Input[List[Metrics]], accuracies: list, report: Output[Dataset], best: Output[int]) -> None:
    """Reads every collected model and accuracy, in order; ``best`` is the winner's index (-1: none)."""
    contents = []
    for model in models:
        with open(model.path("model.txt"), encoding="utf-8") as handle:
            contents.append(handle.read())
    report.properties.update(contents=contents, accuracies=accuracies)
    best.set(max(range(len(accuracies)), key=accuracies.__getitem__) if accuracies else -1)


@component
def list_seeds(seeds: Output[list], count: int = 3) -> None:
    seeds.set(list(range(1, count + 1)))


@component
def grade(score: Output[str], value: int = 0) -> None:
    """``score`` is "high" (value > 10), "mid" (value > 5) or "low"."""
    score.set("high" if value > 10 else "mid" if value > 5 else "low")


@component
def note(out: Output[Dataset], text: str = "") -> None:
    out.properties["text"] = text


@component
def count_models(models: Input[List[Metrics]], total: Output[Dataset]) -> None:
    total.properties["seeds"] = [m.properties["seed"] for m in models]


@component
def read_model(model: Input[Metrics], out: Output[Dataset]) -> None:
    with open(model.path("model.txt"), encoding="utf-8") as handle:
        out.properties["model"] = handle.read()


@component
def report_status(out: Output[Dataset], status: FinalStatus = None) -> None:
    """An exit task: keeps the final status it was given."""
    out.properties["status"] = status

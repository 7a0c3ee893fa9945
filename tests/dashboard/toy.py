"""Tiny components and a pipeline for the dashboard tests (real runs in milliseconds)."""

from __future__ import annotations

import time

from flywheel import HTML, Dataset, Input, Metrics, Output, component, pipeline


@component
def make_rows(rows: Output[Dataset], count: int = 3, sleep_s: float = 0.0) -> None:
    time.sleep(sleep_s)
    print(f"writing {count} rows")
    with open(rows.path("rows.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(str(i) for i in range(count)))
    rows.properties["count"] = count


@component
def summarize(rows: Input[Dataset], summary: Output[Metrics], report: Output[HTML]) -> None:
    with open(rows.path("rows.txt"), encoding="utf-8") as handle:
        values = [int(line) for line in handle.read().split()]
    summary.properties["total"] = sum(values)
    summary.properties["mean"] = sum(values) / len(values)
    with open(report.path("index.html"), "w", encoding="utf-8") as handle:
        handle.write(f"<html><body><h1>Toy report</h1><p id='total'>total {sum(values)}</p></body></html>")
    print("summary written")


@pipeline(name="toy")
def toy(count: int = 3, sleep_s: float = 0.0) -> None:
    rows = make_rows(count=count, sleep_s=sleep_s)
    summarize(rows=rows.outputs["rows"])

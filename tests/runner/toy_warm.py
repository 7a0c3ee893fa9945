"""Toy components for the warm-parent tests: each records where it ran and what was imported there."""

from __future__ import annotations

import os
import signal
import sys

from flywheel import Dataset, Output, component

PRELOADED = "tests.runner.toy_preload"  # what the tests give the warm parent to import


def _note(out) -> None:
    out.properties["pid"] = os.getpid()
    out.properties["ppid"] = os.getppid()
    out.properties["preloaded"] = PRELOADED in sys.modules


@component
def where(out: Output[Dataset], after: str = "") -> None:
    """Records its worker's pid, parent and whether the preloaded module was there (``after`` orders it)."""
    _note(out)


@component(isolated=True)
def where_isolated(out: Output[Dataset]) -> None:
    """As ``where``; its worker exits afterwards."""
    _note(out)


@component
def dies(out: Output[Dataset], after: str = "") -> None:
    """Kills its own worker."""
    os.kill(os.getpid(), signal.SIGKILL)

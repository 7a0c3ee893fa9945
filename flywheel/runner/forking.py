"""Forking a child that talks to its parent over a pipe: the runner's workers, the warm parent and
the workers the warm parent forks all start this way."""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection, Pipe
from typing import Callable, Iterable


def fork_with_pipe(
    child_main: Callable[[Connection], None], *, close_in_child: Iterable[Connection] = ()
) -> tuple[int, Connection]:
    """Forks a child that runs ``child_main(its end of a new pipe)`` and then exits.

    The child exits with code 0, or 1 if ``child_main`` raised: it never returns into the caller's
    code. ``close_in_child`` are the caller's connections the child must not hold. Standard streams
    are flushed first, so output buffered before the fork is not written twice.

    Returns:
        (the child's pid, the caller's end of the pipe).
    """
    ours, theirs = Pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            ours.close()
            for conn in close_in_child:
                conn.close()
            child_main(theirs)
        except BaseException:  # noqa: BLE001 - a child must never return into its parent's code
            code = 1
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours

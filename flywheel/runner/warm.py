"""The warm parent: a process that imports TensorFlow once, from which workers are forked.

A cold ``flywheel run`` of a small pipeline is mostly imports: every worker that
runs a TensorFlow component pays ``import tensorflow`` (seconds), and an
``isolated`` component's worker exits afterwards, so the next node pays it again.
When a pipeline's components use TensorFlow, the runner forks a *warm parent*
at run start. It imports the libraries in ``PRELOAD`` (TensorFlow, Keras,
pandas, pyarrow) in the background while the first nodes run, freezes what it
imported out of the garbage collector (so children do not copy those pages by
touching them), and from then on forks the run's workers on the runner's
request. Each worker starts with TensorFlow already imported; an isolated job's
worker still exits after its job, and the next one is forked warm again.

Forking after ``import tensorflow`` is safe because importing starts none of
TensorFlow's thread pools (they start on the first op, in the child); the warm
parent never runs an op. The runner process itself never imports TensorFlow.

Protocol over one duplex connection (runner <-> warm parent):

* warm parent -> runner: ``("ready", seconds, error)`` once the imports are done
  (``error`` names a module that failed to import; workers then import it themselves),
  ``("spawned", pid)`` followed by the runner's end of that worker's connection
  (a file descriptor, ``multiprocessing.reduction.send_handle``), and
  ``("exited", pid, wait_status)`` for each worker that ended (the warm parent is
  their parent and reaps them).
* runner -> warm parent: ``"spawn"``, or ``None`` to exit.

``FLYWHEEL_WARM_PARENT=0`` turns it off (workers are forked from the runner, each
importing what it needs, as before); ``benchmarks/pipeline_e2e.py`` runs both.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import signal
import sys
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any, Callable, Iterable

from flywheel.runner.forking import fork_with_pipe

ENV_SWITCH = "FLYWHEEL_WARM_PARENT"

# What the warm parent imports, in order: what TensorFlow components all import and that is
# safe to fork (no thread pools started on import). Not TFDV/Beam: they stay in validate's own
# isolated worker, so they never share memory with training.
PRELOAD = ("pandas", "pyarrow.parquet", "tensorflow", "keras")

# Libraries whose use means TensorFlow is imported (each imports it).
TENSORFLOW_USERS = frozenset(
    {"tensorflow", "keras", "tf_keras", "tensorflow_data_validation", "tfx_bsl", "tensorflow_transform",
     "tensorflow_model_analysis", "tensorflow_hub"}
)


def enabled() -> bool:
    """Whether the warm parent may be used (``FLYWHEEL_WARM_PARENT`` is not "0"/"false"/"no"/"off")."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def imported_libraries(component: Any) -> frozenset[str]:
    """Top-level names of the libraries a component's code may import (static, nothing is imported).

    The component's module and the project modules it imports (``code_fingerprint``'s
    closure), lazy imports included: an upper bound of what its worker imports.
    """
    from flywheel.dsl import code_fingerprint

    module = getattr(component.fn, "__module__", "")
    if not getattr(sys.modules.get(module), "__file__", None):
        return frozenset()
    return code_fingerprint.imported_top_level_names(module)


def uses_tensorflow(component: Any) -> bool:
    return bool(imported_libraries(component) & TENSORFLOW_USERS)


def modules_for(components: Iterable[Any]) -> tuple[str, ...]:
    """What a warm parent should import for a run of these components; () means no warm parent.

    None when it is turned off, TensorFlow is not installed, or no component may use it.
    """
    if not enabled() or importlib.util.find_spec("tensorflow") is None:
        return ()
    if not any(uses_tensorflow(c) for c in components):
        return ()
    return tuple(m for m in PRELOAD if importlib.util.find_spec(m.split(".")[0]) is not None)


class WarmParent:
    """The runner's handle on a warm parent process (see the module docstring)."""

    def __init__(self, worker_main: Callable[[Connection, int], None], modules: tuple[str, ...], log_path: str) -> None:
        self.modules = modules
        self.ready = False
        self.alive = True
        self.error = ""
        self.import_s = 0.0
        self._statuses: dict[int, int] = {}
        parent = os.getpid()
        self.pid, self.conn = fork_with_pipe(lambda conn: _main(worker_main, conn, parent, modules, log_path))

    def _handle(self, message: Any) -> Any:
        if message[0] == "ready":
            self.ready = True
            self.import_s, self.error = message[1], message[2]
        elif message[0] == "exited":
            self._statuses[message[1]] = message[2]
        return message

    def poll(self, timeout: float = 0.0) -> None:
        """Reads what the warm parent sent (ready, exited workers); notices when it died."""
        while self.alive and self.conn.poll(timeout):
            timeout = 0.0
            try:
                self._handle(self.conn.recv())
            except (EOFError, OSError):
                self._died()

    def _died(self) -> None:
        self.alive = False
        self.ready = False
        self.conn.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    def spawn(self) -> tuple[int, Connection] | None:
        """A new worker forked warm: (pid, the runner's connection to it); None if the warm parent died."""
        if not self.alive:
            return None
        try:
            self.conn.send("spawn")
            while True:
                message = self._handle(self.conn.recv())
                if message[0] == "spawned":
                    fd = recv_handle(self.conn)
                    return message[1], Connection(fd)
        except (EOFError, OSError):
            self._died()
            return None

    def exit_status(self, pid: int, timeout: float = 10.0) -> int | None:
        """The wait status of a worker that ended (as ``os.waitpid`` gives it); None if unknown."""
        deadline = time.monotonic() + timeout
        while pid not in self._statuses and self.alive and time.monotonic() < deadline:
            self.poll(min(0.1, max(0.0, deadline - time.monotonic())))
        return self._statuses.pop(pid, None)

    def forget(self, pid: int) -> None:
        self._statuses.pop(pid, None)

    def close(self) -> None:
        """Asks the warm parent to exit, and waits for it (its remaining workers were stopped first).

        One still importing is killed: it holds nothing, and the run should not wait for its import.
        """
        if not self.alive:
            return
        self.poll()
        try:
            if not self.ready:
                raise OSError("still importing")
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._died()


def _read_only_file_mappings(smaps: str) -> list[tuple[int, int, int]]:
    """(start, end, resident bytes) of each read-only file mapping in ``/proc/<pid>/smaps`` text
    that holds no anonymous (copied-on-write) page: dropping its page-table entries loses nothing."""
    found: list[tuple[int, int, int]] = []
    entry: list[Any] | None = None  # [start, end, resident bytes, has anonymous pages]

    def close() -> None:
        if entry is not None and entry[2] > 0 and not entry[3]:
            found.append((entry[0], entry[1], entry[2]))

    for line in smaps.splitlines():
        fields = line.split()
        if not fields:
            continue
        if not fields[0].endswith(":"):  # a mapping: "start-end perms offset dev inode [path]"
            close()
            entry = None
            if len(fields) >= 6 and "w" not in fields[1] and fields[5].startswith("/") and "-" in fields[0]:
                low, high = fields[0].split("-")
                entry = [int(low, 16), int(high, 16), 0, False]
        elif entry is not None and fields[0] == "Rss:":
            entry[2] = int(fields[1]) * 1024
        elif entry is not None and fields[0] == "Anonymous:" and int(fields[1]) != 0:
            entry[3] = True
    close()
    return found


def _drop_clean_file_pages() -> int:
    """Lets go of the library pages that importing touched (returns the bytes).

    Importing TensorFlow touches ~230 MB of its shared library's pages that no worker touches
    again (initialisation). In the warm parent they would stay mapped, and counted, for the whole
    run; ``madvise(MADV_DONTNEED)`` on a read-only file mapping with no copied-on-write page only
    drops this process's page-table entries (the pages stay in the page cache; whoever touches one
    again maps it from there). Any failure leaves everything as it was.
    """
    import ctypes

    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
            mappings = _read_only_file_mappings(fh.read())
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    except (OSError, ValueError):
        return 0
    dropped = 0
    for start, end, rss in mappings:
        if libc.madvise(start, end - start, 4) == 0:  # MADV_DONTNEED
            dropped += rss
    return dropped


def _main(worker_main: Callable[[Connection, int], None], conn: Connection, parent: int,
          modules: tuple[str, ...], log_path: str) -> None:  # pragma: no cover - runs in the child
    from flywheel.runner.executors import _die_with_parent

    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what Ctrl-C means
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    os.dup2(log.fileno(), 1)  # TensorFlow's import messages go to the run's log, not the user's terminal
    os.dup2(log.fileno(), 2)
    began = time.monotonic()
    error = ""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - reported; workers import what they need themselves
            error = f"{module}: {type(exc).__name__}: {exc}"
            print(f"warm parent: importing {error}", file=log, flush=True)
            break
    # No gc.collect() first: after these imports it finds ~25 unreachable objects and takes ~0.18 s,
    # all of it on a cold run's critical path (every worker waits for "ready").
    gc.freeze()  # imported objects leave the collector's lists: a child's collections do not copy their pages
    dropped = _drop_clean_file_pages()
    print(f"warm parent {os.getpid()}: imported {', '.join(modules)} in {time.monotonic() - began:.2f} s; "
          f"let go of {dropped / 2**20:.0f} MB of read-only library pages", file=log, flush=True)
    conn.send(("ready", time.monotonic() - began, error))
    children: set[int] = set()
    me = os.getpid()
    while True:
        readable = wait([conn], 0.05 if children else None)
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                children.discard(pid)
                conn.send(("exited", pid, status))
        if not readable:
            continue
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        # In the worker, imported objects stay frozen: never collected, never copied.
        pid, theirs = fork_with_pipe(lambda ours: worker_main(ours, me), close_in_child=(conn,))
        children.add(pid)
        conn.send(("spawned", pid))
        send_handle(conn, theirs.fileno(), parent)
        theirs.close()
    for pid in children:  # the runner stopped them; reap what is left
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

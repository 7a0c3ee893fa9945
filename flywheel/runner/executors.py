"""Where node jobs run: a pool of forked worker processes, or in-process.

The runner owns the algorithm (what runs when, caching, publishing); an
executor only runs a ``Job`` and reports a ``JobResult``. Workers are forked
from the runner, so they already hold the loaded pipeline and its components,
and live for the whole run: a heavy import such as TensorFlow is paid once
per worker, not once per node. A job of an ``isolated`` component is the last
of its worker, which exits after it. A worker that dies (killed, crashed) fails only
the node it was running and is replaced.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Protocol, runtime_checkable

from flywheel.dsl.artifacts import Artifact
from flywheel.dsl.pipeline import Pipeline
from flywheel.errors import FlywheelError, UserCodeError
from flywheel.dsl.component import OutputValue
from flywheel.component_call import call_component
from flywheel.runner.forking import fork_with_pipe


@dataclasses.dataclass
class Job:
    """One attempt of one node."""

    key: int
    task_id: str
    attempt: int
    inputs: dict[str, dict[str, Any] | list[dict[str, Any]] | None]  # a list for an Input[List[T]]
    outputs: dict[str, dict[str, Any]]
    parameters: dict[str, Any]
    log_path: str
    env: dict[str, str]
    isolated: bool = False  # the worker exits after this job (ComponentOptions.isolated)
    task: str = ""  # the pipeline task when task_id is one iteration of a ParallelFor ("train[0]")


@dataclasses.dataclass
class JobResult:
    key: int
    ok: bool
    error: str = ""
    properties: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # False when the component raised one of flywheel's own errors on purpose (bad input or data,
    # a refused model): another attempt would fail the same way, so the runner does not retry it.
    retryable: bool = True
    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # output parameters (Output[bool], ...)


# Errors that another attempt cannot fix: bad code, bad data, a missing or forbidden file.
_PERMANENT_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, NameError, ImportError, AssertionError,
    NotImplementedError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
)


def worth_retrying(exc: BaseException) -> bool:
    """Whether a node that raised ``exc`` may succeed on another attempt.

    flywheel's own errors (bad input or data, a refused model) and programming or
    data errors (``_PERMANENT_ERRORS``) fail the same way again; anything else
    (connection and time-out errors, other I/O errors, ``RuntimeError``s of a
    library, a worker that died) is retried up to the task's ``retries``.
    """
    if isinstance(exc, FlywheelError) and not isinstance(exc, UserCodeError):
        return False
    return not isinstance(exc, _PERMANENT_ERRORS)


def run_job(pipeline: Pipeline, job: Job) -> JobResult:
    """Runs a job in this process, with stdout/stderr going to the job's log."""
    comp = pipeline.tasks[job.task or job.task_id].component
    os.makedirs(os.path.dirname(job.log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    saved_env = {k: os.environ.get(k) for k in job.env}
    log = open(job.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    try:
        log.write(f"===== {job.task_id} attempt {job.attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
        log.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        os.environ.update(job.env)
        inputs = {n: _artifacts(d) for n, d in job.inputs.items()}
        outputs: dict[str, Any] = {n: Artifact.from_dict(d) for n, d in job.outputs.items()}
        values = {n: OutputValue(spec.type, n) for n, spec in comp.output_values.items()}
        outputs.update(values)
        try:
            call_component(comp, inputs, outputs, job.parameters)
        except UserCodeError as exc:
            traceback.print_exception(exc.__cause__ or exc)
            return JobResult(job.key, False, error=str(exc), retryable=worth_retrying(exc.__cause__ or exc))
        except Exception as exc:  # noqa: BLE001 - reported as the node's failure, never lost
            traceback.print_exc()
            return JobResult(job.key, False, error=f"{type(exc).__name__}: {exc}", retryable=worth_retrying(exc))
        properties = {n: a.properties for n, a in outputs.items() if n not in values}
        try:
            json.dumps(properties)
        except (TypeError, ValueError) as exc:
            return JobResult(
                job.key,
                False,
                error=f"Output properties must be JSON values (int, float, str, bool, list, dict): {exc}",
            )
        return JobResult(job.key, True, properties=properties, values={n: v.value for n, v in values.items()})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        log.close()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@runtime_checkable
class Executor(Protocol):
    """What the runner needs of an executor; ``InProcessExecutor`` and ``ForkPoolExecutor`` are two.

    The runner submits a job only while ``capacity`` is positive, collects finished jobs with
    ``wait`` (each submitted job comes back exactly once, as a ``JobResult``), and calls
    ``shutdown`` once at the end of a run, also after an error.
    """

    @property
    def capacity(self) -> int:
        """How many more jobs may be submitted now."""

    def submit(self, job: Job) -> None:
        """Starts ``job`` (or runs it at once); its result comes back from ``wait``."""

    def wait(self, timeout: float | None) -> list[JobResult]:
        """Results of jobs finished since the last call; waits up to ``timeout`` s for one."""

    def running(self) -> int:
        """Jobs submitted whose results ``wait`` has not returned yet."""

    def shutdown(self) -> None:
        """Stops every worker; results not yet collected are dropped."""


class InProcessExecutor:
    """Runs one job at a time in the runner's own process (for debugging)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._done: list[JobResult] = []

    @property
    def capacity(self) -> int:
        return 1 - len(self._done)

    def submit(self, job: Job) -> None:
        self._done.append(run_job(self.pipeline, job))

    def wait(self, timeout: float | None) -> list[JobResult]:
        done, self._done = self._done, []
        if not done and timeout:
            time.sleep(timeout)
        return done

    def running(self) -> int:
        return len(self._done)

    def shutdown(self) -> None:
        self._done = []


FORK_UNSAFE_MODULES = ("tensorflow", "torch", "jax")


def fork_unsafe_modules() -> list[str]:
    """Threaded runtimes already loaded here, which make forking workers unsafe.

    Once TensorFlow (or torch, JAX) has started its thread pools, a forked child
    that uses it can deadlock on a lock some other thread held at fork time.
    The CLI never imports them in the runner; a notebook or a test process may.
    """
    return [name for name in FORK_UNSAFE_MODULES if name in sys.modules]


def _die_with_parent() -> None:
    """Asks Linux to SIGKILL this worker when the runner dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def worker_main(pipeline: Pipeline, conn: Connection, parent: int) -> None:
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what Ctrl-C means
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        result = run_job(pipeline, job)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            break
        if job.isolated:
            break


@dataclasses.dataclass
class _Worker:
    pid: int
    conn: Connection
    job: Job | None = None
    warm: bool = False  # forked from the warm parent (its child, not the runner's)


class ForkPoolExecutor:
    """Up to ``size`` worker processes, each running one job at a time.

    Workers are forked from the runner, or, given ``start_warm`` (which starts a warm parent,
    ``warm.py``; called at the first job, so a fully cached run never starts one), from that
    process once it has imported TensorFlow: jobs submitted before it is ready wait for it
    when ``waits_for_warm(job)`` says so (their code uses TensorFlow), else run in a worker
    forked from the runner, which is let go once warm workers can be had.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        size: int,
        start_warm: Callable[[], Any] | None = None,
        waits_for_warm: Callable[[Job], bool] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.size = max(1, size)
        self.warm: Any = None
        self._start_warm = start_warm
        self.waits_for_warm = waits_for_warm or (lambda job: True)
        self._workers: list[_Worker] = []
        self._results: list[JobResult] = []
        self._queued: list[Job] = []  # waiting for the warm parent to be ready

    @property
    def capacity(self) -> int:
        return self.size - self.running()

    def running(self) -> int:
        return sum(1 for w in self._workers if w.job is not None) + len(self._queued)

    def _warm_ready(self) -> bool:
        if self.warm is None:
            return False
        if self.warm.alive and not self.warm.ready:
            self.warm.poll()
        return self.warm.alive and self.warm.ready

    def _warm_pending(self) -> bool:
        return self.warm is not None and self.warm.alive and not self.warm.ready

    def _spawn(self) -> _Worker:
        if self._warm_ready():
            spawned = self.warm.spawn()
            if spawned is not None:
                worker = _Worker(spawned[0], spawned[1], warm=True)
                self._workers.append(worker)
                return worker
        parent = os.getpid()
        pid, parent_conn = fork_with_pipe(lambda conn: worker_main(self.pipeline, conn, parent))
        worker = _Worker(pid, parent_conn)
        self._workers.append(worker)
        return worker

    def submit(self, job: Job) -> None:
        if self._start_warm is not None:
            start, self._start_warm = self._start_warm, None
            try:
                self.warm = start()
            except OSError:  # no fork: workers are forked from the runner, as without one
                self.warm = None
        if self._warm_pending() and self.waits_for_warm(job):
            self.warm.poll()
            if self._warm_pending():
                self._queued.append(job)
                return
        ready = self._warm_ready()
        if ready:  # cold workers are let go as soon as warm ones can be had
            for worker in [w for w in self._workers if w.job is None and not w.warm]:
                self._dismiss(worker)
        idle = next((w for w in self._workers if w.job is None), None)
        if idle is None:
            if len(self._workers) >= self.size:
                raise FlywheelError("internal error: a job was submitted with no free worker")
            idle = self._spawn()
        idle.job = job
        try:
            idle.conn.send(job)
        except (BrokenPipeError, OSError):
            self._reap(idle)

    def _dismiss(self, worker: _Worker) -> None:
        """Stops an idle worker (it exits when told to) and forgets it."""
        try:
            worker.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._retire(worker)

    def _exit_status(self, worker: _Worker) -> int | None:
        """The worker's wait status; None when its warm parent died first (and with it the status)."""
        if worker.warm:
            return self.warm.exit_status(worker.pid)
        try:
            return os.waitpid(worker.pid, 0)[1]
        except ChildProcessError:
            return 0

    def _retire(self, worker: _Worker) -> None:
        """Waits for a worker that exits after its job, and forgets it."""
        if worker.warm:  # the warm parent reaps it; its status is not needed
            self.warm.forget(worker.pid)
        else:
            self._exit_status(worker)
        worker.conn.close()
        self._workers.remove(worker)

    def _reap(self, worker: _Worker) -> None:
        """Records a dead worker's job as failed and forgets the worker."""
        status = self._exit_status(worker)
        if status is None:
            why = "ended with its warm parent (see warm-parent.log in the run's logs)"
        elif os.WIFSIGNALED(status):
            why = f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            why = f"exited with code {os.WEXITSTATUS(status)}"
        if worker.job is not None:
            self._results.append(
                JobResult(worker.job.key, False, error=f"worker process {worker.pid} {why} while running the node")
            )
        worker.conn.close()
        self._workers.remove(worker)

    def _dispatch_queued(self) -> None:
        """Starts the jobs that waited for the warm parent, once it is ready (or gone)."""
        if not self._queued or self._warm_pending():
            return
        queued, self._queued = self._queued, []
        for job in queued:
            self.submit(job)

    def wait(self, timeout: float | None) -> list[JobResult]:
        busy = {w.conn: w for w in self._workers if w.job is not None}
        warm_conn = self.warm.conn if self._warm_pending() else None
        if (busy or warm_conn is not None) and not self._results:
            ready = wait(list(busy) + ([warm_conn] if warm_conn is not None else []), timeout)
            if warm_conn is not None and warm_conn in ready:
                self.warm.poll()
            for conn in ready:
                worker = busy.get(conn)
                if worker is None:
                    continue
                try:
                    result = conn.recv()
                except (EOFError, OSError):
                    self._reap(worker)
                    continue
                if worker.job.isolated:  # its worker exits now; the next job gets a fresh one
                    self._retire(worker)
                elif not worker.warm and self._warm_ready():
                    worker.job = None
                    self._dismiss(worker)  # a cold worker; later jobs get warm ones
                else:
                    worker.job = None
                self._results.append(result)
        elif not busy and not self._results and timeout:
            time.sleep(timeout)
        self._dispatch_queued()
        done, self._results = self._results, []
        return done

    def shutdown(self) -> None:
        self._queued = []
        for worker in list(self._workers):
            if worker.job is not None:
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                try:
                    worker.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for worker in list(self._workers):
            if worker.warm:
                self.warm.exit_status(worker.pid, timeout=30.0)
            else:
                try:
                    os.waitpid(worker.pid, 0)
                except ChildProcessError:
                    pass
            worker.conn.close()
        self._workers = []
        if self.warm is not None:
            self.warm.close()


def _artifacts(data: dict[str, Any] | list[dict[str, Any]] | None) -> Any:
    """An input artifact from its job description (a list of them for an Input[List[T]])."""
    if isinstance(data, list):
        return [Artifact.from_dict(d) for d in data]
    return Artifact.from_dict(data) if data is not None else None

"""A KFP v2beta1 API on loopback that runs what it receives (test support).

``ExecutingKfpServer`` is ``FakeKfpServer`` (tests/kubeflow/conftest.py: the REST shapes of
``kfp_server_api``, every request recorded) plus an executor: ``POST /apis/v2beta1/runs``
queues the submitted pipeline spec with its runtime parameters, and one background worker
runs the runs in order through ``flywheel.kubeflow.container_run`` (kfp.local with conditions;
``runner="subprocess"`` by default, ``"docker"`` where the images exist), as one KFP cluster
would. The run goes PENDING -> RUNNING -> SUCCEEDED or FAILED, and ``GET /apis/v2beta1/runs/{id}``
answers (through the fake's own route) a ``V2beta1Run`` with ``run_details.task_details`` (one
per task and condition group: state, start and end time, the reason of a skip or a failure in
``error``), as KFP's API does.

KFP's run-id placeholder resolves to the server's run id (push records it as the version's
lineage, with ``KFP_HOST`` from the task environment); each task gets a scratch ``FLYWHEEL_HOME``
of its run; its output goes to the run's log (``log(run_id)``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import queue
import threading
import time
from typing import Any

from tests.kfp_fake import PREFIX, FakeKfpServer, _Handler

FINAL_STATES = ("SUCCEEDED", "FAILED")


def _utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class _ExecutingHandler(_Handler):
    def _route(self, api: Any, state: Any, method: str, path: str, query: dict, body: Any) -> None:
        if path == PREFIX + "/runs" and method == "POST":
            before = len(state.runs)
            super()._route(api, state, method, path, query, body)
            if len(state.runs) > before:
                self.server.executor._accept(state.runs[-1])
            return None
        return super()._route(api, state, method, path, query, body)


class ExecutingKfpServer(FakeKfpServer):
    """``FakeKfpServer`` that executes every submitted run (see the module docstring).

    Args:
        work_dir: Where each run's pipeline root, scratch home and log go (``<work_dir>/<run_id>/``).
        runner: ``"subprocess"`` or ``"docker"`` (``container_run.run_compiled_pipeline``'s runner).
        env: Added to every task's environment (e.g. object-store endpoint and credentials).
    """

    handler = _ExecutingHandler

    def __init__(self, work_dir: str | os.PathLike[str], *, runner: str = "subprocess", env: dict[str, str] | None = None) -> None:
        super().__init__()
        self._server.executor = self  # type: ignore[attr-defined]
        self.work_dir = os.fspath(work_dir)
        self.runner = runner
        self.env = dict(env or {})
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="kfp-executor", daemon=True)

    def __enter__(self) -> ExecutingKfpServer:
        super().__enter__()
        self._worker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._queue.put(None)
        self._worker.join(timeout=600)
        super().__exit__(*exc)

    def _accept(self, run: dict) -> None:
        run.update(tasks=[], created_at=_utc(), finished_at=None, error="")  # the fields GET run reports
        self._queue.put(run)

    def log(self, run_id: str) -> str:
        """What the run's tasks and kfp.local printed."""
        path = os.path.join(self.work_dir, run_id, "run.log")
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait(self, run_id: str, timeout_s: float = 600) -> dict:
        """Blocks until the run reaches SUCCEEDED or FAILED; returns its stored record."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.state.lock:
                run = next((r for r in self.state.runs if r["run_id"] == run_id), None)
                if run is not None and run["state"] in FINAL_STATES:
                    return run
            time.sleep(0.2)
        raise TimeoutError(f"run {run_id} did not finish within {timeout_s:g}s")

    def _work(self) -> None:
        while (run := self._queue.get()) is not None:
            self._execute(run)

    def _execute(self, run: dict) -> None:
        from flywheel.kubeflow.container_run import TaskContainerOptions, run_compiled_pipeline

        import yaml

        run_dir = os.path.join(self.work_dir, run["run_id"])
        home = os.path.join(run_dir, "home")
        os.makedirs(home, exist_ok=True)
        spec = run.get("pipeline_spec") or {}
        if "pipeline_spec" in spec and "root" not in spec:  # sent with a platform spec
            spec = spec["pipeline_spec"]
        ir = os.path.join(run_dir, "pipeline.yaml")
        with open(ir, "w", encoding="utf-8") as handle:
            yaml.safe_dump(spec, handle)
        parameters = (run.get("runtime_config") or {}).get("parameters") or {}
        env = {**self.env, "KFP_HOST": self.url, "FLYWHEEL_HOME": home}
        self._set(run, state="RUNNING")

        def on_task(task: str, state: str, detail: str) -> None:
            with self.state.lock:
                entry = next((t for t in run["tasks"] if t["name"] == task), None)
                if entry is None:
                    entry = {"name": task, "task_id": f"{run['run_id']}-{task}", "start": _utc()}
                    run["tasks"].append(entry)
                entry.update(state=state, error=detail)
                if state != "RUNNING":
                    entry["end"] = _utc()

        with open(os.path.join(run_dir, "run.log"), "w", encoding="utf-8") as log, \
                _this_thread_writes_to(log):
            try:
                run_compiled_pipeline(
                    ir, pipeline_root=os.path.join(run_dir, "root"), arguments=parameters, runner=self.runner,
                    options=TaskContainerOptions(env=env), on_task=on_task, run_id=run["run_id"],
                )
            except Exception as exc:  # noqa: BLE001 - any failure is the run's FAILED state, as on KFP
                print(f"run failed: {type(exc).__name__}: {exc}")
                self._set(run, state="FAILED", error=f"{type(exc).__name__}: {exc}")
                return
        self._set(run, state="SUCCEEDED")

    def _set(self, run: dict, **changes: Any) -> None:
        with self.state.lock:
            run.update(changes)
            if changes.get("state") in FINAL_STATES:
                run["finished_at"] = _utc()


class _ThreadRouted:
    """A stand-in for ``sys.stdout``/``sys.stderr`` that sends one thread's writes to ``log`` and
    every other thread's to the stream it replaced (``contextlib.redirect_stdout`` would swap the
    process's stream, and the test's own output printed meanwhile would land in the run's log)."""

    def __init__(self, original: Any, log: Any, thread: int) -> None:
        self._original, self._log, self._thread = original, log, thread

    def _target(self) -> Any:
        return self._log if threading.get_ident() == self._thread else self._original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


@contextlib.contextmanager
def _this_thread_writes_to(log: Any) -> Any:
    import sys

    from kfp.local import logging_utils

    thread = threading.get_ident()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ThreadRouted(saved[0], log, thread), _ThreadRouted(saved[1], log, thread)
    # kfp.local indents a task's output by swapping builtins.print, for every thread: the test's own
    # prints meanwhile (the CLI's "Run id: ...") came out indented. The run's log needs no indent.
    indented_print, logging_utils.indented_print = logging_utils.indented_print, contextlib.nullcontext
    try:
        yield
    finally:
        logging_utils.indented_print = indented_print
        # Restore only what this block installed (a test may have swapped the streams meanwhile).
        if isinstance(sys.stdout, _ThreadRouted) and sys.stdout._log is log:  # noqa: SLF001
            sys.stdout = saved[0]
        if isinstance(sys.stderr, _ThreadRouted) and sys.stderr._log is log:  # noqa: SLF001
            sys.stderr = saved[1]

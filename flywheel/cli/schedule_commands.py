"""Local recurring runs: the ``flywheel scheduler`` daemon and ``schedule ...`` without --host."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from flywheel.cli.common import command_params, home_of, table


def register(subparsers: Any) -> None:
    """Adds ``scheduler``; ``schedule ...`` is declared with the Kubeflow commands and
    comes here (``create_local`` and friends) when no --host is given."""
    daemon = subparsers.add_parser(
        "scheduler",
        help="run due local schedules (a daemon)",
        description="Fire local schedules when their cron slots come due. Persisted across restarts; "
        "never fires the same slot twice.",
    )
    daemon.add_argument("--once", action="store_true", help="fire what is due now and exit")
    daemon.add_argument("--poll", type=float, default=10.0, help="seconds between checks (default 10)")
    daemon.set_defaults(handler=run_scheduler)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def create_local(args: argparse.Namespace) -> int:
    """``schedule create`` without --host: a schedule fired by ``flywheel scheduler``."""
    from flywheel.pipeline_file import load_pipeline
    from flywheel.scheduling import ScheduleStore, validate_cron

    validate_cron(args.cron)  # a bad expression fails before anything else
    pipe = load_pipeline(args.pipeline_file, args.pipeline)
    params = pipe.expand_names(command_params(args, pipe))  # stored as TASK.PARAM where -p named one task's
    pipe.resolve_parameters(params)  # reject bad parameters now, not at 3 a.m.
    store = ScheduleStore(home_of(args))
    schedule = store.create(
        args.name,
        args.cron,
        args.pipeline_file,
        pipeline_name=pipe.name,
        parameters=params,
        catchup=args.catchup,
        max_concurrency=args.max_concurrency,
    )
    print(f"Created schedule '{schedule.name}': {pipe.name} at '{schedule.cron}', next {_when(store.next_slot(schedule))}")
    print("Local schedules fire while `flywheel scheduler` runs.")
    return 0


def list_local(args: argparse.Namespace) -> int:
    """``schedule list`` without --host."""
    from flywheel.scheduling import ScheduleStore

    store = ScheduleStore(home_of(args))
    rows = []
    for s in store.list():
        firings = store.firings(s.name, limit=1)
        last = f"{_when(firings[0][0])} ({firings[0][1]})" if firings else "-"
        rows.append(
            [
                s.name,
                s.pipeline_name,
                s.cron,
                "paused" if s.paused else "active",
                "-" if s.paused else _when(store.next_slot(s)),
                last,
            ]
        )
    if not rows:
        print("No local schedules. Create one with: flywheel schedule create NAME --cron '0 3 * * *' PIPELINE_FILE")
        return 0
    print(table(["NAME", "PIPELINE", "CRON", "STATE", "NEXT", "LAST FIRED"], rows))
    return 0


def change_local(args: argparse.Namespace, action: str) -> int:
    """``schedule pause|resume|delete`` without --host."""
    from flywheel.scheduling import ScheduleStore

    store = ScheduleStore(home_of(args))
    if action == "delete":
        store.delete(args.name)
    else:
        store.set_paused(args.name, action == "pause")
    print(f"Schedule '{args.name}': {action}d")
    return 0


def run_scheduler(args: argparse.Namespace) -> int:
    from flywheel.scheduling import Scheduler

    home = home_of(args)
    scheduler = Scheduler(home, log=lambda line: print(f"[{dt.datetime.now():%H:%M:%S}] {line}", flush=True))
    if not args.once:
        print(f"flywheel scheduler watching {home.root} every {args.poll:g}s (Ctrl-C stops)", flush=True)
    scheduler.serve(poll_s=args.poll, once=args.once)
    return 0

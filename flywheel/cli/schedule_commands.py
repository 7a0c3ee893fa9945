"""Recurring runs: ``flywheel schedule ...`` (local, or KFP with --host) and ``flywheel scheduler``."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from flywheel.cli.run_commands import parse_params


def register(subparsers: Any) -> None:
    schedule = subparsers.add_parser(
        "schedule",
        help="recurring runs: create, list, pause, resume, delete",
        description="Recurring runs. Without --host they are local and fired by `flywheel scheduler`; "
        "with --host they are Kubeflow Pipelines recurring runs.",
    )
    actions = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)

    def remote_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", help="Kubeflow Pipelines API URL (omit for a local schedule)")
        parser.add_argument("--namespace", help="Kubeflow namespace (with --host)")
        parser.add_argument("--token", help="existing bearer token (with --host)")

    create = actions.add_parser("create", help="create a schedule")
    create.add_argument("name")
    create.add_argument(
        "--cron",
        required=True,
        help="local: 5 fields 'min hour dom month dow'; KFP (--host): 6 fields with seconds first, "
        "or 5 fields (seconds 0 are added)",
    )
    create.add_argument("pipeline_file")
    create.add_argument("--pipeline", dest="pipeline_name", help="which pipeline, if the file defines several")
    create.add_argument("--param", "-p", action="append", default=[], metavar="K=V")
    create.add_argument("--catchup", action="store_true", help="after downtime, fire every missed slot (default: only the latest)")
    create.add_argument("--max-concurrency", type=int, default=1, help="runs of this schedule at once (default 1)")
    create.add_argument("--experiment", help="KFP experiment (with --host)")
    remote_options(create)
    create.set_defaults(handler=create_schedule)

    listing = actions.add_parser("list", help="list schedules with their next and last firings")
    remote_options(listing)
    listing.set_defaults(handler=list_schedules)

    for action, helptext in (("pause", "stop firing"), ("resume", "fire again"), ("delete", "remove")):
        parser = actions.add_parser(action, help=f"{helptext} a schedule")
        parser.add_argument("name", help="schedule name (local) or recurring run id (KFP)")
        remote_options(parser)
        parser.set_defaults(handler=change_schedule, action=action)

    daemon = subparsers.add_parser(
        "scheduler",
        help="run due local schedules (a daemon)",
        description="Fire local schedules when their cron slots come due. Persisted across restarts; "
        "never fires the same slot twice.",
    )
    daemon.add_argument("--once", action="store_true", help="fire what is due now and exit")
    daemon.add_argument("--poll", type=float, default=10.0, help="seconds between checks (default 10)")
    daemon.set_defaults(handler=run_scheduler)


def _home(args: argparse.Namespace) -> Any:
    from flywheel.home import Home

    return Home.resolve(args.home)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def create_schedule(args: argparse.Namespace) -> int:
    from flywheel.pipeline_file import load_pipeline

    pipe = load_pipeline(args.pipeline_file, args.pipeline_name)
    params = parse_params(args.param)
    pipe.resolve_parameters(params)  # reject bad parameters now, not at 3 a.m.
    if args.host:
        from flywheel.kubeflow import client

        recurring_id = client.create_schedule(
            args.name,
            args.cron,
            pipe,
            args.host,
            max_concurrency=args.max_concurrency,
            no_catchup=not args.catchup,
            params=params,
            experiment=args.experiment,
            namespace=args.namespace,
            existing_token=args.token,
        )
        print(f"Created Kubeflow recurring run {recurring_id} ('{args.name}', cron {args.cron})")
        return 0
    from flywheel.scheduling import ScheduleStore

    store = ScheduleStore(_home(args))
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


def list_schedules(args: argparse.Namespace) -> int:
    from flywheel.cli.run_commands import _table

    if args.host:
        from flywheel.kubeflow import client

        rows = [
            [s["id"], s["name"], s.get("cron", ""), s.get("status", ""), str(s.get("max_concurrency", ""))]
            for s in client.list_schedules(args.host, namespace=args.namespace, existing_token=args.token)
        ]
        print(_table(["ID", "NAME", "CRON", "STATUS", "MAX CONCURRENCY"], rows))
        return 0
    from flywheel.scheduling import ScheduleStore

    store = ScheduleStore(_home(args))
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
    print(_table(["NAME", "PIPELINE", "CRON", "STATE", "NEXT", "LAST FIRED"], rows))
    return 0


def change_schedule(args: argparse.Namespace) -> int:
    if args.host:
        from flywheel.kubeflow import client

        operation = {
            "pause": client.pause_schedule,
            "resume": client.resume_schedule,
            "delete": client.delete_schedule,
        }[args.action]
        operation(args.name, args.host, namespace=args.namespace, existing_token=args.token)
        print(f"{args.action.capitalize()}d Kubeflow recurring run {args.name}")
        return 0
    from flywheel.scheduling import ScheduleStore

    store = ScheduleStore(_home(args))
    if args.action == "delete":
        store.delete(args.name)
    else:
        store.set_paused(args.name, args.action == "pause")
    print(f"Schedule '{args.name}': {args.action}d")
    return 0


def run_scheduler(args: argparse.Namespace) -> int:
    from flywheel.scheduling import Scheduler

    home = _home(args)
    scheduler = Scheduler(home, log=lambda line: print(f"[{dt.datetime.now():%H:%M:%S}] {line}", flush=True))
    if not args.once:
        print(f"flywheel scheduler watching {home.root} every {args.poll:g}s (Ctrl-C stops)", flush=True)
    scheduler.serve(poll_s=args.poll, once=args.once)
    return 0

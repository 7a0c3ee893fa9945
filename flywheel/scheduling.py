"""Recurring runs on this machine: cron schedules and the ``flywheel scheduler`` daemon.

Schedules live in ``<home>/schedules.sqlite`` (stdlib sqlite3, WAL), so they
survive restarts. Every slot a schedule fires is a row with a UNIQUE
(schedule, slot) key, written before the run starts: a slot can never fire
twice, not across restarts and not with two daemons racing.

Catch-up policy (KFP's ``no_catchup``): after downtime a schedule without
catch-up fires only the most recent missed slot; with catch-up it fires every
missed slot, oldest first. ``max_concurrency`` bounds the runs of one
schedule that may be RUNNING at once; a slot that finds the limit reached
waits for the next poll.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import time
from typing import Any, Callable

from flywheel.dsl.parameters import param_argument
from flywheel.errors import FlywheelError, ScheduleError
from flywheel.names import check_name
from flywheel import localdb
from flywheel.home import Home


@dataclasses.dataclass
class Schedule:
    name: str
    cron: str
    pipeline_file: str
    pipeline_name: str
    parameters: dict[str, str]
    paused: bool
    catchup: bool
    max_concurrency: int
    created_at: float
    last_slot: float | None


def validate_cron(expression: str) -> str:
    """Checks a 5-field cron expression (minute hour day month weekday).

    Raises:
        ScheduleError: with the rule, the value and an example.
    """
    from croniter import croniter

    fields = expression.split()
    if len(fields) != 5 or not croniter.is_valid(expression):
        raise ScheduleError(
            f"Invalid cron expression {expression!r}: local schedules take 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *' for 03:00 every day."
        )
    return expression


def slots_between(cron: str, after: float, until: float) -> list[float]:
    """Cron slots in (after, until], as epoch seconds (local time)."""
    from croniter import croniter

    slots = []
    iterator = croniter(cron, dt.datetime.fromtimestamp(after))
    while True:
        slot = iterator.get_next(float)
        if slot > until:
            return slots
        slots.append(slot)
        if len(slots) > 10000:  # a years-long outage with catch-up: keep the newest
            slots = slots[-1000:]


class ScheduleStore:
    """Schedules and their firings in ``<home>/schedules.sqlite``."""

    def __init__(self, home: Home) -> None:
        self.home = home.ensure()
        self.path = os.path.join(home.root, "schedules.sqlite")
        with self._db() as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS schedules (
                    name TEXT PRIMARY KEY, cron TEXT NOT NULL, pipeline_file TEXT NOT NULL,
                    pipeline_name TEXT NOT NULL, parameters TEXT NOT NULL, paused INTEGER NOT NULL,
                    catchup INTEGER NOT NULL, max_concurrency INTEGER NOT NULL,
                    created_at REAL NOT NULL, last_slot REAL);
                CREATE TABLE IF NOT EXISTS firings (
                    schedule TEXT NOT NULL, slot REAL NOT NULL, run_id TEXT NOT NULL,
                    fired_at REAL NOT NULL, PRIMARY KEY (schedule, slot));
                """
            )

    def _db(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return localdb.connect(self.path)

    def create(
        self,
        name: str,
        cron: str,
        pipeline_file: str,
        *,
        pipeline_name: str,
        parameters: dict[str, str] | None = None,
        catchup: bool = False,
        max_concurrency: int = 1,
        now: float | None = None,
    ) -> Schedule:
        check_name("schedule", name)  # its run ids, hence log file names, start with it
        validate_cron(cron)
        if max_concurrency < 1:
            raise ScheduleError(f"--max-concurrency must be >= 1; got {max_concurrency}.")
        with self._db() as db:
            try:
                db.execute(
                    "INSERT INTO schedules VALUES (?,?,?,?,?,?,?,?,?,NULL)",
                    (
                        name,
                        cron,
                        os.path.abspath(pipeline_file),
                        pipeline_name,
                        json.dumps(parameters or {}),
                        0,
                        int(catchup),
                        max_concurrency,
                        time.time() if now is None else now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ScheduleError(
                    f"A schedule named '{name}' exists already; delete it first or pick another name."
                ) from None
        return self.get(name)

    def _row(self, row: tuple[Any, ...]) -> Schedule:
        return Schedule(
            name=row[0],
            cron=row[1],
            pipeline_file=row[2],
            pipeline_name=row[3],
            parameters=json.loads(row[4]),
            paused=bool(row[5]),
            catchup=bool(row[6]),
            max_concurrency=row[7],
            created_at=row[8],
            last_slot=row[9],
        )

    def get(self, name: str) -> Schedule:
        with self._db() as db:
            row = db.execute("SELECT * FROM schedules WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ScheduleError(f"No schedule named '{name}'. List them with: flywheel schedule list")
        return self._row(row)

    def list(self) -> list[Schedule]:
        with self._db() as db:
            return [self._row(r) for r in db.execute("SELECT * FROM schedules ORDER BY name")]

    def set_paused(self, name: str, paused: bool) -> Schedule:
        self.get(name)
        with self._db() as db:
            db.execute("UPDATE schedules SET paused = ? WHERE name = ?", (int(paused), name))
        return self.get(name)

    def delete(self, name: str) -> None:
        self.get(name)
        with self._db() as db:
            db.execute("DELETE FROM schedules WHERE name = ?", (name,))

    def claim_slot(self, schedule: str, slot: float, run_id: str) -> bool:
        """Records that ``slot`` fires as ``run_id``; False if it fired before."""
        with self._db() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO firings VALUES (?,?,?,?)", (schedule, slot, run_id, time.time()))
                db.execute("UPDATE schedules SET last_slot = MAX(COALESCE(last_slot, 0), ?) WHERE name = ?", (slot, schedule))
                db.execute("COMMIT")
                return True
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                return False

    def skip_slots(self, schedule: str, until: float) -> None:
        """Moves the schedule's watermark past slots that will never fire (no catch-up)."""
        with self._db() as db:
            db.execute("UPDATE schedules SET last_slot = MAX(COALESCE(last_slot, 0), ?) WHERE name = ?", (until, schedule))

    def firings(self, schedule: str, limit: int = 20) -> list[tuple[float, str]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT slot, run_id FROM firings WHERE schedule = ? ORDER BY slot DESC LIMIT ?", (schedule, limit)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def next_slot(self, schedule: Schedule, now: float | None = None) -> float:
        from croniter import croniter

        return croniter(schedule.cron, dt.datetime.fromtimestamp(time.time() if now is None else now)).get_next(float)


def launch_run(schedule: Schedule, run_id: str, home: Home) -> subprocess.Popen[bytes]:
    """Starts ``flywheel run`` for a schedule slot in its own process."""
    check_name("run", run_id)
    args = [sys.executable, "-m", "flywheel", "--home", home.root, "run", schedule.pipeline_file]
    args += ["--pipeline", schedule.pipeline_name, "--run-id", run_id]
    args += ["--trigger", "schedule", "--trigger-reason", f"schedule {schedule.name} ({schedule.cron})"]
    for key, value in schedule.parameters.items():
        args += ["--param", param_argument(key, value)]
    log_dir = os.path.join(home.logs, "scheduler")
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, f"{run_id}.out"), "wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


class Scheduler:
    """Fires due slots of every active schedule.

    Args:
        home: The project home (schedules, metadata).
        launch: Starts a run for (schedule, run_id); returns anything. Tests
            pass a fake; the default starts ``flywheel run`` in a subprocess.
        clock: Returns the current epoch time.
    """

    def __init__(
        self,
        home: Home,
        *,
        launch: Callable[[Schedule, str], Any] | None = None,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = print,
    ) -> None:
        self.home = home
        self.store = ScheduleStore(home)
        self.launch = launch or (lambda schedule, run_id: launch_run(schedule, run_id, home))
        self.clock = clock
        self.log = log

    def _running(self, schedule: Schedule) -> int:
        """Runs of this schedule still RUNNING in ML Metadata."""
        if not os.path.exists(self.home.metadata_db):
            return 0
        from flywheel.metadata import MetadataStore

        store = MetadataStore(self.home)
        running = 0
        for _slot, run_id in self.store.firings(schedule.name, limit=max(10, schedule.max_concurrency * 4)):
            try:
                if store.get_run(run_id).state == "RUNNING":
                    running += 1
            except FlywheelError:
                # Claimed but not yet recorded by its run: count it as running for a while.
                running += 1 if self._recent(run_id) else 0
        return running

    def _recent(self, run_id: str) -> bool:
        out = os.path.join(self.home.logs, "scheduler", f"{run_id}.out")
        return os.path.exists(out) and self.clock() - os.path.getmtime(out) < 60

    def _unused_run_id(self, run_id: str) -> str:
        """``run_id``, or ``run_id-2``, ``-3``... when a run of that name exists.

        A slot fires once, but a schedule deleted and created again (or its firings cleared) meets
        the same minute's name; ``flywheel run`` refuses a taken name, and the slot would be lost.
        """
        from flywheel.metadata import MetadataStore

        store = MetadataStore(self.home)

        def taken(name: str) -> bool:
            try:
                store.get_run(name)
                return True
            except FlywheelError:
                return os.path.exists(os.path.join(self.home.logs, "scheduler", f"{name}.out"))

        candidate, n = run_id, 1
        while taken(candidate):
            n += 1
            candidate = f"{run_id}-{n}"
        return candidate

    def tick(self) -> list[str]:
        """Fires what is due now; returns the run ids started."""
        now = self.clock()
        started = []
        for schedule in self.store.list():
            if schedule.paused:
                continue
            after = schedule.last_slot if schedule.last_slot is not None else schedule.created_at
            due = slots_between(schedule.cron, after, now)
            if not due:
                continue
            if not schedule.catchup and len(due) > 1:
                self.store.skip_slots(schedule.name, due[-2])
                due = due[-1:]
            for slot in due:
                if self._running(schedule) >= schedule.max_concurrency:
                    self.log(f"schedule {schedule.name}: {schedule.max_concurrency} run(s) still running; slot waits")
                    break
                stamp = dt.datetime.fromtimestamp(slot).strftime("%Y%m%d-%H%M")
                run_id = self._unused_run_id(f"{schedule.name}-{stamp}-sched")
                if not self.store.claim_slot(schedule.name, slot, run_id):
                    continue
                self.log(f"schedule {schedule.name}: firing slot {dt.datetime.fromtimestamp(slot):%Y-%m-%d %H:%M} as run {run_id}")
                self.launch(schedule, run_id)
                started.append(run_id)
        return started

    def serve(self, *, poll_s: float = 10.0, once: bool = False) -> None:
        """Runs ``tick`` every ``poll_s`` seconds until interrupted (or once)."""
        while True:
            self.tick()
            if once:
                return
            time.sleep(poll_s)

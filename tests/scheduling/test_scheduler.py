"""Local recurring runs: due slots fire once, across restarts; catch-up; pause; concurrency."""

from __future__ import annotations

import datetime as dt
import subprocess
import time

import pytest

from flywheel.errors import RunNotFoundError
from flywheel.metadata import MetadataStore
from flywheel.scheduling import Scheduler, ScheduleError, ScheduleStore, validate_cron
from tests.conftest import REPO

PIPELINE = """
from flywheel import pipeline
from tests.runner.toy import produce

@pipeline(name="nightly")
def nightly(text: str = "x"):
    produce(text=text)
"""

T0 = dt.datetime(2026, 11, 1, 0, 0, 30).timestamp()  # 30 s past a minute


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_scheduler(home, clock, launched):
    return Scheduler(home, launch=lambda s, run_id: launched.append(run_id), clock=clock, log=lambda _: None)


def test_a_due_slot_fires_exactly_once_even_across_a_restart(home, tmp_path):
    ScheduleStore(home).create("every5", "*/5 * * * *", str(tmp_path / "p.py"), pipeline_name="nightly", now=T0)
    clock, launched = Clock(T0 + 60), []
    assert make_scheduler(home, clock, launched).tick() == []  # 00:01: nothing due

    clock.now = T0 + 5 * 60  # 00:05:30
    first = make_scheduler(home, clock, launched).tick()
    assert first == ["every5-20261101-0005-sched"]
    # A restarted daemon (new objects, same store) and a second tick fire nothing more.
    assert make_scheduler(home, clock, launched).tick() == []
    assert make_scheduler(home, clock, launched).tick() == []
    assert launched == first
    # Two daemons racing for one slot: the UNIQUE slot claim lets exactly one win.
    store = ScheduleStore(home)
    assert store.claim_slot("every5", 123.0, "a") is True
    assert store.claim_slot("every5", 123.0, "b") is False


@pytest.mark.parametrize("catchup, expected", [(False, 1), (True, 6)])
def test_catchup_policy_after_downtime(home, tmp_path, catchup, expected):
    ScheduleStore(home).create(
        "every10", "*/10 * * * *", str(tmp_path / "p.py"), pipeline_name="nightly", catchup=catchup, max_concurrency=10, now=T0
    )
    launched: list[str] = []
    clock = Clock(T0 + 60 * 60)  # down for an hour: slots 00:10 ... 01:00
    make_scheduler(home, clock, launched).tick()
    assert len(launched) == expected
    assert launched[-1] == "every10-20261101-0100-sched"  # the newest slot always fires
    assert make_scheduler(home, clock, launched).tick() == []  # skipped slots never come back


def test_paused_schedule_does_not_fire_and_resumes(home, tmp_path):
    store = ScheduleStore(home)
    store.create("s", "* * * * *", str(tmp_path / "p.py"), pipeline_name="nightly", now=T0)
    store.set_paused("s", True)
    launched: list[str] = []
    clock = Clock(T0 + 120)
    assert make_scheduler(home, clock, launched).tick() == []
    store.set_paused("s", False)
    assert len(make_scheduler(home, clock, launched).tick()) == 1


@pytest.mark.parametrize("cron", ["* * * *", "0 0 * * * *", "61 * * * *", "every day"])
def test_invalid_cron_is_rejected_with_an_example(cron):
    with pytest.raises(ScheduleError, match="5 fields"):
        validate_cron(cron)


def test_duplicate_and_unknown_schedule_names(home, tmp_path):
    store = ScheduleStore(home)
    store.create("s", "0 3 * * *", str(tmp_path / "p.py"), pipeline_name="nightly")
    with pytest.raises(ScheduleError, match="exists already"):
        store.create("s", "0 3 * * *", str(tmp_path / "p.py"), pipeline_name="nightly")
    with pytest.raises(ScheduleError, match="No schedule named 'nope'"):
        store.set_paused("nope", True)


def test_scheduler_starts_real_runs_recorded_as_scheduled(home, tmp_path, flywheel_cmd):
    path = tmp_path / "nightly.py"
    path.write_text(PIPELINE)

    def env_cli(*args):
        return subprocess.run([*flywheel_cmd, *args], cwd=REPO, capture_output=True, text=True, timeout=120)

    created = env_cli("schedule", "create", "nightly", "--cron", "* * * * *", str(path), "--param", "text=cron",
                      "--param", "sleep_s=0.01")  # produce's own parameter: stored as produce.sleep_s
    assert created.returncode == 0, created.stderr
    store = ScheduleStore(home)
    assert store.get("nightly").parameters == {"text": "cron", "produce.sleep_s": "0.01"}
    # Pretend the schedule was created two minutes ago so a slot is due now.
    store.skip_slots("nightly", 0)
    with store._db() as db:
        db.execute("UPDATE schedules SET created_at = created_at - 120, last_slot = NULL")
    fired = env_cli("scheduler", "--once")
    assert fired.returncode == 0, fired.stderr
    assert "firing slot" in fired.stdout
    run_id = store.firings("nightly")[0][1]
    deadline = time.monotonic() + 60
    state = "not started"
    while time.monotonic() < deadline and state in ("not started", "RUNNING"):
        try:
            run = MetadataStore(home).get_run(run_id)
            state = run.state
        except RunNotFoundError:  # the launched process has not recorded its run yet
            pass
        time.sleep(0.2)
    assert state == "COMPLETE"
    assert run.trigger == "schedule" and "nightly" in run.trigger_reason
    assert run.parameters == {"text": "cron", "produce.sleep_s": 0.01}
    listing = env_cli("schedule", "list")
    assert "nightly" in listing.stdout and run_id in listing.stdout


def test_a_task_parameter_several_tasks_have_is_refused_when_the_schedule_is_created(home, tmp_path, capsys, monkeypatch):
    from flywheel.cli.main import main

    monkeypatch.chdir(REPO)  # the pipeline imports tests.runner.toy
    path = tmp_path / "pair.py"
    path.write_text(PIPELINE.replace("    produce(text=text)", "    consume(data=produce(text=text).output)")
                    .replace("import produce", "import consume, produce"))
    argv = ["--home", str(home.root), "schedule", "create", "pair", "--cron", "* * * * *", str(path)]
    assert main([*argv, "--param", "sleep_s=1"]) == 1
    assert "say which: -p produce.sleep_s=, -p consume.sleep_s=" in capsys.readouterr().err
    assert ScheduleStore(home).list() == []
    assert main([*argv, "--param", "consume.sleep_s=1"]) == 0
    assert ScheduleStore(home).get("pair").parameters == {"consume.sleep_s": "1"}


def test_a_slot_whose_run_name_is_taken_fires_under_a_fresh_name(home, tmp_path):
    # A schedule deleted and created again meets the same minute's run name; `flywheel run` refuses
    # a taken name, so firing under it would lose the slot (and show the old run as its result).
    store = ScheduleStore(home)
    store.create("s", "* * * * *", str(tmp_path / "p.py"), pipeline_name="nightly", now=T0)
    launched: list[str] = []
    clock = Clock(T0 + 60)
    assert make_scheduler(home, clock, launched).tick() == ["s-20261101-0001-sched"]
    MetadataStore(home).create_run("s-20261101-0001-sched", "nightly", parameters={}, pipeline_file="p.py")
    store.delete("s")
    with store._db() as db:
        db.execute("DELETE FROM firings")
    store.create("s", "* * * * *", str(tmp_path / "p.py"), pipeline_name="nightly", now=T0)
    assert make_scheduler(home, clock, launched).tick() == ["s-20261101-0001-sched-2"]

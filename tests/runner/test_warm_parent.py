"""The warm parent: workers forked from a process that imported the heavy libraries once.

The fast tests give the warm parent a stand-in module to import (``toy_preload``, slow on purpose);
one test runs real TensorFlow ops in workers forked after ``import tensorflow`` (in a fresh process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flywheel import pipeline
from flywheel.runner import LocalRunner, warm
from tests.conftest import REPO
from tests.runner.toy_warm import PRELOADED, dies, where, where_isolated


@pytest.fixture
def stand_in(monkeypatch):
    """The warm parent imports toy_preload (0.8 s) instead of TensorFlow; every toy task 'uses' it."""
    assert PRELOADED not in sys.modules  # else every fork would have it, warm or not
    monkeypatch.setenv("TOY_PRELOAD_SECONDS", "0.8")
    monkeypatch.setattr(warm, "modules_for", lambda components: (PRELOADED,))
    monkeypatch.setattr(warm, "uses_tensorflow", lambda component: True)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_downstream_workers_are_forked_warm_and_an_isolated_one_still_exits(home, stand_in):
    @pipeline(name="warm")
    def warm_chain():
        source = where(after="start")
        second = where(after="source").after(source)
        alone = where_isolated().after(second)
        where(after="isolated").after(alone)

    result = LocalRunner(home, max_workers=1).run(warm_chain)

    assert result.ok, result.errors
    seen = {task: outputs["out"].properties for task, outputs in result.outputs.items()}
    source, second, alone, last = seen["where"], seen["where-2"], seen["where_isolated"], seen["where-3"]
    # The source task did not wait for the import: a worker forked from the runner, without the module.
    assert source["ppid"] == os.getpid() and source["preloaded"] is False
    # Later tasks ran in children of the warm parent, which had imported the module for them.
    warm_pid = second["ppid"]
    assert warm_pid != os.getpid()
    assert all(s["ppid"] == warm_pid and s["preloaded"] is True for s in (second, alone, last))
    assert second["pid"] == alone["pid"]  # ordinary tasks share a warm worker
    assert last["pid"] != alone["pid"]  # the isolated task's worker exited; the next is a fresh warm one
    assert all(_gone(pid) for pid in (warm_pid, source["pid"], alone["pid"], last["pid"]))
    log = os.path.join(home.logs, result.run.run_id, "warm-parent.log")
    assert f"imported {PRELOADED}" in open(log, encoding="utf-8").read()

    again = LocalRunner(home, max_workers=1).run(warm_chain)  # all cached: no job, so no warm parent
    assert again.ok and set(again.states.values()) == {"CACHED"}, again.states
    assert not os.path.exists(os.path.join(home.logs, again.run.run_id, "warm-parent.log"))


def test_a_warm_worker_that_dies_fails_its_node_with_the_signal(home, stand_in):
    @pipeline(name="warm-dies")
    def warm_dies():
        source = where(after="start")
        dies(after="source").after(source)

    result = LocalRunner(home, max_workers=2).run(warm_dies)

    assert not result.ok
    assert result.states["dies"] == "FAILED"
    assert "killed by signal SIGKILL" in result.errors["dies"]


def test_the_warm_parent_is_used_only_when_a_component_may_import_tensorflow(monkeypatch):
    from flywheel.components.train import train
    from flywheel.components.validate import validate
    from tests.runner.toy import consume, produce

    assert warm.uses_tensorflow(train) and warm.uses_tensorflow(validate)  # validate via TFDV
    assert not warm.uses_tensorflow(produce)
    assert warm.modules_for([produce, consume]) == ()
    assert "tensorflow" in warm.modules_for([produce, train])
    monkeypatch.setenv(warm.ENV_SWITCH, "0")
    assert warm.modules_for([produce, train]) == ()


SCRIPT = """
import json, os, sys
from flywheel import pipeline
from flywheel.home import Home
from flywheel.runner import LocalRunner
from tests.runner.toy_tf import tf_sum, tf_sum_isolated
from tests.runner.toy_warm import where

@pipeline(name="tf-warm")
def tf_warm():
    source = where(after="start")
    first = tf_sum(after="source").after(source)
    alone = tf_sum_isolated().after(first)
    tf_sum(values=[5.0, 6.0], after="isolated").after(alone)

result = LocalRunner(Home(sys.argv[1]).ensure(), max_workers=1).run(tf_warm)
print("RESULT " + json.dumps({
    "ok": result.ok, "errors": result.errors, "runner": os.getpid(),
    "runner_has_tf": "tensorflow" in sys.modules,
    "outputs": {t: o["out"].properties for t, o in result.outputs.items()},
}))
"""


def test_tensorflow_ops_run_in_workers_forked_after_the_import(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "home")], cwd=REPO, capture_output=True, text=True,
        timeout=600, env={k: v for k, v in os.environ.items() if k != warm.ENV_SWITCH},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = json.loads(lines[-1][len("RESULT "):])
    assert found["ok"], found["errors"]
    assert found["runner_has_tf"] is False  # the runner itself never imports TensorFlow
    out = found["outputs"]
    first, alone, last = out["tf_sum"], out["tf_sum_isolated"], out["tf_sum-2"]
    assert (first["sum"], alone["sum"], last["sum"]) == (3.0, 7.0, 11.0)
    assert all(o["tf_was_imported"] for o in (first, alone, last))  # forked warm, not imported by the job
    assert first["ppid"] == alone["ppid"] == last["ppid"] != found["runner"]
    assert last["pid"] != alone["pid"]  # the isolated job's worker exited after it
    assert _gone(alone["ppid"])


SMAPS = """\
7f0000000000-7f0000100000 r-xp 00000000 08:01 11 /lib/libtensorflow_framework.so.2
Rss:                 512 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000100000-7f0000200000 r--p 00100000 08:01 11 /lib/libtensorflow_framework.so.2
Rss:                 256 kB
Anonymous:            64 kB
7f0000200000-7f0000300000 rw-p 00200000 08:01 11 /lib/libtensorflow_framework.so.2
Rss:                 128 kB
Anonymous:           128 kB
7f0000300000-7f0000400000 r--p 00000000 08:01 12 /usr/lib/locale/C.utf8/LC_CTYPE
Rss:                   0 kB
Anonymous:             0 kB
7f0000400000-7f0000500000 r--p 00000000 00:00 0 [vvar]
Rss:                   8 kB
Anonymous:             0 kB
7f0000500000-7f0000600000 r--p 00000000 08:01 13 /lib/with space/libx.so
Rss:                  64 kB
Anonymous:             0 kB
"""


def test_only_read_only_file_mappings_without_copied_pages_are_let_go():
    found = warm._read_only_file_mappings(SMAPS)
    # The text segment and the file with a space in its path; not the RELRO segment (a copied
    # page), the writable data, an untouched file, or a kernel mapping.
    assert found == [(0x7F0000000000, 0x7F0000100000, 512 * 1024), (0x7F0000500000, 0x7F0000600000, 64 * 1024)]


def test_letting_go_of_library_pages_keeps_the_process_working():
    script = (
        "import numpy, pandas\n"
        "from flywheel.runner import warm\n"
        "def rss():\n"
        "    return int(open('/proc/self/smaps_rollup').read().split('Rss:')[1].split()[0])\n"
        "before = rss(); dropped = warm._drop_clean_file_pages(); after = rss()\n"
        "frame = pandas.DataFrame({'a': numpy.arange(1000.0)})\n"
        "print(dropped, before, after, float(frame['a'].sum()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dropped, before, after, total = proc.stdout.split()
    assert int(dropped) > 1 << 20 and int(after) < int(before)
    assert float(total) == 499500.0  # numpy and pandas still run after their pages were let go


KILL_PIPELINE = """
from flywheel import pipeline
from flywheel.runner import warm
from tests.runner.toy import half_writer
from tests.runner.toy_warm import where

warm.modules_for = lambda components: ("tests.runner.toy_preload",)  # the stand-in, as in the tests above
warm.uses_tensorflow = lambda component: True

@pipeline(name="killwarm")
def killwarm(ready: str):
    source = where(after="start")
    half_writer(ready=ready).after(source)
"""


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_killing_the_runner_takes_the_warm_parent_and_its_workers_with_it(tmp_path, home, flywheel_cmd):
    import signal
    import time

    path = tmp_path / "killwarm.py"
    path.write_text(KILL_PIPELINE)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([*flywheel_cmd, "run", str(path), "--param", f"ready={ready}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.02)
        worker = int(ready.read_text())
        with open(f"/proc/{worker}/stat", encoding="ascii") as handle:
            warm_parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        assert warm_parent != proc.pid  # the hanging node runs in a warm worker
        os.kill(proc.pid, signal.SIGKILL)  # the runner alone
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while not (_dead(warm_parent) and _dead(worker)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _dead(warm_parent), "the warm parent outlived its runner"
        assert _dead(worker), "a warm worker outlived its runner"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

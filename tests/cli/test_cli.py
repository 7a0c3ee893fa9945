"""The CLI end to end, as a user drives it (subprocesses, real store)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

PIPELINE = """
from flywheel import pipeline
from tests.runner.toy import produce, consume

@pipeline(name="demo")
def demo(text: str = "hi", flag: str = ""):
    data = produce(text=text)
    consume(data=data.output, fail_if_exists=flag)
"""


def cli(flywheel_cmd, *args):
    return subprocess.run([*flywheel_cmd, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture
def pipeline_file(tmp_path):
    path = tmp_path / "demo.py"
    path.write_text(PIPELINE)
    return path


def test_run_then_runs_show_and_lineage(home, pipeline_file, flywheel_cmd):
    first = cli(flywheel_cmd, "run", str(pipeline_file), "--param", "text=abc")
    assert first.returncode == 0, first.stderr
    assert "produce" in first.stdout and "COMPLETE" in first.stdout
    assert home.artifacts in first.stdout  # prints where the outputs are

    second = cli(flywheel_cmd, "run", str(pipeline_file), "--param", "text=abc")
    assert "2 cached" in second.stdout

    listing = cli(flywheel_cmd, "runs")
    lines = listing.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["RUN", "ID", "PIPELINE", "STATE"]
    assert len(lines) == 3 and all("COMPLETE" in line for line in lines[1:])
    newest = lines[1].split()[0]

    shown = cli(flywheel_cmd, "runs", "show", newest)
    assert shown.returncode == 0
    assert "CACHED" in shown.stdout and "hit" in shown.stdout
    assert '"text": "abc"' in shown.stdout
    assert "log " in shown.stdout and "output  out: Metrics" in shown.stdout

    uri = [l for l in shown.stdout.splitlines() if "output  out: Metrics" in l][0].split()[-1]
    lineage = cli(flywheel_cmd, "lineage", uri)
    assert lineage.returncode == 0
    text = lineage.stdout
    assert text.index("consume") < text.index("produce")
    assert "<- data: Dataset" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "/no/such/pipeline.py"], "Pipeline file not found: /no/such/pipeline.py"),
        (["run", "{file}", "--param", "nope=1"], "has no parameter 'nope'"),
        (["run", "{file}", "--param", "text"], "--param takes NAME=VALUE"),
        (["runs", "show", "no-such-run"], "No run with id 'no-such-run'"),
        (["lineage", "999999"], "No artifact with id or URI '999999'"),
    ],
)
def test_user_errors_are_one_clear_line(home, pipeline_file, flywheel_cmd, args, message):
    cli(flywheel_cmd, "run", str(pipeline_file))  # so the store exists
    result = cli(flywheel_cmd, *[a.replace("{file}", str(pipeline_file)) for a in args])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr


def test_failing_component_shows_its_error_and_log_and_resume_fixes_it(home, pipeline_file, tmp_path, flywheel_cmd):
    flag = tmp_path / "flag"
    flag.write_text("x")
    failed = cli(flywheel_cmd, "run", str(pipeline_file), "--param", f"flag={flag}")
    assert failed.returncode == 1
    assert "node 'consume' failed: ValueError: flag file" in failed.stdout
    log_line = [l for l in failed.stdout.splitlines() if l.strip().startswith("log:")][0]
    with open(log_line.split("log:")[1].strip(), encoding="utf-8") as log:
        assert "Traceback" in log.read()  # the full traceback is in the node's log
    run_id = failed.stdout.split("flywheel run --resume ")[1].split()[0]

    flag.unlink()
    resumed = cli(flywheel_cmd, "run", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "REUSED" in resumed.stdout and f"Run {run_id}: COMPLETE" in resumed.stdout


def test_help_and_runs_import_nothing_heavy(home):
    probe = (
        "import sys, io, contextlib\n"
        "from flywheel.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['runs'])\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'apache_beam', 'kfp', 'tensorflow_data_validation', 'keras')]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr

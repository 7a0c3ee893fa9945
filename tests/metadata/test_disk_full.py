"""A store that cannot be written (disk full) is one clear error line from `run` and `runs`, not a traceback.

The disk is filled for real, per process: RLIMIT_FSIZE stops every write past
a few kilobytes (with SIGXFSZ ignored, write() fails as on a full disk), so
SQLite fails inside MLMD exactly where it would on a full volume.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

import pytest

from flywheel.metadata.failures import metadata_failure
from flywheel.metadata.store import MetadataStore
from tests.conftest import REPO

PIPELINE = """
from flywheel import pipeline
from tests.runner.toy import produce

@pipeline(name="disk")
def disk(text: str = "hi"):
    produce(text=text)
"""


def _small_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def _cli(*args, full: bool):
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_small_disk if full else None,  # noqa: PLW1509 - only sets limits
    )


def _assert_one_clear_line(result) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "The ML Metadata store" in errors[0] and "metadata.sqlite could not be used" in errors[0]
    assert "free space there (or use another --home)" in errors[0]


@pytest.fixture
def pipeline_file(tmp_path):
    path = tmp_path / "disk.py"
    path.write_text(PIPELINE)
    return path


def test_run_on_a_full_disk_is_one_clear_line_and_keeps_the_earlier_runs(home, pipeline_file):
    first = _cli("run", str(pipeline_file), full=False)
    assert first.returncode == 0, first.stderr

    result = _cli("run", str(pipeline_file), "--param", "text=new", full=True)

    _assert_one_clear_line(result)
    runs = MetadataStore(home).list_runs()
    assert [run.state for run in runs] == ["COMPLETE"]  # nothing lost, nothing half recorded


def test_runs_on_a_full_disk_is_one_clear_line(home, pipeline_file):
    assert _cli("run", str(pipeline_file), full=False).returncode == 0
    store = MetadataStore(home)
    orphan = store.create_run("disk-orphan", "disk", parameters={}, pipeline_file=str(pipeline_file))
    store.update_run(orphan.run_id, pid=2**22 + 12345, pid_start="1")  # its runner is gone: `runs` must record that

    result = _cli("runs", full=True)

    _assert_one_clear_line(result)
    again = _cli("runs", full=False)  # space freed: the same command now records the orphan
    assert again.returncode == 0, again.stderr
    assert [line.split()[2] for line in again.stdout.splitlines() if line.startswith("disk-orphan")] == ["FAILED"]


def test_the_message_keeps_sqlite_reason_and_drops_mlmd_proto_dump():
    from ml_metadata import errors as mlmd_errors

    raw = mlmd_errors.InternalError(
        'Cannot create node for type_id: 11 name: "r" custom_properties { key: "host" } '
        "Error when executing query: database or disk is full query: INSERT INTO `Context` VALUES (1);"
    )
    message = str(metadata_failure("/h/metadata.sqlite", raw))
    assert message.startswith("The ML Metadata store /h/metadata.sqlite could not be used (InternalError: database or disk is full).")
    assert "INSERT" not in message and "custom_properties" not in message
    assert "free space there" in message


def test_a_full_disk_outside_the_store_is_one_clear_line_too(home, monkeypatch, capsys):
    import errno

    from flywheel.cli.main import main

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", f"{home.logs}/run/node.log")

    MetadataStore(home).list_runs()  # the store exists
    monkeypatch.setattr(MetadataStore, "list_runs", no_space)

    assert main(["runs"]) == 1

    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"error: the disk is full ({home.logs}/run/node.log): No space left on device. Free space there "
        "(or use another --home) and run the command again; what was recorded before is intact."
    ]

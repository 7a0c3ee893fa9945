"""Serving logs on shared storage: one file per replica and hour on S3 (moto on loopback), read by one monitor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

from flywheel import storage
from flywheel.monitoring.monitor import DirectoryLogSource
from flywheel.serving import logs
from flywheel.serving.requestlog import PredictionLog
from tests.conftest import REPO

REPLICA_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from flywheel.serving import logs
    root, offset, feedback_for = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    requests = logs.open_writer(logs.log_dir(root, "m", logs.REQUESTS))
    feedback = logs.open_writer(logs.log_dir(root, "m", logs.FEEDBACK))
    now = time.time()
    for i in range(offset, offset + 30):
        requests.write([{"request_id": f"r{i}", "index": 0, "ts": now, "model": "m", "version": 1,
                         "features": {"x": i}, "prediction": "a"}])
    # late labels arrive through the Service at any replica: this one labels the other replica's requests
    feedback.write([{"request_id": f"r{i}", "index": 0, "ts": now, "label": "b"} for i in range(int(feedback_for), int(feedback_for) + 5)])
    requests.close()
    feedback.close()
    """
)


def test_two_replicas_write_their_own_files_and_the_monitor_reads_both(s3_bucket, tmp_path):
    root = f"{s3_bucket}/logs"
    procs = []
    for pod, offset, labels in (("serving-7f9c-abcde", 0, 30), ("serving-7f9c-fghij", 30, 0)):
        env = {**__import__("os").environ, "POD_NAME": pod, "PYTHONPATH": REPO}
        procs.append(
            subprocess.Popen([sys.executable, "-c", REPLICA_SCRIPT, root, str(offset), str(labels)], env=env, cwd=REPO)
        )
    assert [p.wait(timeout=120) for p in procs] == [0, 0]

    files = [e.uri.rsplit("/", 1)[1] for e in storage.list_files(logs.log_dir(root, "m", logs.REQUESTS))]
    assert len(files) == 2 and {f.split("-", 2)[2] for f in files} == {"serving-7f9c-abcde.jsonl", "serving-7f9c-fghij.jsonl"}
    source = DirectoryLogSource(root)
    requests = source.requests("m", since=0)
    assert sorted(r["features"]["x"] for r in requests) == list(range(60))
    labeled = source.labeled("m", since=0)
    assert sorted(p.request_id for p in labeled) == sorted([f"r{i}" for i in range(5)] + [f"r{i}" for i in range(30, 35)])


def test_a_restarted_replica_continues_its_shipped_file_and_loses_nothing(s3_bucket, tmp_path):
    directory = logs.log_dir(f"{s3_bucket}/logs", "m", logs.REQUESTS)
    first = logs.ReplicaLogWriter(directory, replica="pod-a", spool_dir=str(tmp_path / "spool1"), ship_interval_s=3600)
    first.write([{"request_id": "r1", "ts": 1.0, "features": {}}])
    first.ship()
    first.write([{"request_id": "r2", "ts": 2.0, "features": {}}])  # not shipped: the pod is killed now
    (tmp_path / "spool2").mkdir()
    second = logs.ReplicaLogWriter(directory, replica="pod-a", spool_dir=str(tmp_path / "spool2"), ship_interval_s=3600)
    second.write([{"request_id": "r3", "ts": 3.0, "features": {}}])
    second.close()
    assert [r["request_id"] for r in logs.read_records(directory)] == ["r1", "r3"]  # r2 died unshipped with the pod
    assert len(storage.list_files(directory)) == 1


def test_prediction_log_follows_the_log_uri_and_flush_ships(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(logs.LOG_URI_ENV, f"{s3_bucket}/shared")
    monkeypatch.setenv("POD_NAME", "serving-0")
    log = PredictionLog(str(tmp_path / "home"), "m")
    log.feedback([{"request_id": "r1", "index": 0, "ts": 5.0, "label": "b"}])
    assert log.flush()
    [entry] = storage.list_files(f"{s3_bucket}/shared/serving/m/feedback")
    assert entry.uri.endswith("-serving-0.jsonl")
    assert [r["label"] for r in logs.read_records(f"{s3_bucket}/shared/serving/m/feedback")] == ["b"]
    log.close()
    assert not (tmp_path / "home" / "serving").exists()


def test_an_unreachable_store_never_stops_the_log_writer(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(logs.LOG_URI_ENV, "s3://no-such-bucket-for-logs/shared")
    log = PredictionLog(str(tmp_path / "home"), "m")
    log.feedback([{"request_id": "r1", "index": 0, "ts": 5.0, "label": "b"}])
    assert log.flush(timeout=30)  # the shipment failed and was logged; the writer thread lives on
    log.feedback([{"request_id": "r2", "index": 0, "ts": 6.0, "label": "a"}])
    assert log.flush(timeout=30)
    spool = log._writers[logs.FEEDBACK].spool_dir
    log.close()
    [name] = os.listdir(spool)
    with open(os.path.join(spool, name)) as handle:
        assert [json.loads(line)["request_id"] for line in handle] == ["r1", "r2"]  # kept locally, not lost
    shutil.rmtree(spool)

"""The request/feedback log contract between serving and the monitor."""

from __future__ import annotations

import os

from flywheel.serving.logs import FEEDBACK, REQUESTS, JsonlWriter, join_feedback, log_dir, read_records


def test_writer_rotates_by_size_and_reader_reads_all_in_order(tmp_path):
    writer = JsonlWriter(str(tmp_path), max_bytes=200)
    for i in range(20):
        writer.write([{"request_id": str(i), "index": 0, "ts": float(i)}])
    writer.close()
    assert len(os.listdir(tmp_path)) > 1
    assert [r["request_id"] for r in read_records(str(tmp_path))] == [str(i) for i in range(20)]
    assert [r["ts"] for r in read_records(str(tmp_path), since=15)] == [15.0, 16.0, 17.0, 18.0, 19.0]


def test_a_torn_last_line_is_skipped(tmp_path):
    writer = JsonlWriter(str(tmp_path))
    writer.write([{"request_id": "a", "ts": 1.0}])
    writer.close()
    name = os.listdir(tmp_path)[0]
    with open(tmp_path / name, "a", encoding="utf-8") as handle:
        handle.write('{"request_id": "b", "ts"')
    assert [r["request_id"] for r in read_records(str(tmp_path))] == ["a"]


def test_feedback_joins_on_request_id_and_index(tmp_path):
    requests = JsonlWriter(log_dir(str(tmp_path), "m", REQUESTS))
    requests.write(
        [
            {"request_id": "r1", "index": 0, "ts": 1.0, "version": 2, "prediction": "a", "features": {}},
            {"request_id": "r1", "index": 1, "ts": 1.0, "version": 2, "prediction": "b", "features": {}},
            {"request_id": "r2", "index": 0, "ts": 2.0, "version": 3, "prediction": "a", "features": {}},
        ]
    )
    JsonlWriter(log_dir(str(tmp_path), "m", FEEDBACK)).write(
        [{"request_id": "r1", "index": 1, "ts": 5.0, "label": "a"}, {"request_id": "zz", "ts": 5.0, "label": "a"}]
    )
    joined = join_feedback(str(tmp_path), "m")
    assert [(j.request_id, j.index, j.version, j.prediction, j.label) for j in joined] == [("r1", 1, 2, "b", "a")]


def test_damaged_log_files_and_records_are_skipped_not_fatal(tmp_path):
    requests = log_dir(str(tmp_path), "m", REQUESTS)
    feedback = log_dir(str(tmp_path), "m", FEEDBACK)
    JsonlWriter(requests).write([{"request_id": "r", "index": 0, "ts": 5.0, "version": 1, "prediction": "a"}])
    JsonlWriter(feedback).write([{"request_id": "r", "index": 0, "ts": 6.0, "label": "a"}])
    with open(os.path.join(requests, "zz-damaged.jsonl"), "wb") as handle:
        handle.write(b'[1, 2]\n"text"\nnull\n{"ts": "soon"}\n{"ts": [1]}\n\xff\xfe{"ts": 1}\n')
        handle.write(b'{"request_id": 7, "index": "0", "ts": 9.0}\n{"request_id": "r", "index": true, "ts": 9.0}\n')
    with open(os.path.join(feedback, "zz-damaged.jsonl"), "wb") as handle:
        handle.write(b'{"request_id": "r", "index": [0], "label": "b", "ts": 7.0}\n[]\n')
    os.symlink(os.path.join(requests, "gone.jsonl"), os.path.join(requests, "zz-dangling.jsonl"))
    os.mkdir(os.path.join(requests, "zz-dir.jsonl"))

    records = list(read_records(requests, since=0.0))
    assert all(isinstance(r, dict) for r in records) and len(records) == 3  # the good one and two odd-keyed ones
    joined = join_feedback(str(tmp_path), "m")
    assert [(j.request_id, j.index, j.version, j.label) for j in joined] == [("r", 0, 1, "a")]

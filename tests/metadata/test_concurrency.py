"""Eight `flywheel run` processes on one MLMD SQLite store all finish with correct lineage
(MLMD aborts a process on 'database is locked', tensorflow/tfx#199; flywheel serialises access)."""

from __future__ import annotations

import subprocess

from flywheel.metadata import MetadataStore
from tests.conftest import REPO

PIPELINE = """
from flywheel import pipeline
from tests.runner.toy import produce, relay, consume

@pipeline(name="busy")
def busy(text: str = "x"):
    a = produce(text=text)
    b = relay(data=a.output)
    consume(data=b.output)
"""


def test_eight_concurrent_runs_on_one_store(home, tmp_path, flywheel_cmd):
    path = tmp_path / "busy.py"
    path.write_text(PIPELINE)
    procs = [
        subprocess.Popen(
            [*flywheel_cmd, "run", str(path), "--param", f"text=run{i}", "--workers", "1"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, "\n".join(outputs)

    store = MetadataStore(home)
    runs = store.list_runs(20)
    assert len(runs) == 8 and {r.state for r in runs} == {"COMPLETE"}
    texts = set()
    for run in runs:
        nodes = store.latest_nodes(run)
        assert {n: e.state for n, e in nodes.items()} == {"produce": "COMPLETE", "relay": "COMPLETE", "consume": "COMPLETE"}
        final = nodes["consume"].outputs["out"]
        chain = store.lineage(final.id)
        assert [e.node_id for e in chain] == ["consume", "relay", "produce"]
        assert {e.run_id for e in chain} == {run.run_id}
        texts.add(final.properties["upper"])
    assert texts == {f"RUN{i}!" for i in range(8)}

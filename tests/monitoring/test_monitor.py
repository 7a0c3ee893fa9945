"""Monitoring passes: drift alerts, cool-down and retrain rate limit, rollback (automatic and by hand), the CLI."""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

import numpy as np
import pytest

from flywheel.errors import FlywheelError, RunNotFoundError
from flywheel.metadata import MetadataStore
from flywheel.monitoring.monitor import Monitor
from flywheel.monitoring.reference import TrainingReference
from flywheel.monitoring.rules import parse_rules
from flywheel.monitoring.store import MonitorStore
from flywheel.registry import ModelRegistry
from flywheel.serving.logs import FEEDBACK, REQUESTS, JsonlWriter, log_dir
from tests.conftest import REPO

T0 = time.time() - 10 * 3600  # fake clock in the past: log files (real mtime) are always inside the window
CLASSES = ["a", "b", "c"]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def push_version(registry: ModelRegistry, tmp_path, version_tag: str, accuracy: float) -> int:
    source = tmp_path / f"model-{version_tag}"
    source.mkdir()
    (source / "saved_model.pb").write_bytes(version_tag.encode())
    (source / "model.json").write_text(
        json.dumps(
            {
                "label": "y",
                "label_vocabulary": CLASSES,
                "features": {"x": {"kind": "numeric"}, "z": {"kind": "numeric"}, "color": {"kind": "categorical"}},
            }
        )
    )
    result = registry.push(
        "m", str(source), metadata={"metrics": {"accuracy": accuracy, "balanced_accuracy": accuracy}}
    )
    registry.set_serving("m", result.version, reason=f"pushed from {source}")
    return result.version


def reference(version: int, seed: int = 0) -> TrainingReference:
    rng = np.random.default_rng(seed)
    return TrainingReference(
        model="m",
        version=version,
        features={"x": "numeric", "z": "numeric", "color": "categorical"},
        label="y",
        label_vocabulary=CLASSES,
        numeric_sorted={"x": np.sort(rng.normal(size=2000)), "z": np.sort(rng.normal(size=2000))},
        categorical_counts={"color": {"red": 1000, "blue": 600, "green": 400}},
        label_counts={"a": 700, "b": 700, "c": 600},
    )


def write_traffic(
    home, *, version: int, n: int, ts: float, shift: float = 0.0, accuracy: float | None = None, seed: int = 1
):
    rng = np.random.default_rng(seed)
    requests, labels = [], []
    for i in range(n):
        label = CLASSES[i % 3]
        correct = accuracy is None or rng.random() < accuracy
        prediction = label if correct else CLASSES[(i + 1) % 3]
        request_id = uuid.uuid4().hex
        requests.append(
            {
                "request_id": request_id,
                "index": 0,
                "ts": ts,
                "model": "m",
                "version": version,
                "features": {
                    "x": float(rng.normal(shift)),
                    "z": float(rng.normal(shift)),
                    "color": str(rng.choice(["red", "blue", "green"], p=[0.5, 0.3, 0.2])),
                },
                "prediction": prediction,
                "probabilities": [],
            }
        )
        if accuracy is not None:
            labels.append({"request_id": request_id, "index": 0, "ts": ts, "label": label})
    for kind, records in ((REQUESTS, requests), (FEEDBACK, labels)):
        writer = JsonlWriter(log_dir(home.root, "m", kind))
        writer.write(records)
        writer.close()


@pytest.fixture
def registry(home, tmp_path):
    return ModelRegistry(str(tmp_path / "registry"))


def make_monitor(home, registry, rules, clock, launched, **kwargs):
    monitor = Monitor(
        home,
        registry,
        parse_rules(rules),
        clock=clock,
        log=lambda _: None,
        launcher=lambda request: launched.append(request) or request.run_id,
        **kwargs,
    )
    for version in registry.versions("m"):
        monitor.use_reference(reference(version))
    return monitor


RETRAIN_RULES = {
    "window": "1d",
    "retrain": {"pipeline": "pipelines/training.py", "parameters": {"epochs": 3}, "max_runs": 2, "period": "1d"},
    "rules": [{"name": "drift", "metric": "drifted_features", "threshold": 2, "cooldown": "1h", "action": "retrain"}],
}


def test_same_distribution_fires_nothing_and_shift_fires_with_evidence(home, registry, tmp_path):
    push_version(registry, tmp_path, "v1", 0.95)
    clock, launched = Clock(T0), []
    write_traffic(home, version=1, n=500, ts=T0 - 60)
    monitor = make_monitor(home, registry, RETRAIN_RULES, clock, launched)
    [report] = monitor.run_once()
    assert report.alerts == [] and launched == []
    checks = MonitorStore(home).drift_history("m")
    assert {c.feature for c in checks} == {"x", "z", "color", "__prediction__"} and not any(c.drifted for c in checks)
    assert {c.test for c in checks} == {"ks", "chi2"} and all(c.window_rows == 500 for c in checks)

    write_traffic(home, version=1, n=500, ts=T0 - 30, shift=0.5, seed=2)
    [report] = monitor.run_once()
    [alert] = report.alerts
    assert alert.rule == "drift" and alert.value == 2 and alert.run_id == launched[0].run_id
    assert {d["feature"] for d in alert.evidence["drifted"]} == {"x", "z"}
    assert launched[0].parameters == {"epochs": 3} and launched[0].reason.startswith(
        f"alert #{alert.id} drift: drifted_features = 2"
    )
    stored = MonitorStore(home).alerts(model="m")[0]
    assert stored.run_id == alert.run_id and stored.evidence["retrain"]["started"] == alert.run_id


def test_cooldown_and_max_retrains_debounce(home, registry, tmp_path):
    push_version(registry, tmp_path, "v1", 0.95)
    clock, launched = Clock(T0), []
    write_traffic(home, version=1, n=400, ts=T0 - 60, shift=0.6)
    monitor = make_monitor(home, registry, RETRAIN_RULES, clock, launched)
    fired = []
    for minutes in (0, 10, 50, 61, 90, 125, 190):  # cool-down 1h; max 2 runs per day
        clock.now = T0 + minutes * 60
        fired.append((minutes, [a.run_id for a in monitor.run_once()[0].alerts]))
    # Fires again only once the 1h cool-down has passed; from the third alert on, the run limit holds.
    assert [m for m, alerts in fired if alerts] == [0, 61, 125, 190], fired
    assert len(launched) == 2 and [a for m, a in fired if m >= 125] == [[None], [None]]
    alerts = MonitorStore(home).alerts(model="m")
    assert "suppressed" in alerts[0].evidence["retrain"] and alerts[0].run_id is None
    assert "2 retraining run(s)" in alerts[0].evidence["retrain"]["suppressed"]
    assert MonitorStore(home).count_retrains("m", T0 - 1) == 2


def test_failing_webhook_does_not_stop_the_monitor(home, registry, tmp_path):
    push_version(registry, tmp_path, "v1", 0.95)
    write_traffic(home, version=1, n=300, ts=T0 - 60, shift=0.8)
    rules = {
        "sinks": {"webhook": {"url": "http://127.0.0.1:9/hook", "timeout_s": 1}},
        "rules": [{"name": "w", "metric": "drifted_share", "threshold": 0.5, "action": "webhook", "window": "1d"}],
    }
    [report] = make_monitor(home, registry, rules, Clock(T0), []).run_once()
    assert report.error is None and len(report.alerts) == 1
    assert MonitorStore(home).alerts()[0].evidence["sinks"]["webhook"].startswith("failed: URLError")


ROLLBACK_RULES = {"window": "1d", "rollback": {"metric": "accuracy", "margin": 0.05, "min_labels": 50}}


@pytest.mark.parametrize(
    ("v2_accuracy", "v2_labels", "rolled_back"),
    [(0.70, 200, True), (0.93, 200, False), (0.50, 30, False)],
)
def test_automatic_rollback_of_a_degraded_new_version(home, registry, tmp_path, v2_accuracy, v2_labels, rolled_back):
    push_version(registry, tmp_path, "v1", 0.95)
    write_traffic(home, version=1, n=200, ts=T0 - 7200, accuracy=0.97, seed=3)
    push_version(registry, tmp_path, "v2", 0.96)
    served_since = time.time()  # set_serving stamps real time; v2's labels must come after it
    write_traffic(home, version=2, n=v2_labels, ts=served_since + 1, accuracy=v2_accuracy, seed=4)
    monitor = make_monitor(home, registry, ROLLBACK_RULES, Clock(served_since + 5), [])
    [report] = monitor.run_once()
    store = MonitorStore(home)
    if not rolled_back:
        assert registry.serving_version("m") == 2 and store.rollbacks() == []
        return
    assert registry.serving_version("m") == 1
    [record] = store.rollbacks(model="m")
    assert (record.from_version, record.to_version, record.automatic) == (2, 1, True)
    [alert] = store.alerts(model="m")
    assert alert.rule == "auto-rollback" and alert.action == "rollback"
    assert (
        alert.evidence["baseline_basis"].startswith("v1 live over 200 labels") and alert.evidence["labels"] == v2_labels
    )
    assert registry.serving_info("m")["reason"].startswith("rollback from v2")
    # The version now serving because of a rollback is not watched: no ping-pong on the next pass.
    monitor.run_once()
    assert registry.serving_version("m") == 1 and len(store.rollbacks()) == 1


def cli(*args: str) -> tuple[int, str]:
    from flywheel.cli import monitor_commands

    parser = argparse.ArgumentParser(prog="flywheel")
    parser.add_argument("--home")
    monitor_commands.register(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(list(args))
    return parsed.handler(parsed), parsed


def test_manual_rollback_and_alerts_cli(home, registry, tmp_path, capsys):
    for tag in ("v1", "v2", "v3"):
        push_version(registry, tmp_path, tag, 0.9)
    code, _ = cli("rollback", "m", "--registry", registry.root, "--home", home.root)
    assert code == 0 and registry.serving_version("m") == 2
    assert "now serves v2 (was v3)" in capsys.readouterr().out
    cli("rollback", "m", "--to", "1", "--registry", registry.root, "--reason", "bad batch")
    assert registry.serving_version("m") == 1
    records = MonitorStore(home).rollbacks(model="m")
    assert [(r.from_version, r.to_version, r.automatic, r.reason) for r in records] == [
        (2, 1, False, "bad batch"),
        (3, 2, False, "by hand"),
    ]
    with pytest.raises(FlywheelError, match=r"Model 'm' has no version 9; versions: \[1, 2, 3\]"):
        cli("rollback", "m", "--to", "9", "--registry", registry.root)

    write_traffic(home, version=1, n=300, ts=T0 - 60, shift=0.8)
    launched = []
    make_monitor(home, registry, RETRAIN_RULES, Clock(T0), launched).run_once()
    capsys.readouterr()
    assert cli("alerts", "--model", "m")[0] == 0
    out = capsys.readouterr().out
    assert f"run {launched[0].run_id}" in out and "drifted  x: ks" in out and "drifted_features = 2 >= 2" in out


TOY_PIPELINE = """
from flywheel import pipeline
from tests.runner.toy import produce

@pipeline(name="toy-retrain")
def toy_retrain(text: str = "x"):
    produce(text=text)
"""


def test_a_retrain_alert_starts_a_real_run_recorded_as_alert(home, registry, tmp_path, monkeypatch):
    """The default launcher: `flywheel run` in a subprocess, with trigger=alert and the alert as reason."""
    monkeypatch.chdir(REPO)  # the toy pipeline imports tests.runner.toy
    pipeline_file = tmp_path / "toy.py"
    pipeline_file.write_text(TOY_PIPELINE)
    push_version(registry, tmp_path, "v1", 0.95)
    write_traffic(home, version=1, n=300, ts=T0 - 60, shift=0.8)
    rules = {**RETRAIN_RULES, "retrain": {"pipeline": str(pipeline_file), "parameters": {"text": "retrained"}}}
    monitor = Monitor(home, registry, parse_rules(rules), clock=Clock(T0), log=lambda _: None)
    monitor.use_reference(reference(1))
    [report] = monitor.run_once()
    run_id = report.alerts[0].run_id
    assert run_id and run_id.startswith("retrain-m-")
    deadline, state = time.monotonic() + 90, "not started"
    while time.monotonic() < deadline and state in ("not started", "RUNNING"):
        try:
            run = MetadataStore(home).get_run(run_id)
            state = run.state
        except RunNotFoundError:
            pass
        time.sleep(0.3)
    assert state == "COMPLETE", open(f"{home.logs}/monitor/{run_id}.out").read()
    assert run.trigger == "alert" and run.trigger_reason.startswith(f"alert #{report.alerts[0].id} drift:")
    assert run.parameters == {"text": "retrained"}


@pytest.mark.parametrize("alias", [b'{"version": null}', b"[]", b'{"version": "2"}', b"\xff\xfe{"])
def test_rollback_on_a_damaged_alias_is_a_clear_error_and_to_repairs_it(home, registry, tmp_path, capsys, alias):
    for tag in ("v1", "v2"):
        push_version(registry, tmp_path, tag, 0.9)
    alias_path = os.path.join(registry.model_dir("m"), "serving.json")
    with open(alias_path, "wb") as f:
        f.write(alias)
    with pytest.raises(FlywheelError, match=r"serving\.json .*(positive whole 'version'|not a JSON document).*--to"):
        cli("rollback", "m", "--registry", registry.root, "--home", home.root)
    if alias.startswith(b"\xff"):  # not JSON at all: its history cannot be kept, so the user moves it aside
        with pytest.raises(FlywheelError, match="move its serving.json aside"):
            cli("rollback", "m", "--to", "1", "--registry", registry.root, "--home", home.root)
        os.remove(alias_path)
        return
    code, _ = cli("rollback", "m", "--to", "1", "--registry", registry.root, "--home", home.root)
    assert code == 0 and registry.serving_version("m") == 1
    assert "now serves v1 (its alias was damaged)" in capsys.readouterr().out

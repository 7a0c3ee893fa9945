"""``flywheel demo drift``: the closed loop on penguins, step by step.

1. Train and push v1; serve it (``flywheel serve`` in a subprocess).
2. Replay normal traffic with late labels, then traffic from a shifted world
   (new scales on every numeric feature) and watch live accuracy fall.
3. ``flywheel monitor --once`` finds the drift and fires a ``retrain`` rule;
   the retraining run starts by itself on the newest data, records which alert
   started it, and v2 is blessed and pushed. Serving picks v2 up without a
   restart, and accuracy recovers.
4. A deliberately bad v3 is forced through; the monitor sees it lose to v2 on
   live labels and rolls serving back to v2 by itself.

Everything runs on this machine, in the given home, over loopback.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

from flywheel.errors import FlywheelError, RunNotFoundError

class DemoError(FlywheelError):
    """A step of the demo did not happen as it should."""


SHIFT = {"bill_length_mm": 7.0, "bill_depth_mm": -2.5, "flipper_length_mm": 18.0, "body_mass_g": 900.0}
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


def _say(step: str, text: str) -> None:
    print(f"\n== {step}: {text}", flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def penguins(*, shifted: bool, seed: int) -> Any:
    """The penguins table; shifted = every numeric feature on a new scale."""
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=["species"]).sample(frac=1.0, random_state=seed)
    if shifted:
        for column, delta in SHIFT.items():
            frame[column] = frame[column] + delta
    return frame.reset_index(drop=True)


class Traffic:
    """Sends instances to the server and the true labels as feedback."""

    def __init__(self, port: int, model: str) -> None:
        self.port = port
        self.model = model

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = json.loads(response.read() or b"{}")
            if response.status != 200:
                raise DemoError(f"{path} answered {response.status}: {payload}")
            return payload
        finally:
            conn.close()

    def serving_version(self) -> int | None:
        """The version that answers a default predict now (None until the server is up).

        TF Serving's status endpoint lists every loaded version; the one the alias
        names is the one that answers, so ask it.
        """
        probe = {"island": "Biscoe", "bill_length_mm": 45.0, "bill_depth_mm": 15.0, "flipper_length_mm": 210.0,
                 "body_mass_g": 5000.0, "sex": "female", "year": 2008.0}
        try:
            return int(self._post(f"/v1/models/{self.model}:predict", {"instances": [probe]})["model_version"])
        except (OSError, ValueError, DemoError):
            return None

    def replay(self, frame: Any, *, batch: int = 10) -> tuple[float, int]:
        """Predicts every row (in batches), sends its label back; returns (accuracy, version)."""
        correct = 0
        version = 0
        for start in range(0, len(frame), batch):
            chunk = frame.iloc[start : start + batch]
            instances = [
                {f: (None if _missing(row[f]) else (row[f] if isinstance(row[f], str) else float(row[f])))
                 for f in FEATURES}
                for _, row in chunk.iterrows()
            ]
            answer = self._post(f"/v1/models/{self.model}:predict", {"instances": instances})
            labels = [str(s) for s in chunk["species"]]
            correct += sum(p == t for p, t in zip(answer["classes"], labels))
            version = int(answer["model_version"])
            self._post(f"/v1/models/{self.model}:feedback", {"request_id": answer["request_id"], "labels": labels})
        return correct / max(1, len(frame)), version


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _flywheel(home: str, *args: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", home, *args], capture_output=True, text=True, timeout=900
    )
    if not quiet or result.returncode != 0:
        text = (result.stdout + result.stderr).rstrip()
        print("   " + text.replace("\n", "\n   "), flush=True)
    return result


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise DemoError(f"gave up waiting for {what} after {timeout_s:.0f} s")


def _rules(home: str, incoming: str, model: str) -> str:
    path = os.path.join(home, "demo", "alerts.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            f"""# written by `flywheel demo drift`; the format is documented in examples/alerts.yaml
window: 1h
drift:
  numeric: {{test: ks, threshold: 0.01}}
  categorical: {{test: chi2, threshold: 0.01}}
  min_rows: 100
retrain:
  pipeline: flywheel.pipelines.training
  parameters:
    data_path: "newest:{incoming}/*.csv"
    model_name: {model}         # retrain the served model, not one named after the new file
    drift_threshold: 0          # the drift is why we retrain: do not let validate stop the run for it
  max_runs: 2
  period: 24h
rollback:
  metric: accuracy
  margin: 0.05
  min_labels: 100
rules:
  - name: feature-drift
    metric: drifted_share
    comparison: ">="
    threshold: 0.3
    cooldown: 6h
    action: retrain
"""
        )
    return path


def run(home: str, model: str = "penguins") -> int:
    """Runs the whole story; returns an exit code."""
    from flywheel.home import Home
    from flywheel.metadata import MetadataStore
    from flywheel.monitoring.store import MonitorStore
    from flywheel.registry import ModelRegistry

    registry = ModelRegistry(Home(home).registry)
    incoming = os.path.join(home, "demo", "incoming")
    os.makedirs(incoming, exist_ok=True)

    _say("1/6", "train and push v1 on penguins")
    if _flywheel(home, "run", "flywheel.pipelines.training", quiet=True).returncode != 0:
        return 1
    print(f"   registry {registry.root}: versions {registry.versions(model)}, serving v{registry.serving_version(model)}")

    port = _free_port()
    _say("2/6", f"serve it: flywheel serve --port {port} --no-grpc")
    server = subprocess.Popen(  # REST only: the demo speaks JSON, and port 8500 may be taken on this machine
        [
            sys.executable, "-m", "flywheel", "--home", home, "serve",
            "--port", str(port), "--no-grpc", "--poll-seconds", "0.5",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    traffic = Traffic(port, model)
    try:
        version = _wait_for(traffic.serving_version, 120, "the server")
        print(f"   serving v{version} on http://127.0.0.1:{port}/v1/models/{model}")
        accuracy, _ = traffic.replay(penguins(shifted=False, seed=1).head(150))
        print(f"   150 normal requests with late labels: live accuracy {accuracy:.3f}")

        _say("3/6", "the world shifts: every numeric feature on a new scale")
        world = penguins(shifted=True, seed=2)
        accuracy, version = traffic.replay(world)
        print(f"   {len(world)} shifted requests: live accuracy of v{version} falls to {accuracy:.3f}")
        newest = os.path.join(incoming, "penguins-shifted.csv")
        penguins(shifted=True, seed=3).to_csv(newest, index=False)
        print(f"   the labelled new data lands in {newest}")

        _say("4/6", "flywheel monitor --once: drift -> alert -> retraining run")
        rules = _rules(home, incoming, model)
        _flywheel(home, "monitor", "--once", "--rules", rules, "--model", model)
        alerts = [a for a in MonitorStore(Home(home)).alerts(model=model) if a.action == "retrain" and a.run_id]
        if not alerts:
            print("   no retraining alert fired")
            return 1
        run_id = alerts[0].run_id
        store = MetadataStore(Home(home))

        def finished() -> Any:
            try:
                run = store.get_run(run_id)
            except RunNotFoundError:  # not recorded yet by the child process
                return None
            return run if run.state != "RUNNING" else None

        retrained = _wait_for(finished, 600, f"retraining run {run_id}")
        print(f"   run {run_id}: {retrained.state}, trigger {retrained.trigger} ({retrained.trigger_reason[:90]})")
        print(f"   registry: versions {registry.versions(model)}, serving v{registry.serving_version(model)}")

        _say("5/6", "serving picks up the new version without a restart")
        new_version = registry.serving_version(model)
        _wait_for(lambda: traffic.serving_version() == new_version, 60, f"v{new_version} to serve")
        accuracy, version = traffic.replay(penguins(shifted=True, seed=4))
        print(f"   shifted traffic on v{version}: live accuracy back to {accuracy:.3f}")

        _say("6/6", "a bad version slips through; the monitor rolls it back by itself")
        _flywheel(
            home, "run", "flywheel.pipelines.training",
            "-p", f"data_path={newest}", "-p", f"model_name={model}", "-p", "epochs=1", "-p", "learning_rate=0.00001",
            "-p", 'thresholds={"balanced_accuracy": 0.0}', "-p", "max_regression=1.0", "-p", "drift_threshold=0",
            quiet=True,
        )
        bad = registry.serving_version(model)
        _wait_for(lambda: traffic.serving_version() == bad, 60, f"v{bad} to serve")
        accuracy, version = traffic.replay(penguins(shifted=True, seed=5))
        print(f"   v{version} (1 epoch, tiny learning rate) was forced through; live accuracy {accuracy:.3f}")
        _flywheel(home, "monitor", "--once", "--rules", rules, "--model", model)
        back = registry.serving_version(model)
        _wait_for(lambda: traffic.serving_version() == back, 60, f"v{back} to serve again")
        accuracy, version = traffic.replay(penguins(shifted=True, seed=6).head(100))
        print(f"   serving v{version} again; live accuracy {accuracy:.3f}")
    finally:
        server.terminate()
        server.wait(timeout=60)

    print("\nWhat happened, as flywheel recorded it:")
    _flywheel(home, "alerts", "--limit", "5")
    _flywheel(home, "runs", "--limit", "5")
    print(f"\nLook around: flywheel --home {home} ui")
    return 0

"""The training pipeline end to end next to TFX 1.16's penguin pipeline: wall clock and peak memory, cold and cached.

Both run in the same benchmark, alternated, each as a user would run it (a fresh
process; cold = a fresh home / pipeline root, cached = the same one again). Wall
times come from runs that nothing observes; memory from a second cold and cached
pair whose whole process tree is sampled every 20 ms: peak RSS summed over
processes (the same measure on both sides) and peak PSS (proportional set size,
which counts pages shared by forked workers once, so it is the honest total).
The sampler reads each process's ``smaps_rollup``, which walks its mappings: on
2 cores that took ~1.5 s of a 7.5 s flywheel run, so the sampled runs' wall
time is printed beside the others ("cold sampled s") and not used as the time.

* flywheel: ``flywheel run pipelines/training.py`` (8 nodes) on the penguins CSV
  of the ``palmerpenguins`` package.
* TFX: ``benchmarks/tfx_penguin.py`` in a Python 3.10 venv with ``tfx==1.16.0``
  (benchmarks/out/venv-tfx, made on first use from benchmarks/requirements-tfx.lock):
  TFX's penguin pipeline with LocalDagRunner, 9 nodes, SQLite MLMD, Beam in memory
  on one worker. Its data are TFX's processed penguins (penguins_processed.csv is
  not in the tfx wheel), derived here from the same palmerpenguins CSV the way
  TFX made theirs: rows with any of the four measurements missing dropped (342
  of 344 rows), ``species`` as 0/1/2 (Adelie, Chinstrap, Gentoo; rows in that
  order), the four measurements min-max scaled to [0, 1] and named culmen_length_mm,
  culmen_depth_mm, flipper_length_mm, body_mass_g.

    .venv/bin/python benchmarks/pipeline_e2e.py [--repeat 3] [--skip-tfx] [--compare-warm] [--beam]

Prints each run, the medians, the ratios TFX / flywheel and the load average at
start and end. Goal (issue 3): <= 15 s cold, <= 3 s cached, < 800 MB peak,
accuracy no lower than TFX's; issue 17: <= 8 s cold at < 800 MB.

``--compare-warm`` adds flywheel with ``FLYWHEEL_WARM_PARENT=0`` (workers forked from the
runner, each importing TensorFlow itself: the baseline before the warm parent), run alternated
with the default in each repeat. ``--beam`` adds the large-data path: the same pipeline with
``beam_args=["--runner=DirectRunner"]``, so validate computes every split's statistics with a
Beam pipeline (TFDV's GenerateStatistics), and transform its constants with tf.Transform's
analyzers, instead of in memory (and with ``--compare-warm``,
that without the warm parent too). Each flywheel line shows validate's own node time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from _venvs import venv_python

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
TFX_VENV = os.path.join(OUT, "venv-tfx")
TFX_REQUIREMENTS = os.path.join(HERE, "requirements-tfx.lock")
TFX_DRIVER = os.path.join(HERE, "tfx_penguin.py")
TFX_BASE_PYTHON = os.environ.get("TFX_BASE_PYTHON", "/root/.pyenv/versions/3.10.13/bin/python3.10")
MEASUREMENTS = {
    "bill_length_mm": "culmen_length_mm",
    "bill_depth_mm": "culmen_depth_mm",
    "flipper_length_mm": "flipper_length_mm",
    "body_mass_g": "body_mass_g",
}


def _children(pid: int) -> list[int]:
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            found = [int(c) for c in handle.read().split()]
    except OSError:
        return []
    for child in list(found):
        found.extend(_children(child))
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def run_and_sample(
    args: list[str], env: dict[str, str], what: str, *, sample: bool = True
) -> tuple[float, float, float, str]:
    """Wall seconds, peak summed RSS MB, peak summed PSS MB (0 when not ``sample``), stdout.

    Sampling reads ``smaps_rollup`` of every process of the tree every 20 ms, which walks each
    process's mappings (TensorFlow maps a lot): on 2 cores it takes ~1.5 s from a 7.5 s run, so
    wall times come from runs that are not sampled (see ``run_flywheel``).
    """
    peak = {"rss": 0, "pss": 0}
    began = time.perf_counter()
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()
    if not sample:
        done.set()

    def sample() -> None:
        while not done.is_set():
            rss = pss = 0
            for pid in [proc.pid, *_children(proc.pid)]:
                r, p = _memory_kb(pid)
                rss += r
                pss += p
            peak["rss"] = max(peak["rss"], rss)
            peak["pss"] = max(peak["pss"], pss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - began
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{out[-20000:]}")
    return wall, peak["rss"] / 1024, peak["pss"] / 1024, out


def flywheel_accuracy(home: str) -> float:
    sys.path.insert(0, REPO)
    from flywheel.home import Home
    from flywheel.metadata import MetadataStore

    store = MetadataStore(Home(home))
    run = store.list_runs(1)[0]
    return float(store.latest_nodes(run)["evaluate"].outputs["evaluation"].properties["accuracy"])


def write_tfx_penguins(data_root: str) -> int:
    """TFX's processed penguins derived from palmerpenguins (see the module doc); returns the row count."""
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=list(MEASUREMENTS))
    species = sorted(frame["species"].unique())
    processed = frame[["species", *MEASUREMENTS]].rename(columns=MEASUREMENTS)
    processed["species"] = processed["species"].map({name: index for index, name in enumerate(species)})
    for column in MEASUREMENTS.values():
        low, high = processed[column].min(), processed[column].max()
        processed[column] = (processed[column] - low) / (high - low)
    processed = processed.sort_values("species", kind="stable")
    os.makedirs(os.path.join(data_root, "labelled"), exist_ok=True)
    processed.to_csv(os.path.join(data_root, "labelled", "penguins_processed.csv"), index=False)
    return len(processed)


def tfx_result(out: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise SystemExit(f"the TFX driver printed no RESULT line:\n{out[-5000:]}")


class Side:
    """One side's runs: cold and cached wall seconds (runs not sampled), cold peak RSS/PSS and the
    wall seconds of the sampled cold runs, accuracy."""

    def __init__(self, name: str, env: dict[str, str] | None = None, params: list[str] | None = None) -> None:
        self.name = name
        self.env = env or {}
        self.params = params or []
        self.validate: list[float] = []
        self.cold: list[float] = []
        self.cached: list[float] = []
        self.rss: list[float] = []
        self.pss: list[float] = []
        self.cached_rss: list[float] = []
        self.sampled: list[float] = []
        self.accuracy: list[float] = []

    def add(self, cold: tuple, cached: tuple, sampled: tuple, accuracy: float, note: str) -> None:
        """``cold`` and ``cached``: (wall, ...) of unsampled runs; ``sampled``: (wall, RSS, PSS) of a
        cold run with the memory sampler, and the cached run after it."""
        self.cold.append(cold[0])
        self.cached.append(cached[0])
        self.sampled.append(sampled[0])
        self.rss.append(sampled[1])
        self.pss.append(sampled[2])
        self.cached_rss.append(sampled[3])
        self.accuracy.append(accuracy)
        print(
            f"  {self.name:14s} cold {cold[0]:6.2f} s  cached {cached[0]:6.2f} s  "
            f"peak RSS {sampled[1]:5.0f} MB (cached {sampled[3]:4.0f})  PSS {sampled[2]:5.0f} MB "
            f"(sampled cold run {sampled[0]:5.2f} s)  accuracy {accuracy:.3f}  {note}",
            flush=True,
        )


def node_seconds(out: str, node: str) -> float:
    """A node's own wall seconds from the run's progress lines (``[  8.27s] validate  COMPLETE  7.46s``)."""
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == node and parts[3] == "COMPLETE":
            return float(parts[-1].rstrip("s"))
    raise SystemExit(f"no COMPLETE line for {node} in:\n{out[-5000:]}")


def cold_and_cached(command: list[str], env: dict[str, str], what: str, *, sample: bool) -> tuple[tuple, tuple]:
    """A cold run and the cached run after it, in the same home (``env``)."""
    cold = run_and_sample(command, env, f"{what} (cold)", sample=sample)
    return cold, run_and_sample(command, env, f"{what} (cached)", sample=sample)


def run_flywheel(side: Side) -> None:
    """Cold and cached runs timed without the memory sampler in one home, then the same two sampled
    (peak RSS/PSS) in a fresh one."""
    command = [sys.executable, "-m", "flywheel", "run", os.path.join(REPO, "pipelines", "training.py")]
    for param in side.params:
        command += ["-p", param]
    runs = []
    for sample in (False, True):
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, FLYWHEEL_HOME=home, **side.env)
            cold, cached = cold_and_cached(command, env, side.name, sample=sample)
            if not re.search(r"COMPLETE in [0-9.]+s \(8 cached\)", cached[3]):
                raise SystemExit(f"the second flywheel run was not fully cached:\n{cached[3]}")
            runs.append((cold, cached, flywheel_accuracy(home)))
    (cold, cached, accuracy), (sampled, sampled_cached, _) = runs
    side.validate.append(node_seconds(cold[3], "validate"))
    side.add(cold, cached, (*sampled[:3], sampled_cached[1]), accuracy,
             f"validate {side.validate[-1]:.2f} s; 8 of 8 cached")  # fmt: skip


def run_tfx(side: Side, python: str, data_root: str) -> None:
    """As ``run_flywheel``: timed runs in one work directory, sampled runs in another."""
    runs = []
    for sample in (False, True):
        with tempfile.TemporaryDirectory() as workdir:
            command = [python, TFX_DRIVER, "--data-root", data_root, "--workdir", workdir]
            cold, cached = cold_and_cached(command, dict(os.environ), "TFX", sample=sample)
            executions = tfx_result(cached[3])["executions"]
            if not executions.get("CACHED"):
                raise SystemExit(f"the second TFX run reused nothing: executions {executions}")
            runs.append((cold, cached, executions))
    (cold, cached, executions), (sampled, sampled_cached, _) = runs
    states = ", ".join(f"{count} {state.lower()}" for state, count in sorted(executions.items()))
    side.add(cold, cached, (*sampled[:3], sampled_cached[1]), tfx_result(cold[3])["accuracy"],
             f"second run: {states}")  # fmt: skip


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold/cached pairs per side (medians are reported)")
    parser.add_argument("--skip-tfx", action="store_true", help="flywheel only (no TFX venv needed)")
    parser.add_argument("--compare-warm", action="store_true",
                        help="also run flywheel with FLYWHEEL_WARM_PARENT=0 (the baseline without the warm parent)")
    parser.add_argument("--beam", action="store_true",
                        help="also run the large-data path: validate's statistics and transform's analyzers on Beam's DirectRunner")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    tfx_python = None if args.skip_tfx else venv_python(TFX_VENV, TFX_REQUIREMENTS, TFX_BASE_PYTHON, "TFX 1.16")
    data_root = os.path.join(OUT, "tfx-penguins")
    rows = write_tfx_penguins(data_root)
    load_start = _load()
    print(f"load average (1, 5, 15 min) at start: {load_start}; {os.cpu_count()} CPUs", flush=True)
    flywheel, tfx = Side("flywheel"), Side("TFX")
    beam = ["beam_args=[\"--runner=DirectRunner\"]"]
    cold_env = {"FLYWHEEL_WARM_PARENT": "0"}
    others = []
    if args.compare_warm:
        others.append(Side("no warm parent", cold_env))
    if args.beam:
        others.append(Side("Beam path", params=beam))
        if args.compare_warm:
            others.append(Side("Beam, no warm", cold_env, beam))
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}:", flush=True)
        if tfx_python:
            run_tfx(tfx, tfx_python, data_root)
        run_flywheel(flywheel)
        for side in others:
            run_flywheel(side)
    load_end = _load()
    med = statistics.median
    print()
    print(
        f"penguins, whole process tree, medians of {args.repeat}: flywheel training pipeline (8 nodes, "
        f"palmerpenguins CSV) vs TFX 1.16 LocalDagRunner penguin pipeline (9 nodes, {rows} processed rows)"
    )
    print(f"  {'':14s}{'flywheel':>10s}{'TFX':>10s}{'TFX/flywheel':>14s}")
    lines = [
        ("cold s", flywheel.cold, tfx.cold, ".2f"),
        ("cached s", flywheel.cached, tfx.cached, ".2f"),
        ("peak RSS MB", flywheel.rss, tfx.rss, ".0f"),
        ("peak PSS MB", flywheel.pss, tfx.pss, ".0f"),
        ("cold sampled s", flywheel.sampled, tfx.sampled, ".2f"),
        ("accuracy", flywheel.accuracy, tfx.accuracy, ".3f"),
    ]
    for label, ours, theirs, spec in lines:
        ratio = f"{med(theirs) / med(ours):.1f}x" if theirs and label != "accuracy" else ""
        baseline = format(med(theirs), spec) if theirs else "-"
        print(f"  {label:14s}{format(med(ours), spec):>10s}{baseline:>10s}{ratio:>14s}")
    print("  goal (flywheel): <= 15 s cold, <= 3 s cached, < 800 MB peak PSS, accuracy >= TFX's; issue 17: <= 8 s cold")
    print("  (cold/cached s: runs without the memory sampler; RSS/PSS and 'cold sampled s': the same cold run with it)")
    if others:
        print()
        print(f"flywheel variants, medians of {args.repeat} (validate = that node's own seconds in the cold run):")
        print(f"  {'':16s}{'cold s':>9s}{'cached s':>10s}{'RSS MB':>8s}{'PSS MB':>8s}{'validate s':>12s}{'accuracy':>10s}")
        for side in [flywheel, *others]:
            print(f"  {side.name:16s}{med(side.cold):9.2f}{med(side.cached):10.2f}{med(side.rss):8.0f}{med(side.pss):8.0f}"
                  f"{med(side.validate):12.2f}{med(side.accuracy):10.3f}")
        by_name = {side.name: side for side in others}
        for base, new in (("no warm parent", flywheel), ("Beam, no warm", by_name.get("Beam path"))):
            if base in by_name and new is not None:
                print(f"  cold {base} / {new.name}: {med(by_name[base].cold) / med(new.cold):.2f}x")
    print(f"load average at start: {load_start}; at end: {load_end}")


if __name__ == "__main__":
    main()

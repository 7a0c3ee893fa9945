"""Per-node orchestration overhead: a chain of no-op components, cold and fully cached.

flywheel's LocalRunner (fork worker pool, MLMD on SQLite, atomic publishing) is
measured next to kfp.local's SubprocessRunner on the same chain in the same run.

    .venv/bin/python benchmarks/orchestration_overhead.py [--nodes 50] [--skip-kfp]

Goal (issue 2): at most 30 ms per node cold and 10 ms per node cached.
"""


# No "from __future__ import annotations": kfp reads real annotation objects.
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flywheel import Dataset, Input, Output, component, pipeline  # noqa: E402
from flywheel.home import Home  # noqa: E402
from flywheel.runner import LocalRunner  # noqa: E402


@component
def start(out: Output[Dataset]) -> None:
    with open(out.path("x"), "w", encoding="utf-8") as handle:
        handle.write("0")


@component
def step(data: Input[Dataset], out: Output[Dataset]) -> None:
    with open(data.path("x"), encoding="utf-8") as source:
        value = int(source.read())
    with open(out.path("x"), "w", encoding="utf-8") as handle:
        handle.write(str(value + 1))


def flywheel_chain(nodes: int):
    @pipeline(name="overhead-chain")
    def chain() -> None:
        current = start()
        for _ in range(nodes - 1):
            current = step(data=current.output)

    return chain


def measure_flywheel(nodes: int) -> tuple[float, float]:
    chain = flywheel_chain(nodes)
    with tempfile.TemporaryDirectory() as root:
        runner = LocalRunner(Home(root), max_workers=2)
        began = time.perf_counter()
        cold = runner.run(chain)
        cold_s = time.perf_counter() - began
        assert cold.ok and len(cold.states) == nodes, cold.errors
        began = time.perf_counter()
        cached = runner.run(chain)
        cached_s = time.perf_counter() - began
        assert set(cached.states.values()) == {"CACHED"}
    return cold_s, cached_s


def measure_kfp_local(nodes: int) -> float:
    from kfp import dsl, local

    @dsl.component
    def kfp_start(out: dsl.Output[dsl.Dataset]):
        with open(out.path, "w") as handle:
            handle.write("0")

    @dsl.component
    def kfp_step(data: dsl.Input[dsl.Dataset], out: dsl.Output[dsl.Dataset]):
        with open(data.path) as source:
            value = int(source.read())
        with open(out.path, "w") as handle:
            handle.write(str(value + 1))

    @dsl.pipeline(name="overhead-chain")
    def kfp_chain():
        current = kfp_start()
        for _ in range(nodes - 1):
            current = kfp_step(data=current.output)

    with tempfile.TemporaryDirectory() as root:
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
        began = time.perf_counter()
        kfp_chain()
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--skip-kfp", action="store_true", help="skip the kfp.local baseline")
    args = parser.parse_args()

    cold_s, cached_s = measure_flywheel(args.nodes)
    cold_ms = cold_s * 1000 / args.nodes
    cached_ms = cached_s * 1000 / args.nodes
    print(f"chain of {args.nodes} no-op components")
    print(f"flywheel LocalRunner  cold:   {cold_s:7.2f} s total  {cold_ms:7.1f} ms/node  (goal <= 30)")
    print(f"flywheel LocalRunner  cached: {cached_s:7.2f} s total  {cached_ms:7.1f} ms/node  (goal <= 10)")
    if not args.skip_kfp:
        import logging

        logging.disable(logging.INFO)  # kfp.local logs every task
        kfp_s = measure_kfp_local(args.nodes)
        kfp_ms = kfp_s * 1000 / args.nodes
        print(f"kfp.local Subprocess  cold:   {kfp_s:7.2f} s total  {kfp_ms:7.1f} ms/node")
        print(f"ratio kfp.local / flywheel cold: {kfp_s / cold_s:.1f}x")


if __name__ == "__main__":
    main()

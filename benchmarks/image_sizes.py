"""Image sizes and what fills them: flywheel's two images against the full lock.

Baseline, measured in the same run: the developer venv (.venv, every pin of requirements.lock,
what the images installed before flywheel/image_requirements.py; compiled .pyc included, as
pip installs them). Then each built image: its size in the engine's store, its venv, and the
venv's largest packages (`du` inside the image). Sizes do not vary run to run; the load is
printed for the record.

    .venv/bin/python benchmarks/image_sizes.py [--engine podman] [--tag 0.1.0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

SITE = "/opt/venv/lib/python3.11/site-packages"


def _du_mb(lines: str) -> list[tuple[int, str]]:
    rows = []
    for line in lines.splitlines():
        size, _, path = line.partition("\t")
        if size.strip().isdigit():
            rows.append((int(size), os.path.basename(path.rstrip("/"))))
    return sorted(rows, reverse=True)


def baseline_mb(repo: str) -> int:
    venv = os.path.join(repo, ".venv")
    out = subprocess.run(["du", "-sm", venv], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def image_report(engine: str, image: str, top: int) -> tuple[int, int, list[tuple[int, str]]]:
    size = subprocess.run([engine, "image", "inspect", "--format", "{{.Size}}", image],
                          capture_output=True, text=True, check=True).stdout.strip()
    script = f"du -sm /opt/venv; du -sm {SITE}/* | sort -rn | head -{top}"
    out = subprocess.run([engine, "run", "--rm", "--user", "0", "--entrypoint", "sh", image, "-c", script],
                         capture_output=True, text=True, check=True).stdout
    rows = _du_mb(out)
    venv = next(mb for mb, name in rows if name == "venv")
    return int(size) // 10**6, venv, [row for row in rows if row[1] != "venv"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--tag", default="0.1.0")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    base = baseline_mb(repo)
    print(f"baseline: developer venv (all {sum(1 for l in open(os.path.join(repo, 'requirements.lock')) if '==' in l)} pins): {base} MB")
    for name in ("flywheel", "flywheel-serving"):
        image = f"localhost/{name}:{args.tag}"
        size, venv, rows = image_report(args.engine, image, args.top)
        print(f"\n{image}: image {size} MB, venv {venv} MB ({venv / base:.2f}x the baseline venv)")
        for mb, package in rows:
            print(f"  {mb:6d} MB  {package}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

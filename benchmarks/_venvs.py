"""Side venvs for benchmarks that run another tool on its own dependency stack.

A baseline such as Evidently (pandas 2 / numpy 2) or TFX 1.16 (Python 3.10) cannot
share the project's pinned venv, so the benchmark runs it in a subprocess from a
venv created on first use from a requirements file kept next to the benchmark.
The venv counts as ready only once ``pip install`` of that exact file succeeded
(a stamp holding the file's sha256), so an install stopped half way is resumed
instead of being used.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def venv_python(venv: str, requirements: str, base_python: str = sys.executable, label: str = "") -> str:
    """The python of ``venv``, created with ``base_python`` and ``requirements`` installed on first use."""
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".requirements-sha256")
    wanted = _sha256(requirements)
    if os.path.exists(stamp):
        with open(stamp, encoding="ascii") as handle:
            if handle.read().strip() == wanted:
                return python
    if not os.path.exists(base_python):
        raise SystemExit(
            f"{label or venv}: the venv needs the interpreter {base_python}, which does not exist; "
            "install that Python version or pass another interpreter."
        )
    print(f"Creating {venv} ({label or os.path.basename(requirements)}, first use only) ...", flush=True)
    if not os.path.exists(python):
        subprocess.run([base_python, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "-r", requirements], check=True)
    with open(stamp, "w", encoding="ascii") as handle:
        handle.write(wanted)
    return python

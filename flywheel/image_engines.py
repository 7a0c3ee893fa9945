"""Building and pushing flywheel's images without a daemon: buildah or podman.

``buildah bud`` / ``podman build`` run as child processes with chroot isolation (works
in unprivileged CI sandboxes where namespaces are restricted) and ``--layers`` (the
engine's image store caches every step, so a rebuild after a code change reuses the
dependency layers). The images land in containers/storage, where podman (and its
Docker-compatible API) run them as ``localhost/<name>:<tag>``.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
from typing import Callable, Mapping

from flywheel.images import DockerUnavailableError, ImageError, failure_line

# buildah and podman announce each Dockerfile instruction as "STEP 3/9: RUN ...".
_STEP = re.compile(r"^STEP \d+(/\d+)?: ")
_ERROR = re.compile(r"error|failed|denied|not found", re.IGNORECASE)


def build_command(engine: str, context: str, dockerfile: str, ref: str, build_args: Mapping[str, str]) -> list[str]:
    """The command line that builds ``ref`` from ``dockerfile`` with ``engine`` (buildah or podman)."""
    verb = ["bud"] if engine == "buildah" else ["build"]
    args = [item for key, value in build_args.items() for item in ("--build-arg", f"{key}={value}")]
    return [engine, *verb, "--isolation", "chroot", "--layers", "-f", dockerfile, "-t", ref, *args, context]


def build(
    engine: str, context: str, dockerfile: str, ref: str, build_args: Mapping[str, str], emit: Callable[[str], None]
) -> None:
    """Builds one image, streaming the engine's output to ``emit``.

    Raises:
        DockerUnavailableError: ``engine`` is not installed.
        ImageError: the build failed; the message is one line naming the failed step.
    """
    _run(build_command(engine, context, dockerfile, ref, build_args), emit, lambda step, detail: failure_line(ref, dockerfile, step, detail), cwd=context)


def push(engine: str, ref: str, emit: Callable[[str], None]) -> None:
    """Pushes ``ref`` to its registry.

    Raises:
        ImageError: the push failed (one line, with how to log in).
    """
    _run(
        [engine, "push", ref],
        emit,
        lambda step, detail: f"Pushing {ref} failed: {detail}. Log in to the registry ({engine} login) or check the --repository prefix.",
    )


def _run(command: list[str], emit: Callable[[str], None], describe: Callable[[str, str], str], cwd: str | None = None) -> None:
    if shutil.which(command[0]) is None:
        raise DockerUnavailableError(
            f"{command[0]} is not installed; install podman and buildah (docker/engine-setup.sh) or use --engine docker."
        )
    step, tail = "", collections.deque(maxlen=40)
    with subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if not line:
                continue
            if _STEP.match(line):
                step = line
            tail.append(line)
            emit(line)
        status = process.wait()
    if status != 0:
        errors = [line for line in tail if _ERROR.search(line)]
        detail = errors[-1] if errors else (tail[-1] if tail else f"exit status {status}")
        raise ImageError(describe(step, detail))

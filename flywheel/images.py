"""Building (and pushing) flywheel's container images with the Docker SDK.

Two images come out of one build context (the repository root):

* ``flywheel`` from ``docker/Dockerfile``: the image every Kubeflow Pipelines task
  runs (the compiled IR sets ``command: [python, -m, flywheel.executor, ...]``);
* ``flywheel-serving`` from ``docker/Dockerfile.serving``: ``flywheel serve`` on 8501.

``docker`` is imported lazily, and the engine is pinged with a short timeout before
anything else, so a machine without a Docker engine gets one clear line at once
instead of a traceback after a long wait.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Iterable, Sequence

from flywheel.errors import FlywheelError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Seconds to wait for the engine to answer the ping; builds themselves get no limit.
PING_TIMEOUT_S = 3

# Docker's own rule for a tag (reference/regexp.go).
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A repository prefix: registry host[:port] and/or path, lower case, no tag.
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


class ImageError(FlywheelError):
    """An image cannot be built or pushed."""


class DockerUnavailableError(ImageError):
    """No Docker engine answers at the configured address."""


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """One image flywheel builds: its name and the Dockerfile (relative to the context)."""

    name: str
    dockerfile: str


IMAGES: dict[str, ImageSpec] = {
    "component": ImageSpec(name="flywheel", dockerfile="docker/Dockerfile"),
    "serving": ImageSpec(name="flywheel-serving", dockerfile="docker/Dockerfile.serving"),
}


def image_reference(kind: str, *, tag: str, repository: str = "") -> str:
    """The full reference of image ``kind`` ("component" or "serving"), e.g. ``reg/ml/flywheel:0.1.0``."""
    name = IMAGES[kind].name
    return f"{repository.rstrip('/')}/{name}:{tag}" if repository else f"{name}:{tag}"


def build_images(
    context_dir: str | os.PathLike[str],
    *,
    tag: str,
    push: bool = False,
    which: Sequence[str] = ("component", "serving"),
    repository: str = "",
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Builds flywheel's images from ``context_dir`` and optionally pushes them.

    Args:
        context_dir: The repository root (holds ``setup.py`` and ``docker/``).
        tag: Image tag, e.g. ``0.1.0``; pin a version, not ``latest``, for clusters.
        push: Push each image after building it; needs ``repository``.
        which: Which images, any of ``"component"`` and ``"serving"``.
        repository: Registry/path prefix, e.g. ``registry.example.com/ml``; empty builds
            local names (``flywheel:<tag>``, ``flywheel-serving:<tag>``).
        progress: Called with each line of build/push output; defaults to ``print``.

    Returns:
        The references built, in the order of ``which``.

    Raises:
        ImageError: an argument is invalid, a build or a push failed.
        DockerUnavailableError: no Docker engine is reachable (raised within seconds).
    """
    emit = progress or print
    kinds = _validate_which(which)
    _validate_tag_and_repository(tag, repository, push)
    context = os.path.abspath(os.fspath(context_dir))
    for kind in kinds:
        dockerfile = os.path.join(context, IMAGES[kind].dockerfile)
        if not os.path.isfile(dockerfile):
            raise ImageError(
                f"The build context must hold {IMAGES[kind].dockerfile}; got context '{context}' "
                f"without it. Run from the repository root or pass its path as the context."
            )

    client = connect(timeout=PING_TIMEOUT_S)
    built = []
    for kind in kinds:
        ref = image_reference(kind, tag=tag, repository=repository)
        emit(f"Building {ref} from {IMAGES[kind].dockerfile}")
        _build_one(client, context, IMAGES[kind].dockerfile, ref, emit)
        built.append(ref)
        if push:
            emit(f"Pushing {ref}")
            _push_one(client, ref, emit)
    return built


def connect(*, timeout: float = PING_TIMEOUT_S) -> Any:
    """A ``docker.DockerClient`` whose engine answered a ping within ``timeout`` seconds.

    Raises:
        DockerUnavailableError: the SDK is missing or no engine answers.
    """
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    try:
        import docker
        import requests
    except ImportError as exc:
        raise DockerUnavailableError(
            f"The docker SDK is not installed ({exc}); install the pins of requirements.lock."
        ) from exc
    try:
        # version="auto" asks the engine for its API version: that request is the ping.
        client = docker.from_env(timeout=timeout, version="auto")
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise DockerUnavailableError(
            f"No Docker engine reachable at {host}: {_short(exc)}; start Docker or set DOCKER_HOST."
        ) from exc
    # The short timeout was for the ping; a build may legitimately run for many minutes.
    client.api.timeout = None
    return client


def _build_one(client: Any, context: str, dockerfile: str, ref: str, emit: Callable[[str], None]) -> None:
    import docker

    last_lines: list[str] = []
    try:
        stream = client.api.build(
            path=context, dockerfile=dockerfile, tag=ref, rm=True, forcerm=True, decode=True
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                tail = "".join(f"\n  {line}" for line in last_lines[-5:])
                raise ImageError(f"Building {ref} from {dockerfile} failed: {detail.strip()}{tail}")
            for line in _lines(chunk):
                last_lines.append(line)
                emit(line)
    except docker.errors.APIError as exc:
        raise ImageError(f"Building {ref} from {dockerfile} failed: {_short(exc)}") from exc


def _push_one(client: Any, ref: str, emit: Callable[[str], None]) -> None:
    import docker

    repository, _, tag = ref.rpartition(":")
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageError(
                    f"Pushing {ref} failed: {detail.strip()}. Log in to the registry "
                    f"(docker login) or check the --repository prefix."
                )
            for line in _lines(chunk):
                emit(line)
    except docker.errors.APIError as exc:
        raise ImageError(f"Pushing {ref} failed: {_short(exc)}") from exc


def _lines(chunk: dict[str, Any]) -> Iterable[str]:
    """The human-readable lines of one decoded build/push progress message."""
    if "stream" in chunk:
        yield from (line for line in str(chunk["stream"]).splitlines() if line.strip())
    elif "status" in chunk:
        # Per-layer push progress repeats many times a second; report statuses only.
        layer = f"{chunk['id']}: " if chunk.get("id") else ""
        yield f"{layer}{chunk['status']}"
    elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
        yield f"image id {chunk['aux']['ID']}"


def _validate_which(which: Sequence[str]) -> list[str]:
    if isinstance(which, str):
        which = (which,)
    kinds = list(dict.fromkeys(which))
    unknown = [kind for kind in kinds if kind not in IMAGES]
    if unknown or not kinds:
        raise ImageError(
            f"The 'which' argument of build_images must name images among {sorted(IMAGES)}. "
            f"Got {list(which)!r} instead."
        )
    return kinds


def _validate_tag_and_repository(tag: str, repository: str, push: bool) -> None:
    if not _TAG.match(tag or ""):
        raise ImageError(
            f"An image tag must be 1-128 characters of letters, digits, '_', '.', '-' and not start "
            f"with '.' or '-'. Got {tag!r} instead; use e.g. 0.1.0."
        )
    if repository and not _REPOSITORY.match(repository.rstrip("/")):
        raise ImageError(
            f"A repository prefix must be a lower-case registry host and/or path without a tag, "
            f"e.g. registry.example.com/ml. Got {repository!r} instead."
        )
    if push and not repository:
        raise ImageError(
            "Pushing needs a repository prefix the cluster can pull from; got none. "
            "Pass --repository (e.g. registry.example.com/ml) with --push."
        )


def _short(exc: BaseException) -> str:
    """The first line of an exception's message, bounded, for one-line CLI errors."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."

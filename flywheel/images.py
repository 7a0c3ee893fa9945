"""Building (and pushing) flywheel's container images with the Docker SDK.

Two images come out of one build context (the repository root):

* ``flywheel`` from ``docker/Dockerfile``: the image every Kubeflow Pipelines task
  runs (the compiled IR sets ``command: [python, -m, flywheel.kubeflow.entrypoint, ...]``);
* ``flywheel-serving`` from ``docker/Dockerfile.serving``: ``flywheel serve`` on 8501.

Engines: Docker (the SDK, through ``DOCKER_HOST``) or, without any daemon, buildah or
podman (``flywheel.image_engines``, what CI uses). ``engine="auto"`` takes Docker when
``DOCKER_HOST`` is set or ``/var/run/docker.sock`` exists, else buildah, else podman.
``docker`` is imported lazily, and the engine is pinged with a short timeout before
anything else, so a machine without a Docker engine gets one clear line at once
instead of a traceback after a long wait. A failed build is reported in one line: the
step that failed and the engine's last error line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from typing import Any, Callable, Iterable, Mapping, Sequence

from flywheel.errors import FlywheelError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
ENGINES = ("auto", "docker", "buildah", "podman")
# Where extra CA bundles go for the build (docker/ca-certificates/README.md); never committed.
CA_DIRECTORY = "docker/ca-certificates"
_BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How the images are built, beyond which and under what name.

    Attributes:
        engine: One of ENGINES.
        base_image: The ``BASE_IMAGE`` both Dockerfiles start from ("" keeps their default),
            e.g. ``localhost/flywheel-base:bookworm`` from docker/bootstrap-base.sh.
        build_args: Further ``--build-arg`` values.
        ca_bundles: PEM files pip trusts while building (a corporate proxy's CA).
    """

    engine: str = "auto"
    base_image: str = ""
    build_args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ca_bundles: tuple[str, ...] = ()

    def all_build_args(self) -> dict[str, str]:
        return {**self.build_args, **({"BASE_IMAGE": self.base_image} if self.base_image else {})}


IMAGES: dict[str, ImageSpec] = {
    "component": ImageSpec(name="flywheel", dockerfile="docker/Dockerfile"),
    "serving": ImageSpec(name="flywheel-serving", dockerfile="docker/Dockerfile.serving"),
}


def image_reference(kind: str, *, tag: str, repository: str = "") -> str:
    """The full reference of image ``kind`` ("component" or "serving"), e.g. ``reg/ml/flywheel:0.1.0``."""
    name = IMAGES[kind].name
    return f"{repository.rstrip('/')}/{name}:{tag}" if repository else f"{name}:{tag}"


def sibling_reference(reference: str, kind: str) -> str | None:
    """The reference of image ``kind`` built beside ``reference``: same repository, same tag.

    ``reg.example/ml/flywheel:0.2.0`` gives ``reg.example/ml/flywheel-serving:0.2.0`` for
    "serving", as ``flywheel image build --repository reg.example/ml --tag 0.2.0`` names the
    two. None when ``reference`` is not named like one of flywheel's images (another name, or
    pinned by digest, which cannot carry over).
    """
    if "@" in reference:
        return None
    repository, _, last = reference.rpartition("/")
    name, colon, tag = last.partition(":")
    if name not in {spec.name for spec in IMAGES.values()} or (colon and not _TAG.match(tag)):
        return None
    sibling = f"{repository}/{IMAGES[kind].name}" if repository else IMAGES[kind].name
    return f"{sibling}:{tag}" if colon else sibling


def build_images(
    context_dir: str | os.PathLike[str],
    *,
    tag: str,
    push: bool = False,
    which: Sequence[str] = ("component", "serving"),
    repository: str = "",
    progress: Callable[[str], None] | None = None,
    options: BuildOptions | None = None,
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
        options: Engine, base image, build args and CA bundles (BuildOptions).

    Returns:
        The references built, in the order of ``which``.

    Raises:
        ImageError: an argument is invalid, a build or a push failed.
        DockerUnavailableError: no engine is reachable (raised within seconds).
    """
    emit = progress or print
    options = options or BuildOptions()
    kinds = _validate_which(which)
    _validate_tag_and_repository(tag, repository, push)
    _validate_options(options)
    context = os.path.abspath(os.fspath(context_dir))
    for kind in kinds:
        dockerfile = os.path.join(context, IMAGES[kind].dockerfile)
        if not os.path.isfile(dockerfile):
            raise ImageError(
                f"The build context must hold {IMAGES[kind].dockerfile}; got context '{context}' "
                f"without it. Run from the repository root or pass its path as the context."
            )

    _check_image_locks(context)

    engine = select_engine(options.engine)
    if engine == "docker":
        client = connect(timeout=PING_TIMEOUT_S)
        build = lambda dockerfile, ref: _build_one(client, context, dockerfile, ref, options.all_build_args(), emit)  # noqa: E731
        push_one = lambda ref: _push_one(client, ref, emit)  # noqa: E731
    else:
        from flywheel import image_engines

        build = lambda dockerfile, ref: image_engines.build(engine, context, dockerfile, ref, options.all_build_args(), emit)  # noqa: E731
        push_one = lambda ref: image_engines.push(engine, ref, emit)  # noqa: E731
    built = []
    with _ca_bundles_in_context(context, options.ca_bundles):
        for kind in kinds:
            ref = image_reference(kind, tag=tag, repository=repository)
            emit(f"Building {ref} from {IMAGES[kind].dockerfile} with {engine}")
            build(IMAGES[kind].dockerfile, ref)
            built.append(ref)
            if push:
                emit(f"Pushing {ref}")
                push_one(ref)
    return built


def _check_image_locks(context: str) -> None:
    """Refuses to build from ``docker/<image>.lock`` files that no longer match ``requirements.lock``."""
    from flywheel import image_requirements

    if not os.path.isfile(os.path.join(context, "requirements.lock")):
        raise ImageError(f"The build context must hold requirements.lock; got context '{context}' without it.")
    stale = image_requirements.stale_image_locks(context)
    if stale:
        raise ImageError(
            f"{' and '.join(stale)} no longer match requirements.lock (the images install those pins); "
            "run `make image-locks` (or `python3 flywheel/image_requirements.py --write requirements.lock`) and commit them."
        )


def select_engine(engine: str) -> str:
    """The engine ``engine`` ("auto" or one of ENGINES) means on this machine.

    Raises:
        DockerUnavailableError: "auto" and no engine at all is installed.
    """
    if engine != "auto":
        return engine
    if os.environ.get("DOCKER_HOST") or os.path.exists(DEFAULT_DOCKER_HOST[len("unix://"):]):
        return "docker"
    for candidate in ("buildah", "podman"):
        if shutil.which(candidate):
            return candidate
    raise DockerUnavailableError(
        "No container engine found: no Docker socket (DOCKER_HOST unset, no /var/run/docker.sock) and neither "
        "buildah nor podman on PATH. Install Docker, or podman and buildah (docker/engine-setup.sh)."
    )


class _ca_bundles_in_context:  # noqa: N801 - used as a context manager, named like one
    """Copies CA bundles into the build context's CA directory for the build, removes them after."""

    def __init__(self, context: str, bundles: Sequence[str]) -> None:
        self.targets = [
            (bundle, os.path.join(context, CA_DIRECTORY, f"flywheel-build-{index}.crt"))
            for index, bundle in enumerate(bundles)
        ]

    def __enter__(self) -> None:
        for bundle, target in self.targets:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(bundle, target)

    def __exit__(self, *exc_info: object) -> None:
        for _, target in self.targets:
            if os.path.exists(target):
                os.remove(target)


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


def _build_one(
    client: Any, context: str, dockerfile: str, ref: str, build_args: Mapping[str, str], emit: Callable[[str], None]
) -> None:
    import docker

    step = ""
    try:
        stream = client.api.build(
            path=context, dockerfile=dockerfile, tag=ref, rm=True, forcerm=True, decode=True,
            buildargs=dict(build_args),
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageError(failure_line(ref, dockerfile, step, detail))
            for line in _lines(chunk):
                if line.startswith("Step "):
                    step = line
                emit(line)
    except docker.errors.APIError as exc:
        raise ImageError(failure_line(ref, dockerfile, step, _short(exc))) from exc


def failure_line(ref: str, dockerfile: str, step: str, detail: str) -> str:
    """The one line a failed build is reported in: image, Dockerfile, failed step, engine error."""
    where = f" at {_bounded(' '.join(step.split()), 160)}" if step else ""
    return f"Building {ref} from {dockerfile} failed{where}: {_bounded(' '.join(detail.split()), 300)}"


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


def _validate_options(options: BuildOptions) -> None:
    if options.engine not in ENGINES:
        raise ImageError(f"The engine must be one of {list(ENGINES)}. Got {options.engine!r} instead.")
    for key in options.build_args:
        if not _BUILD_ARG.match(key):
            raise ImageError(
                f"A build argument must be NAME=VALUE with NAME letters, digits and '_'. Got name {key!r} instead."
            )
    for bundle in options.ca_bundles:
        try:
            with open(bundle, encoding="utf-8", errors="replace") as handle:
                pem = handle.read()
        except OSError as exc:
            raise ImageError(f"The CA bundle {bundle!r} cannot be read ({exc.strerror}); pass a PEM file.") from exc
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ImageError(
                f"The CA bundle must be PEM certificates (-----BEGIN CERTIFICATE-----). Got {bundle!r}, which holds none."
            )


def _short(exc: BaseException) -> str:
    """The first line of an exception's message, bounded, for one-line CLI errors."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _bounded(text, 300)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""``flywheel image build``: build (and push) the component and serving images.

Registered by the CLI's main module with ``image_commands.register(subparsers)``.
Nothing heavy is imported here; ``flywheel.images`` imports the Docker SDK only
when a build runs.
"""

from __future__ import annotations

import argparse
import os

from flywheel.errors import FlywheelError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``image`` command group (``image build``) to the CLI's subparsers."""
    from flywheel import __version__

    image = subparsers.add_parser(
        "image",
        help="build and push flywheel's container images",
        description="Build and push the container images a Kubernetes cluster runs.",
    )
    commands = image.add_subparsers(dest="image_command", metavar="COMMAND")
    commands.required = True

    build = commands.add_parser(
        "build",
        help="build the component image (flywheel) and the serving image (flywheel-serving)",
        description=(
            "Build docker/Dockerfile as 'flywheel:<tag>' (the image every Kubeflow task runs) and "
            "docker/Dockerfile.serving as 'flywheel-serving:<tag>' with Docker (DOCKER_HOST is honoured) "
            "or, without a daemon, buildah or podman. Where no image registry is reachable, build a "
            "base from Debian packages first: docker/bootstrap-base.sh (see docs/containers.md)."
        ),
    )
    build.add_argument(
        "--tag", default=__version__, help="image tag (default: the flywheel version, %(default)s)"
    )
    build.add_argument(
        "--repository",
        default="",
        metavar="PREFIX",
        help="registry/path prefix, e.g. registry.example.com/ml (needed with --push)",
    )
    build.add_argument("--push", action="store_true", help="push each image after building it")
    build.add_argument(
        "--only", choices=("component", "serving"), help="build only this image (default: both)"
    )
    build.add_argument(
        "--context",
        default=".",
        metavar="DIR",
        help="build context: the repository root holding docker/ (default: current directory)",
    )
    build.add_argument(
        "--engine", choices=("auto", "docker", "buildah", "podman"), default="auto",
        help="docker, or daemonless buildah/podman (default auto: docker when DOCKER_HOST is set or "
        "/var/run/docker.sock exists, else buildah, else podman)",
    )
    build.add_argument(
        "--base-image", default="", metavar="IMAGE",
        help="Debian bookworm image with python3 3.11 and python3-venv to build on, e.g. "
        "localhost/flywheel-base:bookworm from docker/bootstrap-base.sh (default: the Dockerfiles' python:3.11 tag)",
    )
    build.add_argument(
        "--build-arg", action="append", default=[], metavar="NAME=VALUE",
        help="a build argument, e.g. --build-arg http_proxy=http://proxy:3128 (repeatable)",
    )
    build.add_argument(
        "--ca-bundle", action="append", default=[], metavar="PEM",
        help="extra CA certificates pip trusts during the build, e.g. a corporate proxy's (repeatable); "
        "not copied into the final images",
    )
    build.set_defaults(handler=build_command)


def build_command(args: argparse.Namespace) -> int:
    """Runs ``flywheel image build``; returns the exit code.

    Raises:
        FlywheelError: bad arguments, no Docker engine, or a failed build/push.
    """
    from flywheel.images import BuildOptions, ImageError, build_images

    if not os.path.isdir(args.context):
        raise FlywheelError(
            f"--context must be an existing directory (the repository root). Got '{args.context}'."
        )
    which = (args.only,) if args.only else ("component", "serving")
    build_args = {}
    for item in args.build_arg:
        name, sep, value = item.partition("=")
        if not sep:
            raise ImageError(f"--build-arg must be NAME=VALUE. Got {item!r} instead.")
        build_args[name] = value
    options = BuildOptions(
        engine=args.engine, base_image=args.base_image, build_args=build_args, ca_bundles=tuple(args.ca_bundle)
    )
    refs = build_images(
        args.context, tag=args.tag, push=args.push, which=which, repository=args.repository, options=options
    )
    verb = "Built and pushed" if args.push else "Built"
    for ref in refs:
        print(f"{verb} {ref}")
    return 0

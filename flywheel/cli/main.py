"""The ``flywheel`` command line.

Each group of subcommands lives in its own module with a ``register(subparsers)``
function; handlers take the parsed arguments and return an exit code. Errors a
user can cause are ``FlywheelError``s and print as one line, never a traceback.
Nothing heavy (TensorFlow, Beam, kfp, MLMD) is imported until a handler needs it.
"""

from __future__ import annotations

import argparse
import errno
import sys

from flywheel.cli.common import join_beam_args
from flywheel.errors import FlywheelError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, quota exceeded, file size limit


def build_parser() -> argparse.ArgumentParser:
    from flywheel import __version__
    from flywheel.cli import (
        dataset_commands,
        demo_commands,
        container_commands,
        image_commands,
        kubeflow_commands,
        monitor_commands,
        run_commands,
        schedule_commands,
        serve_commands,
        ui_commands,
    )

    parser = argparse.ArgumentParser(
        prog="flywheel",
        description="ML pipelines that run on this machine and compile to Kubeflow Pipelines v2.",
    )
    parser.add_argument("--version", action="version", version=f"flywheel {__version__}")
    parser.add_argument(
        "--home",
        help="project home holding metadata, artifacts and logs (default: $FLYWHEEL_HOME or ~/.flywheel)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo_commands.register(subparsers)
    run_commands.register(subparsers)
    kubeflow_commands.register(subparsers)
    schedule_commands.register(subparsers)
    serve_commands.register(subparsers)
    monitor_commands.register(subparsers)
    ui_commands.register(subparsers)
    dataset_commands.register(subparsers)
    image_commands.register(subparsers)
    container_commands.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_beam_args(sys.argv[1:] if argv is None else list(argv)))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except FlywheelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"error: the disk is full{where}: {exc.strerror}. Free space there (or use another --home) and run "
            "the command again; what was recorded before is intact.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

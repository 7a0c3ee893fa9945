"""``flywheel datasets``: export data that ships with the installed packages.

Registered by the CLI's main module with ``dataset_commands.register(subparsers)``::

    flywheel datasets export-digits DEST [--format folders|npz] [--overwrite]
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    datasets = subparsers.add_parser(
        "datasets",
        help="export bundled datasets (scikit-learn's digits) for demos and tests",
        description="Writes data that the installed packages carry; nothing is downloaded.",
    )
    commands = datasets.add_subparsers(dest="datasets_command", metavar="COMMAND")
    digits = commands.add_parser(
        "export-digits",
        help="write scikit-learn's 1,797 8x8 digits as class folders of PNGs or an .npz",
        description="Writes <DEST>/<digit>/<index>.png (--format folders) or DEST.npz with 'images' "
        "(uint8, N x 8 x 8 x 1) and 'labels' (--format npz); ingest reads both.",
    )
    digits.add_argument("dest", help="directory (folders) or file (npz)")
    digits.add_argument("--format", choices=("folders", "npz"), default="folders")
    digits.add_argument("--overwrite", action="store_true", help="replace existing content at DEST")
    digits.set_defaults(handler=export_digits_command)
    datasets.set_defaults(handler=lambda args: datasets.print_help() or 2)


def export_digits_command(args: argparse.Namespace) -> int:
    from flywheel.datasets import export_digits

    path = export_digits(args.dest, args.format, overwrite=args.overwrite)
    print(f"wrote 1797 digits ({args.format}) to {path}")
    return 0

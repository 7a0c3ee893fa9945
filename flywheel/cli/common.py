"""What every command module shares: the project home, --param and --beam-arg parsing, plain tables."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flywheel.errors import ParameterError


def home_of(args: argparse.Namespace) -> Any:
    """The project home: --home (before or after the command), else $FLYWHEEL_HOME, else ~/.flywheel."""
    from flywheel.home import Home

    return Home.resolve(getattr(args, "home", None))


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` (values stay strings; the pipeline coerces them).

    Raises:
        ParameterError: an item has no '=' or an empty name.
    """
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--param takes NAME=VALUE (e.g. --param epochs=5); got {item!r}.")
        params[key.strip()] = value
    return params


BEAM_ARG_HELP = (
    "an Apache Beam pipeline option for the tasks that run Beam (validate's statistics, transform's "
    "analyzers), passed to Beam unchanged as TFX's beam_pipeline_args: --beam-arg --runner=FlinkRunner "
    "--beam-arg --flink_master=host:8081 (repeatable; every task with a beam_args parameter gets them)"
)


def add_beam_arg(parser: argparse.ArgumentParser) -> None:
    """``--beam-arg OPTION`` (repeatable), read by :func:`command_params`."""
    parser.add_argument("--beam-arg", action="append", default=[], dest="beam_arg", metavar="OPTION", help=BEAM_ARG_HELP)


def join_beam_args(argv: list[str]) -> list[str]:
    """``--beam-arg --runner=X`` -> ``--beam-arg=--runner=X``.

    A Beam option starts with ``--``, which argparse takes for an option of its own ("expected one
    argument"); joined with ``=`` it is the value, as users write it after ``--beam-arg``.
    """
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":  # what follows is positional: leave it as it is
            joined.append(word)
            joined.extend(words)
            break
        if word == "--beam-arg":
            value = next(words, None)
            joined.append(word if value is None else f"--beam-arg={value}")
        else:
            joined.append(word)
    return joined


def command_params(args: argparse.Namespace, pipeline: Any = None) -> dict[str, str]:
    """The command's ``-p`` values, with ``--beam-arg`` options as Beam options (a JSON list) for
    every task of ``pipeline`` that runs Beam, as TFX's pipeline-level ``beam_pipeline_args``.

    ``pipeline`` (a ``Pipeline``; None for a compiled IR file, whose run parameter it then is):
    its ``beam_args`` parameter when it declares one, else ``TASK.beam_args`` of each task that
    has the parameter.

    Raises:
        ParameterError: a bad ``-p`` item, Beam options given both ways, or no task to take them.
    """
    params = parse_params(getattr(args, "param", None))
    beam = getattr(args, "beam_arg", None) or []
    if not beam:
        return params
    if any(name == "beam_args" or name.endswith(".beam_args") for name in params):
        raise ParameterError(
            "Beam options were given twice: with --beam-arg and with -p beam_args (or TASK.beam_args). Give them one way "
            "(e.g. --beam-arg --runner=FlinkRunner --beam-arg --flink_master=host:8081)."
        )
    targets = ["beam_args"]
    if pipeline is not None and "beam_args" not in pipeline.parameters:
        from flywheel.dsl.addressing import owners

        targets = [f"{task_id}.beam_args" for task_id in owners(pipeline, "beam_args")]
        if not targets:
            raise ParameterError(
                f"--beam-arg: no task of pipeline '{pipeline.name}' runs Beam (none has a beam_args "
                "parameter); drop --beam-arg."
            )
    return {**params, **{name: json.dumps(beam) for name in targets}}


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)

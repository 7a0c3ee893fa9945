"""Live progress of a local run: a table on a terminal, one line per event otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from flywheel.runner.runner import NodeEvent

_STYLE = {
    "WAITING": "dim",
    "RUNNING": "bold cyan",
    "RETRYING": "yellow",
    "COMPLETE": "green",
    "CACHED": "green",
    "REUSED": "green",
    "FAILED": "bold red",
    "SKIPPED": "dim",
}


class Progress:
    """Receives the runner's node events and shows them.

    Args:
        node_ids: Nodes in display order.
        stream: Where to write; a terminal gets a live table (rich), anything
            else gets plain lines that read well in CI logs.
    """

    def __init__(self, node_ids: list[str], stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.rows: dict[str, dict[str, Any]] = {
            n: {"state": "WAITING", "since": None, "elapsed": None, "attempt": 0, "error": ""} for n in node_ids
        }
        self.live: Any = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            # No refresh thread: worker processes are forked from this process,
            # and a thread holding an I/O lock at fork time could hang them.
            self.live = Live(
                self._table(),
                console=Console(file=self.stream),
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
            self.live.stop()

    def on_event(self, event: NodeEvent) -> None:
        row = self.rows.setdefault(event.node_id, {"state": "", "since": None, "elapsed": None, "attempt": 0, "error": ""})
        row["state"] = event.state
        row["attempt"] = event.attempt
        row["error"] = event.error
        if event.state == "RUNNING":
            row["since"] = time.monotonic()
            row["elapsed"] = None
        elif event.state in ("COMPLETE", "FAILED", "RETRYING"):
            row["elapsed"] = event.elapsed_s
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
            return
        clock = time.monotonic() - self.started
        detail = ""
        if event.state in ("COMPLETE", "FAILED"):
            detail = f"{event.elapsed_s:7.2f}s"
        if event.state == "RETRYING":
            detail = f"attempt {event.attempt} failed, retrying: {event.error}"
        if event.state in ("FAILED", "SKIPPED", "EXPANDED") and event.error:
            detail += f"  {event.error}"  # a SKIPPED node's error says which condition was false
        print(f"[{clock:7.2f}s] {event.node_id:<24} {event.state:<9} {detail}".rstrip(), file=self.stream, flush=True)

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(self._table(), refresh=True)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=None, box=None, pad_edge=False)
        table.add_column("node")
        table.add_column("state")
        table.add_column("time", justify="right")
        table.add_column("")
        now = time.monotonic()
        for node_id, row in self.rows.items():
            elapsed = row["elapsed"]
            if row["state"] == "RUNNING" and row["since"] is not None:
                elapsed = now - row["since"]
            shown = "" if elapsed is None else f"{elapsed:.1f}s"
            note = ""
            if row["state"] in ("RETRYING", "FAILED") and row["error"]:
                note = row["error"][:100]
            if row["attempt"] > 1:
                note = f"attempt {row['attempt']} {note}".strip()
            style = _STYLE.get(row["state"], "")
            table.add_row(node_id, f"[{style}]{row['state']}[/]", shown, note)
        return table

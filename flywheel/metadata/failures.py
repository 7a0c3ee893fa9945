"""What an error raised inside ML Metadata means for the user: one line with the cause and the fix."""

from __future__ import annotations

import re

from flywheel.errors import MetadataError


def metadata_failure(database: str, exc: Exception) -> MetadataError:
    """A ``MetadataError`` for an error MLMD raised, saying what to do (disk full, permissions, damage)."""
    text = str(exc).strip() or type(exc).__name__
    # MLMD puts SQLite's reason between "Error when executing query:" and the query (after a proto dump).
    reason = re.search(r"Error when executing query: (.*?)(?: query:|$)", text, re.DOTALL)
    text = reason.group(1).strip() if reason else text[:300]
    lowered = text.lower()
    if "full" in lowered or "no space" in lowered or "disk i/o" in lowered:
        hint = (
            "The disk holding it is full or failing: free space there (or use another --home) "
            "and run the command again; what was recorded before is intact."
        )
    elif "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        hint = "It cannot be written: check the permissions of the file and its directory, or use another --home."
    else:
        hint = "Check that the disk has free space and the file is intact, then run the command again."
    return MetadataError(f"The ML Metadata store {database} could not be used ({type(exc).__name__}: {text}). {hint}")

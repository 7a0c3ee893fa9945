"""Data read from outside the store: span/version patterns and content fingerprints.

A node that reads data named by a parameter (ingest's ``path``, validate's
``schema_path``) makes that data part of its cache key: the runner calls
``describe_source`` before the node runs, and the component records the same
description on its output, so lineage says exactly what was read.

Patterns, as TFX's ExampleGen has them: ``{SPAN}`` and ``{VERSION}`` stand for
digits, ``{YYYY}``/``{MM}``/``{DD}`` for a date (its span is the number of days
since 1970-01-01). ``resolve_pattern`` picks the newest span (and its newest
version), or the last ``span_count`` spans, *when it is called*: a schedule
that fires every night reads the span that is newest then.

A source record is a plain dict, so an object store slots in beside files::

    {"kind": "file", "uri": "data/span-3", "span": 3, "version": None,
     "size": 8123, "mtime": 1767000000.0, "sha256": "...", "files": [...]}
    {"kind": "object", "uri": "s3://b/data/span-{SPAN}/", "span": 3, "size": ..., "mtime": ...,
     "sha256": None, "fingerprint": "...", "fingerprint_basis": "size+mtime", "files": [...]}

Local contents are hashed in 1 MiB chunks, never read whole into memory.
Objects (``s3://``, ``minio://``, ``gs://``, listed through ``flywheel.storage``)
are fingerprinted from their listing - each object's name, size and last
modification - because pyarrow 10's ``FileInfo`` carries no ETag and a sha256
would need a full download of every object; rewriting an object changes its
mtime, so a changed object is still seen.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import os
import re
from typing import Any

from flywheel import storage
from flywheel.errors import FlywheelError

SPAN, VERSION = "{SPAN}", "{VERSION}"
DATE_PARTS = ("{YYYY}", "{MM}", "{DD}")
OBJECT_SCHEMES = ("s3://", "gs://", "gcs://", "minio://")
_CHUNK = 1 << 20
_EPOCH = datetime.date(1970, 1, 1)
_PLACEHOLDER_RE = {
    SPAN: r"(?P<span>\d+)",
    VERSION: r"(?P<version>\d+)",
    "{YYYY}": r"(?P<year>\d{4})",
    "{MM}": r"(?P<month>\d{2})",
    "{DD}": r"(?P<day>\d{2})",
}


class DataSourceError(FlywheelError):
    """A data path or pattern names nothing, or names it in a way that cannot be resolved."""


def is_pattern(path: str) -> bool:
    """Whether ``path`` holds a span, version or date placeholder."""
    return any(part in path for part in (SPAN, VERSION, *DATE_PARTS))


def resolve_pattern(pattern: str, *, span_count: int = 1) -> dict[str, Any]:
    """The newest span(s) a pattern matches now.

    Args:
        pattern: A path with ``{SPAN}`` (optionally ``{VERSION}``) or all of
            ``{YYYY}``, ``{MM}``, ``{DD}``; it may name files or directories.
        span_count: How many of the newest spans to take (a rolling range).

    Returns:
        ``{"paths": [...], "spans": [...], "span": newest, "version": int|None,
        "date": "YYYY-MM-DD"|None}``, oldest span first in ``paths``.

    Raises:
        DataSourceError: the placeholders are mixed or incomplete, or nothing matches.
    """
    if not isinstance(span_count, int) or isinstance(span_count, bool) or span_count < 1:
        raise DataSourceError(f"The span count must be an int >= 1. Got {span_count!r} instead.")
    dates = [part for part in DATE_PARTS if part in pattern]
    if dates and SPAN in pattern:
        raise DataSourceError(
            f"Data path {pattern!r} mixes {{SPAN}} with date parts; use either {{SPAN}} or {{YYYY}}{{MM}}{{DD}}."
        )
    if dates and len(dates) != len(DATE_PARTS):
        raise DataSourceError(
            f"Data path {pattern!r} has {''.join(dates)} but a date needs all of {{YYYY}}, {{MM}} and {{DD}}."
        )
    if VERSION in pattern and SPAN not in pattern and not dates:
        raise DataSourceError(f"Data path {pattern!r} has {{VERSION}} without {{SPAN}} or a date; add one.")
    expanded = pattern.rstrip("/") if storage.is_object_uri(pattern) else os.path.expanduser(pattern)
    glob_pattern, regex = expanded, re.escape(expanded)
    for placeholder, group in _PLACEHOLDER_RE.items():
        glob_pattern = glob_pattern.replace(placeholder, "*")
        regex = regex.replace(re.escape(placeholder), group, 1).replace(re.escape(placeholder), f"(?P={group[4:group.index('>')]})")
    matcher = re.compile(regex + r"\Z")
    found: dict[int, tuple[int | None, str, str | None]] = {}
    for candidate in storage.glob(glob_pattern) if storage.is_object_uri(glob_pattern) else sorted(glob.glob(glob_pattern)):
        match = matcher.match(candidate)
        if match is None:
            continue
        groups = match.groupdict()
        date = None
        if dates:
            try:
                day = datetime.date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
            except ValueError:
                continue  # not a calendar date, e.g. 2026-13-40
            span, date = (day - _EPOCH).days, day.isoformat()
        else:
            span = int(groups["span"])
        version = int(groups["version"]) if groups.get("version") is not None else None
        best = found.get(span)
        if best is None or (version or 0) > (best[0] or 0):
            found[span] = (version, candidate, date)
    if not found:
        raise DataSourceError(
            f"No file or directory matches the data path {pattern!r} (looked for {glob_pattern!r}); "
            "check the pattern, or write the first span."
        )
    spans = sorted(found)[-span_count:]
    newest = found[spans[-1]]
    return {
        "paths": [found[s][1] for s in spans],
        "spans": spans,
        "span": spans[-1],
        "version": newest[0],
        "date": newest[2],
    }


def object_files(uri: str) -> list[storage.FileEntry]:
    """The objects behind a URI: the object itself, every object under a prefix, or a glob's objects.

    Names starting with ``.`` or ``_`` (``_SUCCESS``, hidden files) are left out, as locally.
    """
    if any(ch in uri for ch in "*?["):
        found = [e for u in storage.glob(uri) if (e := storage.info(u)) is not None]
    else:
        single = storage.info(uri)
        found = [single] if single is not None else storage.list_files(uri, recursive=True)
    base = uri.rstrip("/")
    return [
        e for e in found if not any(part.startswith((".", "_")) for part in e.uri[len(base):].strip("/").split("/") if part)
    ]


def data_files(path: str) -> list[str]:
    """The files behind a local path: the file itself, every file under a directory, or a glob's files."""
    path = os.path.expanduser(path)
    if any(ch in path for ch in "*?["):
        return sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    if os.path.isdir(path):
        found = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            found += [os.path.join(root, n) for n in sorted(names) if not n.startswith((".", "_"))]
        return found
    return [path] if os.path.isfile(path) else []


# sha256 by (path, inode, size, mtime_ns, ctime_ns): the runner fingerprints a node's data before
# it runs and ingest records the same files, in that process or a fork of it; any write to the
# file moves its ctime (which no user can set back), so a stale digest is never returned.
_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}
_DIGESTS_KEPT = 256


def file_sha256(path: str) -> str:
    """sha256 of a file's content, read in 1 MiB chunks (once per unchanged file and process)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    if len(_DIGESTS) >= _DIGESTS_KEPT:
        _DIGESTS.pop(next(iter(_DIGESTS)))
    _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def describe_source(path: str, *, span_count: int = 1, parameter: str = "path") -> dict[str, Any]:
    """What a data parameter names now, with a content fingerprint.

    A value that is neither a local path nor an object URI (a built-in dataset
    name such as "" or "palmerpenguins") is recorded as ``kind: "named"``: its
    content comes with the installed package.

    Raises:
        DataSourceError: a span pattern matches nothing, or a file it names is a
            broken link (the message names the file).
    """
    record: dict[str, Any] = {"parameter": parameter, "uri": path, "span": None, "version": None, "date": None}
    paths = [path]
    if is_pattern(path):
        resolved = resolve_pattern(path, span_count=span_count)
        paths = resolved["paths"]
        record.update(span=resolved["span"], version=resolved["version"], date=resolved["date"], spans=resolved["spans"])
        record["resolved"] = paths
    if storage.is_object_uri(path):
        return {**record, **_describe_objects(path, paths)}
    files = [f for p in paths for f in data_files(p)]
    if not files and not is_pattern(path) and not os.path.exists(os.path.expanduser(path)):
        return {**record, "kind": "named", "sha256": hashlib.sha256(path.encode()).hexdigest()}
    entries = []
    combined = hashlib.sha256()
    for name in files:
        if not os.path.isfile(name):
            target = f" (a broken link to {os.readlink(name)!r})" if os.path.islink(name) else ""
            raise DataSourceError(f"{name} does not exist or is not a file{target}; remove it or point it at a data file.")
        stat = os.stat(name)
        sha = file_sha256(name)
        entries.append({"uri": name, "size": stat.st_size, "mtime": stat.st_mtime, "sha256": sha})
        combined.update(f"{os.path.basename(name)}\0{sha}\0".encode())
    return {
        **record,
        "kind": "file",
        "files": entries,
        "size": sum(e["size"] for e in entries),
        "mtime": max((e["mtime"] for e in entries), default=None),
        "sha256": combined.hexdigest(),
    }


def _describe_objects(pattern: str, paths: list[str]) -> dict[str, Any]:
    """Kind, files and listing fingerprint of the objects behind resolved URIs (see the module docstring).

    Raises:
        DataSourceError: nothing is there.
    """
    entries = [e for p in paths for e in object_files(p)]
    if not entries:
        raise DataSourceError(
            f"No object is at the data path {storage.redact(pattern)} (resolved: {paths}); "
            "check the bucket and prefix, or write the data first."
        )
    combined = hashlib.sha256()
    for entry in entries:
        combined.update(f"{entry.uri}\0{entry.size}\0{entry.mtime!r}\0".encode())
    return {
        "kind": "object",
        "files": [{"uri": e.uri, "size": e.size, "mtime": e.mtime} for e in entries],
        "size": sum(e.size for e in entries),
        "mtime": max(e.mtime for e in entries),
        "sha256": None,
        "etag": None,
        "fingerprint": combined.hexdigest(),
        "fingerprint_basis": "size+mtime",
    }


def uncacheable(source: dict[str, Any]) -> bool:
    """Whether a source has no content fingerprint (so a node reading it must always run)."""
    return not source.get("sha256") and not source.get("etag") and not source.get("fingerprint")


def cache_identity(source: dict[str, Any]) -> dict[str, Any]:
    """The part of a source record that goes into a cache key: content, not timestamps.

    For objects the listing fingerprint (size+mtime) stands in for the content hash.
    """
    identity = {k: source.get(k) for k in ("parameter", "kind", "uri", "span", "version", "sha256", "etag")}
    if source.get("fingerprint"):  # only objects have it: local sources keep the cache keys they had
        identity["fingerprint"] = source["fingerprint"]
    return identity


def dataset_name(path: str) -> str:
    """A name for the data a path names: the file or folder stem before any placeholder.

    ``data/own.csv`` -> ``own``; ``exports/sales/span-{SPAN}/`` -> ``sales``;
    "" or "palmerpenguins" -> ``penguins``; ``s3://b/churn/*.parquet`` -> ``churn``.
    """
    if path in ("", "palmerpenguins"):
        return "penguins"
    if path == "sklearn-digits":
        return "digits"
    parts = [p for p in re.split(r"[\\/]+", path.split("://", 1)[-1]) if p]
    while parts and (is_pattern(parts[-1]) or any(ch in parts[-1] for ch in "*?[")):
        parts.pop()
    stem = os.path.splitext(parts[-1])[0] if parts else ""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.")
    return cleaned or "model"


def describe_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """One line saying how a data source changed, e.g. ``data.csv size 8.1 kB -> 13.9 kB``."""
    name = os.path.basename(str(after.get("uri", "")).rstrip("/")) or str(after.get("uri"))
    if before.get("span") != after.get("span"):
        return f"{name}: new span {after.get('span')} (was {before.get('span')})"
    if before.get("version") != after.get("version"):
        return f"{name}: version {before.get('version')} -> {after.get('version')}"
    if before.get("uri") != after.get("uri"):
        return f"{before.get('uri')} -> {after.get('uri')}"
    if before.get("size") is not None and before.get("size") != after.get("size"):
        return f"{name} size {human_bytes(before['size'])} -> {human_bytes(after['size'])}"
    return f"{name} content changed (sha256 {str(before.get('sha256'))[:10]} -> {str(after.get('sha256'))[:10]})"


def human_bytes(count: int) -> str:
    """``8123`` -> ``8.1 kB`` (decimal units, as file managers show them)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"

"""Storage by URI: local paths, ``file://``, ``s3://`` (AWS, MinIO), ``minio://`` and ``gs://``.

One small layer over ``pyarrow.fs`` (pyarrow is already pinned for TFDV and
Beam, so object storage adds no runtime dependency, and ingest reads CSV and
Parquet through pyarrow too). Every function takes a URI:

* a local path or ``file:///abs/path`` -> ``LocalFileSystem``;
* ``s3://bucket/key`` -> ``S3FileSystem``. The endpoint comes from
  ``FLYWHEEL_S3_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL_S3``, else
  ``AWS_ENDPOINT_URL`` (e.g. ``http://minio-service.kubeflow:9000``, the MinIO
  that KFP deploys); the region from ``AWS_REGION``/``AWS_DEFAULT_REGION``;
  credentials from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
  (``AWS_SESSION_TOKEN``), a profile (``AWS_PROFILE``, ``~/.aws/credentials``)
  or a web identity (IRSA). ``FLYWHEEL_S3_CREDENTIALS=default`` hands the
  search to pyarrow's full AWS chain (instance metadata too);
  ``FLYWHEEL_S3_CREDENTIALS=anonymous`` reads public buckets.
* ``minio://bucket/key`` is ``s3://`` with the endpoint required;
* ``gs://bucket/key`` -> ``GcsFileSystem`` with Google's default credentials.

Credentials never appear in an error or log line: messages are built from the
URI (user info stripped) and every known secret value is masked.

Writes: ``write_bytes`` is atomic. Locally it writes a temp file beside the
target, fsyncs it and renames it over the target; on an object store the
object becomes visible only when its upload completes (a PUT, or pyarrow's
multipart upload, which S3 publishes only on ``CompleteMultipartUpload``), so a
reader sees the old object or the new one, never a part. Object stores have
no rename and pyarrow 10 cannot make a conditional (if-none-match) PUT:
``flywheel.registry`` builds its publish protocol on "manifest last" instead.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import posixpath
import re
import socket
import time
import uuid
from typing import Any, Iterator
from urllib.parse import urlsplit

from flywheel.errors import FlywheelError

LOCAL, S3, GCS = "file", "s3", "gs"
OBJECT_SCHEMES = ("s3://", "minio://", "gs://", "gcs://")
ENDPOINT_VARIABLES = ("FLYWHEEL_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN")
CREDENTIAL_HINT_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
_WILDCARD = re.compile(r"[*?\[]")
LEASE_SETTLE_S = 0.3


class StorageError(FlywheelError):
    """A URI cannot be parsed, reached or written (the message names the URI and the fix)."""


@dataclasses.dataclass(frozen=True)
class Location:
    """A URI resolved to a pyarrow filesystem and the path inside it.

    Attributes:
        uri: The URI as the caller should see it (``s3://b/k``, or an absolute local path).
        scheme: ``file``, ``s3`` or ``gs``.
        path: The path inside ``filesystem`` (``bucket/key`` for object stores).
        filesystem: A ``pyarrow.fs.FileSystem``.
    """

    uri: str
    scheme: str
    path: str
    filesystem: Any

    @property
    def is_local(self) -> bool:
        return self.scheme == LOCAL


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file found by ``list_files``: its URI, size in bytes and last modification (epoch s).

    Object stores report no ETag through pyarrow 10's ``FileInfo``; size and
    mtime are what identifies an object's content without downloading it.
    """

    uri: str
    size: int
    mtime: float


def is_object_uri(uri: str) -> bool:
    """Whether ``uri`` names an object store (``s3://``, ``minio://``, ``gs://``)."""
    return str(uri).startswith(OBJECT_SCHEMES)


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended (``/`` for object stores, the OS separator locally)."""
    if is_object_uri(uri):
        return posixpath.join(uri.rstrip("/"), *[p.strip("/") for p in parts])
    return os.path.join(uri, *parts)


def redact(text: str) -> str:
    """``text`` with URI user info and the values of credential variables masked."""
    text = re.sub(r"(\w+://)[^/@\s]*@", r"\1***@", str(text))
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _s3_endpoint() -> str | None:
    for name in ENDPOINT_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _s3_filesystem(uri: str, *, minio: bool) -> Any:
    from pyarrow import fs

    endpoint = _s3_endpoint()
    if minio and not endpoint:
        raise StorageError(
            f"{redact(uri)} is a minio:// URI but no endpoint is set; set FLYWHEEL_S3_ENDPOINT_URL "
            "(e.g. http://minio-service.kubeflow:9000)."
        )
    options: dict[str, Any] = {}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme or "http"
    options["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    mode = os.environ.get("FLYWHEEL_S3_CREDENTIALS", "")
    if mode == "anonymous":
        options["anonymous"] = True
    elif os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        options["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        options["secret_key"] = os.environ["AWS_SECRET_ACCESS_KEY"]
        if os.environ.get("AWS_SESSION_TOKEN"):
            options["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    elif mode != "default" and not any(os.environ.get(v) for v in CREDENTIAL_HINT_VARIABLES) and not os.path.isfile(
        os.path.expanduser(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    ):
        # Without this check pyarrow would fall through to the EC2 metadata service and hang for seconds.
        raise StorageError(
            f"No S3 credentials to reach {redact(uri)}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(on Kubernetes from a Secret via secretKeyRef), AWS_PROFILE or a web identity; "
            "FLYWHEEL_S3_CREDENTIALS=default uses pyarrow's whole AWS chain, =anonymous reads public buckets."
        )
    return fs.S3FileSystem(**options)


def locate(uri: str) -> Location:
    """Resolves ``uri`` to its filesystem and path.

    Raises:
        StorageError: the scheme is not supported, the URI names no bucket, or
            no credentials are configured for an object store.
    """
    text = os.fspath(uri)
    if not isinstance(text, str) or not text:
        raise StorageError(f"A storage URI must be a non-empty string. Got {uri!r} instead.")
    if text.startswith("file://"):
        text = urlsplit(text).path or "/"
    if "://" not in text:
        from pyarrow import fs

        path = os.path.abspath(os.path.expanduser(text))
        return Location(path, LOCAL, path, fs.LocalFileSystem())
    scheme = text.split("://", 1)[0].lower()
    if f"{scheme}://" not in OBJECT_SCHEMES:
        raise StorageError(
            f"Unsupported storage scheme '{scheme}://' in {redact(text)}; use a local path, file://, "
            "s3://, minio:// or gs://."
        )
    rest = text.split("://", 1)[1]
    if "@" in rest.split("/", 1)[0]:
        raise StorageError(
            f"{redact(text)} carries credentials in the URI; remove them and set AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (or a Secret) instead."
        )
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{redact(text)} names no bucket; write {scheme}://BUCKET/PATH.")
    path = posixpath.normpath(f"{bucket}/{key}").rstrip("/") if key else bucket
    if scheme in ("gs", "gcs"):
        from pyarrow import fs

        return Location(f"gs://{path}", GCS, path, fs.GcsFileSystem())
    filesystem = _s3_filesystem(text, minio=scheme == "minio")
    return Location(f"{scheme}://{path}", S3, path, filesystem)


def _error(action: str, location: Location, exc: Exception) -> StorageError:
    """A StorageError for a failed operation: what, where, why (masked) and the fix."""
    detail = redact(str(exc))
    fix = "check the URI and that the store is reachable"
    lowered = detail.lower()
    bucket = location.path.split("/", 1)[0]
    if isinstance(exc, FileNotFoundError) and not location.is_local:
        missing_bucket = not _bucket_exists(location, bucket)
        lowered += " bucket does not exist" if missing_bucket else ""
        fix = "nothing is at that path: check the URI, or write it first"
    elif isinstance(exc, FileNotFoundError):
        fix = "nothing is at that path: check the URI, or write it first"
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered or (
        "bucket" in lowered and "not found" in lowered
    ):
        fix = f"the bucket '{bucket}' does not exist: create it (e.g. `aws s3 mb s3://{bucket}`) or fix the URI"
    elif "accessdenied" in lowered or "access denied" in lowered or "forbidden" in lowered or "invalidaccesskeyid" in lowered or (
        "signaturedoesnotmatch" in lowered
    ):
        fix = "the credentials were refused: check the Secret / AWS_ACCESS_KEY_ID and its permissions on the bucket"
    elif "connect" in lowered or "curl" in lowered:
        fix = "the endpoint cannot be reached: check FLYWHEEL_S3_ENDPOINT_URL / AWS_ENDPOINT_URL"
    return StorageError(f"Cannot {action} {redact(location.uri)}: {detail}; {fix}.")


def _bucket_exists(location: Location, bucket: str) -> bool:
    from pyarrow import fs

    try:
        return location.filesystem.get_file_info(bucket).type != fs.FileType.NotFound
    except OSError:  # cannot tell (e.g. no ListBucket right): do not claim it is missing
        return True


def info(uri: str) -> FileEntry | None:
    """Size and mtime of a file, or None when nothing (or a directory) is there."""
    from pyarrow import fs

    location = locate(uri)
    try:
        found = location.filesystem.get_file_info(location.path)
    except OSError as exc:
        raise _error("read", location, exc) from exc
    if found.type != fs.FileType.File:
        return None
    return FileEntry(location.uri, int(found.size or 0), _mtime(found))


def _mtime(found: Any) -> float:
    return found.mtime.timestamp() if found.mtime is not None else 0.0


def exists(uri: str) -> bool:
    """Whether a file or a directory (a non-empty prefix on an object store) is at ``uri``."""
    from pyarrow import fs

    location = locate(uri)
    try:
        return location.filesystem.get_file_info(location.path).type != fs.FileType.NotFound
    except OSError as exc:
        raise _error("read", location, exc) from exc


def is_dir(uri: str) -> bool:
    """Whether ``uri`` is a directory (locally) or a prefix holding objects."""
    from pyarrow import fs

    location = locate(uri)
    try:
        return location.filesystem.get_file_info(location.path).type == fs.FileType.Directory
    except OSError as exc:
        raise _error("read", location, exc) from exc


def open_input_stream(uri: str) -> Any:
    """A streamed, read-only file object (``pyarrow.NativeFile``) over ``uri``.

    This is the one call ingest needs to read data by URI (``pyarrow.csv``,
    ``pyarrow.parquet`` and pandas accept it); it is never read whole.

    Raises:
        StorageError: nothing is there, the bucket is missing or access is refused.
    """
    location = locate(uri)
    try:
        return location.filesystem.open_input_stream(location.path)
    except (OSError, FileNotFoundError) as exc:
        raise _error("read", location, exc) from exc


def open_input_file(uri: str) -> Any:
    """A seekable read-only file over ``uri`` (Parquet footers need seeking)."""
    location = locate(uri)
    try:
        return location.filesystem.open_input_file(location.path)
    except OSError as exc:
        raise _error("read", location, exc) from exc


def read_bytes(uri: str) -> bytes:
    """The whole content of a small file."""
    with open_input_stream(uri) as stream:
        return stream.read()


def read_json(uri: str) -> Any:
    """A JSON document.

    Raises:
        StorageError: it cannot be read, or is not JSON.
    """
    data = read_bytes(uri)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise StorageError(f"{redact(uri)} is not a JSON document ({exc}); rewrite or remove it.") from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Writes a small object or file atomically (see the module docstring)."""
    location = locate(uri)
    if location.is_local:
        directory = os.path.dirname(location.path)
        os.makedirs(directory, exist_ok=True)
        tmp = f"{location.path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, location.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    try:
        with location.filesystem.open_output_stream(location.path) as stream:
            stream.write(data)
    except OSError as exc:
        raise _error("write", location, exc) from exc


def write_json(uri: str, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    write_bytes(uri, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def upload_file(local_path: str, uri: str, *, chunk_bytes: int = 8 << 20) -> None:
    """Copies one local file to ``uri``, streaming in chunks (atomic per object, see ``write_bytes``)."""
    location = locate(uri)
    if location.is_local:
        import shutil

        os.makedirs(os.path.dirname(location.path), exist_ok=True)
        shutil.copy2(local_path, location.path)
        return
    try:
        with open(local_path, "rb") as source, location.filesystem.open_output_stream(location.path) as stream:
            while chunk := source.read(chunk_bytes):
                stream.write(chunk)
    except OSError as exc:
        raise _error("write", location, exc) from exc


def put_tree(local_dir: str, uri: str) -> list[str]:
    """Uploads every file under ``local_dir`` to ``uri`` (sorted order); returns the relative paths written."""
    written = []
    for directory, subdirs, files in os.walk(local_dir):
        subdirs.sort()
        for name in sorted(files):
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, local_dir).replace(os.sep, "/")
            upload_file(full, join(uri, *relative.split("/")))
            written.append(relative)
    return written


def get_tree(uri: str, local_dir: str) -> list[str]:
    """Downloads every file under ``uri`` into ``local_dir``; returns the relative paths."""
    root = locate(uri)
    written = []
    for entry in list_files(uri, recursive=True):
        relative = entry.uri[len(root.uri) :].lstrip("/")
        target = os.path.join(local_dir, *relative.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open_input_stream(entry.uri) as stream, open(target, "wb") as handle:
            while chunk := stream.read(8 << 20):
                handle.write(chunk)
        written.append(relative)
    return written


def _entry_uri(location: Location, path: str) -> str:
    if location.is_local:
        return path
    return f"{location.uri.split('://', 1)[0]}://{path}"


def list_files(uri: str, *, recursive: bool = False) -> list[FileEntry]:
    """Files directly under ``uri`` (or every file below it), sorted by URI; [] when nothing is there."""
    from pyarrow import fs

    location = locate(uri)
    selector = fs.FileSelector(location.path, allow_not_found=True, recursive=recursive)
    try:
        found = location.filesystem.get_file_info(selector)
    except OSError as exc:
        raise _error("list", location, exc) from exc
    entries = [
        FileEntry(_entry_uri(location, f.path), int(f.size or 0), _mtime(f)) for f in found if f.type == fs.FileType.File
    ]
    return sorted(entries, key=lambda e: e.uri)


def list_dir(uri: str) -> list[str]:
    """Names of the entries (files and directories/prefixes) directly under ``uri``; [] when nothing is there."""
    location = locate(uri)
    from pyarrow import fs

    try:
        found = location.filesystem.get_file_info(fs.FileSelector(location.path, allow_not_found=True))
    except OSError as exc:
        raise _error("list", location, exc) from exc
    return sorted(posixpath.basename(f.path.rstrip("/")) for f in found)


def glob(pattern: str) -> list[str]:
    """URIs of the files and directories matching a glob (``*``, ``?``, ``[...]``), sorted.

    Object stores are listed from the longest prefix without a wildcard;
    ``*`` does not cross ``/``.
    """
    if not is_object_uri(pattern):
        import glob as local_glob

        return sorted(local_glob.glob(os.path.expanduser(pattern.removeprefix("file://"))))
    scheme, rest = pattern.split("://", 1)
    parts = rest.split("/")
    fixed = []
    for part in parts:
        if _WILDCARD.search(part):
            break
        fixed.append(part)
    if len(fixed) == len(parts):
        return [pattern] if exists(pattern) else []
    depth = len(parts) - len(fixed)
    base = f"{scheme}://{'/'.join(fixed)}"
    candidates = _walk(base, depth)
    matcher = re.compile(fnmatch.translate(rest).replace(".*", "[^/]*"))
    return sorted(c for c in candidates if matcher.match(c.split("://", 1)[1]))


def _walk(base: str, depth: int) -> list[str]:
    """Every entry ``depth`` levels below ``base`` (files and prefixes)."""
    level = [base]
    for _ in range(depth):
        level = [join(parent, name) for parent in level for name in list_dir(parent)]
    return level


def delete(uri: str) -> None:
    """Deletes a file or a whole directory/prefix; nothing there is not an error."""
    from pyarrow import fs

    location = locate(uri)
    try:
        kind = location.filesystem.get_file_info(location.path).type
        if kind == fs.FileType.Directory:
            location.filesystem.delete_dir(location.path)
        elif kind == fs.FileType.File:
            location.filesystem.delete_file(location.path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _error("delete", location, exc) from exc


def iter_lines(uri: str) -> Iterator[str]:
    """The text lines of a file, streamed (a damaged byte spoils one line, never the read)."""
    import io

    with open_input_stream(uri) as stream:
        yield from io.TextIOWrapper(stream, encoding="utf-8", errors="replace")


class Lease:
    """A lock object with an expiry on an object store (the registry's push lock).

    pyarrow 10 cannot make a conditional PUT, so the claim is written, then
    read back after ``LEASE_SETTLE_S``: it protects against a crashed holder
    (the lease expires), not against two writers claiming within the settle time.

    Args:
        uri: The lock object.
        lease_s: How long the lease lasts unless renewed.
        wait_s: How long ``acquire`` waits for another holder.
    """

    def __init__(self, uri: str, lease_s: float, wait_s: float) -> None:
        self.uri = uri
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
        self._renewed = 0.0

    def _holder(self) -> dict[str, Any] | None:
        if info(self.uri) is None:
            return None
        try:
            return read_json(self.uri)
        except StorageError:  # deleted between the two calls, or damaged: free
            return None

    def _write(self) -> None:
        self._renewed = time.time()
        write_json(self.uri, {"owner": self.owner, "expires": self._renewed + self.lease_s})

    def acquire(self) -> None:
        """Takes the lease once it is free or expired.

        Raises:
            FlywheelError: another holder kept it for ``wait_s``.
        """
        deadline = time.monotonic() + self.wait_s
        while True:
            holder = self._holder()
            if holder is None or float(holder.get("expires", 0)) < time.time():
                self._write()
                time.sleep(LEASE_SETTLE_S)  # a writer racing us within this window overwrites our claim
                holder = self._holder()
                if holder is not None and holder.get("owner") == self.owner:
                    return
            if time.monotonic() >= deadline:
                raise StorageError(
                    f"The registry lease {self.uri} is held by {holder.get('owner') if holder else 'another writer'} "
                    f"past {self.wait_s:g}s; wait for its push to finish, or delete the lease object if that "
                    "pusher died (it expires by itself after the lease time)."
                )
            time.sleep(0.2)

    def renew(self) -> None:
        """Extends the lease when a third of it has passed (long uploads)."""
        if time.time() - self._renewed > self.lease_s / 3:
            self._write()

    def release(self) -> None:
        holder = self._holder()
        if holder is not None and holder.get("owner") == self.owner:
            delete(self.uri)

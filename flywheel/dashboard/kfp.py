"""Reading Kubeflow Pipelines runs for the dashboard: the KFP v2beta1 REST API, read-only.

Standard library HTTP (no kfp import, no kfp retry loop), so a page never waits
long for the cluster: every call has a short timeout, and once the API failed
the reader answers from that failure for ``RETRY_AFTER_S`` instead of waiting
again on every page. The bearer token goes only to the KFP host (a redirect to
another host drops it, as ``flywheel.kubeflow.client`` does).

Calls: ``GET /apis/v2beta1/runs`` (paged with ``page_token``),
``GET /apis/v2beta1/runs/{id}`` (runtime config, ``run_details.task_details``
with per-task state, including SKIPPED for tasks a condition skipped, and the
artifact ids each task read and wrote) and ``GET /apis/v2beta1/artifacts/{id}``
(KFP's ArtifactService: the artifact's URI and type), whose answers are cached:
an artifact never changes once written. Artifact URIs are shown, never fetched.
JSON field names are read in both spellings KFP servers use (``run_id`` and
``runId``).
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from flywheel.errors import FlywheelError
from flywheel.storage import redact

API = "/apis/v2beta1"
TIMEOUT_S = 4.0
RETRY_AFTER_S = 15.0
MAX_CACHED_ARTIFACTS = 4096
MAX_BODY_BYTES = 32 * 1024 * 1024


class KfpUnavailable(FlywheelError):
    """The KFP API cannot be read (unreachable, refused the token, not a KFP API); the message says what to do."""


class KfpNotFound(FlywheelError):
    """The KFP API answered 404 for one object (a run or an artifact)."""


def field(data: Any, name: str, default: Any = None) -> Any:
    """``data[name]`` in snake_case or its lowerCamelCase spelling (gRPC gateways emit either)."""
    if not isinstance(data, dict):
        return default
    if name in data:
        return data[name]
    head, *rest = name.split("_")
    camel = head + "".join(part.title() for part in rest)
    return data.get(camel, default)


def epoch_ms(value: Any) -> int | None:
    """An RFC 3339 time from the API as epoch milliseconds; None when absent or KFP's zero time."""
    if not isinstance(value, str) or not value or value.startswith(("1970-01-01", "0001-01-01")):
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:  # Python < 3.11 parses at most 6 fraction digits; the API sends up to 9
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits):]}"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


class KfpReader:
    """Read-only access to one KFP API for the dashboard.

    Args:
        host: The KFP API endpoint (``http://ml-pipeline.kubeflow:8888``, or the UI's
            address after ``kubectl port-forward``); a bare host name gets https://.
        token: Bearer token, or None.
        token_file: A file holding the bearer token, read again whenever it changes (a projected
            service-account token is rotated by the kubelet); wins over ``token``.
        namespace: Kubernetes namespace whose runs to list (multi-user Kubeflow).
        timeout: Seconds one API call may take.
    """

    def __init__(self, host: str, *, token: str | None = None, token_file: str | None = None,
                 namespace: str | None = None, timeout: float = TIMEOUT_S) -> None:
        from flywheel.kubeflow.client import _normalise_host, _TokenStaysHome

        self.url = _normalise_host(host)
        self.host = redact(self.url)  # what pages and messages show: no user info
        self.token = token
        self.token_file = token_file
        self._token_stamp: tuple[int, int] | None = None
        self.namespace = namespace or None
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_TokenStaysHome())
        self._artifacts: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._failure: tuple[float, str] | None = None
        self._lock = threading.Lock()

    # -- HTTP ----------------------------------------------------------------------

    def get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        """One GET of the API as a JSON object.

        Raises:
            KfpUnavailable: the API is unreachable, slow, refused us or answered something else than JSON.
            KfpNotFound: the API answered 404 (the object does not exist).
        """
        with self._lock:
            failure = self._failure
        if failure is not None and time.monotonic() - failure[0] < RETRY_AFTER_S:
            raise KfpUnavailable(failure[1])
        try:
            data = self._get(path, query)
        except KfpUnavailable as exc:
            with self._lock:
                self._failure = (time.monotonic(), str(exc))
            raise
        with self._lock:
            self._failure = None
        return data

    def _get(self, path: str, query: dict[str, Any] | None) -> dict[str, Any]:
        pairs = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        url = self.url + API + path + (f"?{urllib.parse.urlencode(pairs)}" if pairs else "")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        what = f"GET {API}{path}"
        token = self._current_token()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:  # noqa: S310 - the configured KFP host
                body = response.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise KfpNotFound(f"Kubeflow Pipelines at {self.host} has no {path.lstrip('/')} (HTTP 404).") from None
            if exc.code in (401, 403):
                raise KfpUnavailable(
                    f"Kubeflow Pipelines at {self.host} refused {what} with HTTP {exc.code} {exc.reason}: "
                    "start the dashboard with a token the KFP API accepts (--kfp-token-file PATH or "
                    "$FLYWHEEL_KFP_TOKEN) and, on multi-user Kubeflow, --kfp-namespace."
                ) from None
            raise KfpUnavailable(
                f"Kubeflow Pipelines at {self.host} answered {what} with HTTP {exc.code} {exc.reason}; "
                "check --kfp-host (the KFP API, e.g. http://ml-pipeline.kubeflow:8888)."
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise KfpUnavailable(
                f"Cannot reach Kubeflow Pipelines at {self.host} ({what}: {reason}); "
                "check --kfp-host and that the KFP API is reachable from the dashboard. Local runs are shown."
            ) from None
        if len(body) > MAX_BODY_BYTES:
            raise KfpUnavailable(f"Kubeflow Pipelines at {self.host} answered {what} with over {MAX_BODY_BYTES} bytes.")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise KfpUnavailable(
                f"{self.host} answered {what} with something other than a JSON object (a login page?); "
                "point --kfp-host at the KFP API and pass a token."
            )
        return data

    def _current_token(self) -> str | None:
        """The token: the file's contents when a token file is set (re-read when its mtime or size changes)."""
        if not self.token_file:
            return self.token
        try:
            status = os.stat(self.token_file)
            stamp = (status.st_mtime_ns, status.st_size)
            with self._lock:
                if stamp == self._token_stamp:
                    return self.token
            with open(self.token_file, encoding="utf-8") as handle:
                text = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KfpUnavailable(
                f"Cannot read the KFP token file {self.token_file}: {getattr(exc, 'strerror', None) or exc}; "
                "pass --kfp-token-file a readable file holding the bearer token."
            ) from None
        with self._lock:
            self.token, self._token_stamp = text or None, stamp
        return self.token

    # -- the calls -----------------------------------------------------------------

    def list_runs(self, page_size: int, page_token: str = "") -> tuple[list[dict[str, Any]], str]:
        """(one page of runs, newest first; the next page's token or "")."""
        data = self.get("/runs", {"page_size": page_size, "page_token": page_token,
                                  "sort_by": "created_at desc", "namespace": self.namespace})
        runs = field(data, "runs") or []
        return [r for r in runs if isinstance(r, dict)], str(field(data, "next_page_token") or "")

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.get(f"/runs/{urllib.parse.quote(run_id, safe='')}")

    def artifact(self, artifact_id: str) -> dict[str, Any]:
        """One artifact (uri, artifact_type, ...), cached after the first answer."""
        with self._lock:
            if artifact_id in self._artifacts:
                self._artifacts.move_to_end(artifact_id)
                return self._artifacts[artifact_id]
        found = self.get(f"/artifacts/{urllib.parse.quote(artifact_id, safe='')}")
        with self._lock:
            self._artifacts[artifact_id] = found
            while len(self._artifacts) > MAX_CACHED_ARTIFACTS:
                self._artifacts.popitem(last=False)
        return found

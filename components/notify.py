"""notify: report how a run ended, as the exit task of an ``ExitHandler``.

Writes one log line with the state of the tasks it guards (the task's log,
shown by ``flywheel runs show`` and in the KFP UI) and, given ``webhook_url``,
POSTs it as JSON ``{"pipeline": ..., "run": ..., "state": ..., "error": ...,
"message": ...}``. A webhook that cannot be reached fails the task with the
URL and the reason; the run's own state is already decided.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from flywheel.dsl.component import FinalStatus, component
from flywheel.errors import FlywheelError


class NotifyError(FlywheelError):
    """The webhook refused the report or could not be reached."""


@component(cache=False, retries=2, retry_backoff_s=5, resources={"cpu": "100m", "memory": "128Mi", "memory_limit": "256Mi"})
def notify(status: FinalStatus = None, webhook_url: str = "", message: str = "", timeout_s: float = 10.0) -> None:
    """Logs the final state of the guarded tasks and POSTs it to ``webhook_url`` (if given)."""
    status = status or {}
    report = {
        "pipeline": status.get("pipelineTaskName", ""),
        "run": status.get("pipelineJobResourceName", ""),
        "state": status.get("state", "UNKNOWN"),
        "error": (status.get("error") or {}).get("message", ""),
        "message": message,
    }
    print(f"flywheel notify: run {report['run']} of {report['pipeline']} ended {report['state']}"
          + (f": {report['error']}" if report["error"] else ""), flush=True)
    if not webhook_url:
        return
    if not webhook_url.startswith(("http://", "https://")):
        raise NotifyError(f"notify's webhook_url must start with http:// or https://; got {webhook_url!r}.")
    request = urllib.request.Request(
        webhook_url, data=json.dumps(report).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) checked above
            response.read()
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"The webhook {webhook_url} answered HTTP {exc.code} to the run's report.") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"The webhook {webhook_url} could not be reached: {exc}") from exc
